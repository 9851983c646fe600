package httpproxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
)

// checkHead parses in as the lean loop does, a byte at a time and whole,
// and holds a head it takes to http.ReadRequest: same method, target,
// Host, fields and no body. It returns the verdict.
func checkHead(t *testing.T, in []byte, maxFields int) headVerdict {
	t.Helper()
	var h reqHead
	got := parseHead(&h, in, 0, maxFields)
	// Fed in pieces, as reads bring it: the same verdict in the end.
	var h2 reqHead
	v2, scanned := headMore, 0
	for n := 1; n <= len(in) && v2 == headMore; n++ {
		v2 = parseHead(&h2, in[:n], scanned, maxFields)
		scanned = n
	}
	if v2 != got && !(got == headMore && v2 == headMore) {
		// A whole-input parse sees the head end; a piecewise one stops at
		// the first verdict, which must agree.
		if !(got == headHandOff && v2 == headHandOff) {
			t.Fatalf("%q: whole %v, byte by byte %v", in, got, v2)
		}
	}
	if got != headOK {
		return got
	}
	if h2.end != h.end {
		t.Fatalf("%q: head end %d whole, %d byte by byte", in, h.end, h2.end)
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
	if err != nil {
		t.Fatalf("parseHead took %q, http.ReadRequest: %v", in, err)
	}
	if req.Method != string(h.method.of(in)) || req.RequestURI != string(h.target.of(in)) || req.Host != string(h.host.of(in)) {
		t.Fatalf("%q: parseHead %q %q host %q; http.ReadRequest %q %q host %q", in,
			h.method.of(in), h.target.of(in), h.host.of(in), req.Method, req.RequestURI, req.Host)
	}
	if req.ContentLength != h.length || h.length == 0 && req.Body != http.NoBody {
		t.Fatalf("%q: body length %d, http.ReadRequest %d", in, h.length, req.ContentLength)
	}
	if req.Close != h.close {
		t.Fatalf("%q: close %v, http.ReadRequest %v", in, h.close, req.Close)
	}
	// Every field, in order, as net/http reads them (Host aside).
	want := http.Header{}
	for i := range h.fields[:h.nf] {
		f := &h.fields[i]
		if f.kind == fieldHost {
			continue
		}
		want.Add(string(f.name.of(in)), string(f.value.of(in)))
	}
	for k, vv := range req.Header {
		if strings.Join(vv, "\x00") != strings.Join(want[k], "\x00") {
			t.Fatalf("%q: field %s: parseHead %q, http.ReadRequest %q", in, k, want[k], vv)
		}
	}
	if len(want) != len(req.Header) {
		t.Fatalf("%q: fields %v, http.ReadRequest %v", in, want, req.Header)
	}
	return got
}

func TestParseHead(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     headVerdict
	}{
		{"simple", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", headOK},
		{"fields", "GET /a?b=c HTTP/1.1\r\nHost: app.test:8080\r\nUser-Agent: t/1\r\nAccept: */*\r\nX-A: 1\r\nX-A: 2\r\n\r\n", headOK},
		{"value spaces trimmed", "GET / HTTP/1.1\r\nHost:   x \t\r\nX-A:\t v w \r\n\r\n", headOK},
		{"empty value", "GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n", headOK},
		{"connection close", "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n", headOK},
		{"content-length 0", "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", headOK},
		{"obs-text value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xc3\xa9\r\n\r\n", headOK},
		{"ipv6 host", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", headOK},
		{"pipelined", "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n", headOK},

		{"incomplete", "GET / HTTP/1.1\r\nHost: x\r\n", headMore},
		{"incomplete line", "GET / HT", headMore},
		{"empty", "", headMore},

		{"body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", headOK},
		{"signed length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", headHandOff},
		{"huge length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1234567890123456789\r\n\r\n", headHandOff},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", headHandOff},
		{"expect", "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", headHandOff},
		{"upgrade", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", headHandOff},
		{"trailer", "GET / HTTP/1.1\r\nHost: x\r\nTrailer: X\r\n\r\n", headHandOff},
		{"http/1.0", "GET / HTTP/1.0\r\nHost: x\r\n\r\n", headHandOff},
		{"http/2 line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", headHandOff},
		{"absolute target", "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", headHandOff},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", headHandOff},
		{"connect", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", headHandOff},
		{"no host", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", headHandOff},
		{"two hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", headHandOff},
		{"bad host", "GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", headHandOff},
		{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", headHandOff},
		{"bare LF", "GET / HTTP/1.1\nHost: x\n\n", headHandOff},
		{"bare LF in field", "GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n", headHandOff},
		{"CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", headHandOff},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", headHandOff},
		{"folded", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", headHandOff},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", headHandOff},
		{"no colon", "GET / HTTP/1.1\r\nHost: x\r\nbogus\r\n\r\n", headHandOff},
		{"empty name", "GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", headHandOff},
		{"bad method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", headHandOff},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", headHandOff},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", headHandOff},
		{"control in target", "GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n", headHandOff},
		{"non-ascii target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", headHandOff},
		{"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", headHandOff},
		{"content-length twice", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", headHandOff},
		{"content-length bad", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x0\r\n\r\n", headHandOff},
		{"content-length empty", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", headHandOff},
		{"many connection fields", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("Connection: a\r\n", 5) + "\r\n", headHandOff},
		{"too many fields", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: 1\r\n", 100) + "\r\n", headHandOff},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkHead(t, []byte(tt.in), 100); got != tt.want {
				t.Fatalf("parseHead(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestAppendServerHead(t *testing.T) {
	in := []byte("GET /p?q=1 HTTP/1.1\r\nHost: www.example.com\r\nX-Forwarded-For: 203.0.113.7\r\n" +
		"Connection: close, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers, deflate\r\n" +
		"Proxy-Connection: keep-alive\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nx-end-to-end: kept\r\n\r\n")
	var h reqHead
	if v := parseHead(&h, in, 0, 100); v != headOK {
		t.Fatalf("verdict %v", v)
	}
	for _, tt := range []struct {
		name           string
		host           string
		forward, isTLS bool
		want           string
	}{
		{"forwardfor", "", true, false, "GET /p?q=1 HTTP/1.1\r\nHost: www.example.com\r\nX-Forwarded-For: 203.0.113.7\r\n" +
			"Te: trailers\r\nx-end-to-end: kept\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Host: www.example.com\r\n" +
			"X-Forwarded-Proto: http\r\n\r\n"},
		{"tls, rewrite host", "app.internal", true, true, "GET /p?q=1 HTTP/1.1\r\nHost: app.internal\r\nX-Forwarded-For: 203.0.113.7\r\n" +
			"Te: trailers\r\nx-end-to-end: kept\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Host: www.example.com\r\n" +
			"X-Forwarded-Proto: https\r\n\r\n"},
		{"no forwardfor", "", false, false, "GET /p?q=1 HTTP/1.1\r\nHost: www.example.com\r\nTe: trailers\r\nx-end-to-end: kept\r\n\r\n"},
	} {
		if got := string(appendServerHead(nil, &h, in, tt.host, "127.0.0.1", tt.forward, tt.isTLS)); got != tt.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

func TestAppendServerHeadAllocs(t *testing.T) {
	in := []byte("GET /index.html?q=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\n\r\n")
	var h reqHead
	out := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() {
		parseHead(&h, in, 0, 100)
		out = appendServerHead(out[:0], &h, in, "", "127.0.0.1", true, false)
	}); n != 0 {
		t.Fatalf("%v allocations per head, want 0", n)
	}
}

// FuzzParseHead: no input panics, a byte-by-byte parse agrees with a whole
// one, and a head parseHead takes reads the same with http.ReadRequest.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a?b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
		"HEAD /h HTTP/1.1\r\nhost: [::1]:8080\r\nTE: trailers\r\nKeep-Alive: 5\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: x-a, close\r\nX-A: 1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > bufSize {
			return
		}
		checkHead(t, in, 100)
	})
}

func TestParseAnswer(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		ok       bool
		code     int
		length   int64
		chunked  bool
		close    bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true, 200, 2, false, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n", true, 200, -1, true, false},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", true, 200, -1, false, true},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", true, 200, 0, false, true},
		{"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", true, 200, 0, false, false},
		{"LF only", "HTTP/1.1 204 No Content\nX-A: 1\n\n", true, 204, -1, false, false},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", true, 200, 0, false, false},
		{"same lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", true, 200, 1, false, false},
		{"early hints", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", true, 103, -1, false, false},

		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false, 0, 0, false, false},
		{"gzip encoding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, 0, 0, false, false},
		{"chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", false, 0, 0, false, false},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, 0, 0, false, false},
		{"bad version", "HTTP/2.0 200 OK\r\n\r\n", false, 0, 0, false, false},
		{"bad code", "HTTP/1.1 2x0 OK\r\n\r\n", false, 0, 0, false, false},
		{"short code", "HTTP/1.1 20 OK\r\n\r\n", false, 0, 0, false, false},
		{"folded", "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n\r\n", false, 0, 0, false, false},
		{"bad name", "HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n", false, 0, 0, false, false},
		{"NUL", "HTTP/1.1 200 OK\r\nX-A: \x00\r\n\r\n", false, 0, 0, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var a ansHead
			done, err := parseAnswer(&a, []byte(tt.in))
			if !done {
				t.Fatalf("not done")
			}
			if (err == nil) != tt.ok {
				t.Fatalf("err %v, want ok %v", err, tt.ok)
			}
			if err == nil && (a.code != tt.code || a.length != tt.length || a.chunked != tt.chunked || a.close != tt.close) {
				t.Fatalf("code %d length %d chunked %v close %v", a.code, a.length, a.chunked, a.close)
			}
		})
	}
	var a ansHead
	if done, _ := parseAnswer(&a, []byte("HTTP/1.1 200 OK\r\nX-A: 1\r\n")); done {
		t.Fatal("an incomplete head parsed")
	}
}

func TestAppendClientHead(t *testing.T) {
	in := []byte("HTTP/1.1 200 Fine\r\nX-A: 1\r\nSet-Cookie: a=1\r\nConnection: X-Hop, keep-alive\r\nX-Hop: h\r\n" +
		"Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nUpgrade: h2c\r\nTrailer: X-T\r\n\r\n")
	var a ansHead
	if _, err := parseAnswer(&a, in); err != nil {
		t.Fatal(err)
	}
	got := string(appendClientHead(nil, &a, in, true))
	want := "HTTP/1.1 200 Fine\r\nX-A: 1\r\nSet-Cookie: a=1\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

// chunkCheck scans in a byte at a time and whole, and holds where the body
// ends and its data size to net/http's chunked reader.
func chunkCheck(t *testing.T, in []byte) (end int, ok bool) {
	t.Helper()
	var s chunkScan
	n, done, err := s.scan(in)
	var s1 chunkScan
	var n1 int
	done1 := false
	var err1 error
	for i := 0; i < len(in) && !done1 && err1 == nil; i++ {
		var k int
		k, done1, err1 = s1.scan(in[i : i+1])
		n1 += k
	}
	if (err == nil) != (err1 == nil) || done != done1 || (done && n != n1) || s.data != s1.data {
		t.Fatalf("%q: whole (%d %v %v %d), byte by byte (%d %v %v %d)", in, n, done, err, s.data, n1, done1, err1, s1.data)
	}
	if err != nil || !done {
		return n, false
	}
	// net/http reads the same data and ends at the same place.
	br := bufio.NewReader(bytes.NewReader(in))
	data, rerr := io.ReadAll(httputil.NewChunkedReader(br))
	if rerr != nil {
		t.Fatalf("%q: scanned as a chunked body of %d bytes, net/http: %v", in, n, rerr)
	}
	if int64(len(data)) != s.data {
		t.Fatalf("%q: %d data bytes, net/http %d", in, s.data, len(data))
	}
	return n, true
}

func TestChunkScan(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		end      int // -1: not a complete body
	}{
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", 15},
		{"then more", "5\r\nhello\r\n0\r\n\r\nHTTP/1.1", 15},
		{"extension", "5;a=b\r\nhello\r\n0\r\n\r\n", 19},
		{"upper hex", "A\r\n0123456789\r\n0\r\n\r\n", 20},
		{"trailer", "1\r\nx\r\n0\r\nX-T: 1\r\n\r\n", 19},
		{"empty", "0\r\n\r\n", 5},
		{"incomplete", "5\r\nhel", -1},
		{"no size", "\r\nhello\r\n", -1},
		{"bad size", "5x\r\nhello\r\n0\r\n\r\n", -1},
		{"no CRLF after data", "5\r\nhelloX0\r\n\r\n", -1},
		{"huge", "ffffffffffffffff\r\n", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			end, ok := chunkCheck(t, []byte(tt.in))
			if tt.end < 0 && ok || tt.end >= 0 && (!ok || end != tt.end) {
				t.Fatalf("end %d ok %v, want end %d", end, ok, tt.end)
			}
		})
	}
}

// FuzzChunkScan: no input panics, pieces scan as the whole, and a body
// chunkScan finds whole holds what net/http's chunked reader reads.
func FuzzChunkScan(f *testing.F) {
	for _, s := range []string{"5\r\nhello\r\n0\r\n\r\n", "1;x\r\na\r\n0\r\nT: 1\r\n\r\n", "0\r\n\r\n", "a\r\n0123456789\r\n0\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) { chunkCheck(t, in) })
}

// FuzzParseAnswer: no answer head panics parseAnswer or appendClientHead,
// and what parseAnswer takes http.ReadResponse reads with the same status.
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n",
		"HTTP/1.0 204 No Content\nX: y\n\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var a ansHead
		done, err := parseAnswer(&a, in)
		if !done || err != nil {
			return
		}
		out := appendClientHead(nil, &a, in, false)
		if a.code < 200 {
			return
		}
		resp, rerr := http.ReadResponse(bufio.NewReader(bytes.NewReader(in)), nil)
		if rerr != nil {
			// net/http is stricter about some fields (it refuses, we pass on
			// what the server said); the head we send must still parse.
			resp, rerr = http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
			if rerr != nil {
				t.Fatalf("%q: passed on as %q, which does not parse: %v", in, out, rerr)
			}
			return
		}
		if resp.StatusCode != a.code {
			t.Fatalf("%q: code %d, http.ReadResponse %d", in, a.code, resp.StatusCode)
		}
	})
}

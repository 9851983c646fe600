package httpproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pgswitch/pgswitch/edge/internal/testpki"
)

// leanH2 is a listen serving HTTP/2 with the lean loop over TLS, and an
// x/net HTTP/2 client of it.
type leanH2 struct {
	l      *Listen
	addr   string
	url    string
	client *http.Client
	tr     *http2.Transport
	conf   *tls.Config // the client's
}

func startLeanH2(t *testing.T, backendAddr, logPath, timeouts string) *leanH2 {
	return startLeanH2Server(t, backendAddr, logPath, timeouts, "")
}

func startLeanH2Server(t *testing.T, backendAddr, logPath, timeouts, server string) *leanH2 {
	t.Helper()
	l := newTestListenServer(t, backendAddr, logPath, timeouts, server)
	lean := os.Getenv("H2_NETHTTP") == ""
	l.cfg.LeanHTTP2 = &lean
	ca := testpki.NewCA(t, "h2 test CA")
	leaf := ca.Issue(t, []string{"a.test"}, time.Time{}, time.Time{})
	conf := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"h2", "http/1.1"}}
	ln := dispatchOn(t, l, conf)
	cc := &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(), NextProtos: []string{"h2"}}
	tr := &http2.Transport{TLSClientConfig: cc}
	t.Cleanup(tr.CloseIdleConnections)
	return &leanH2{l: l, addr: ln.Addr().String(), url: "https://" + ln.Addr().String(), tr: tr,
		client: &http.Client{Transport: tr, Timeout: time.Minute}, conf: cc}
}

func (s *leanH2) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	resp, err := s.client.Get(s.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return resp, string(body)
}

// getAsync GETs path in a goroutine of its own; the channel gets the
// answer's body, or the error's text.
func (s *leanH2) getAsync(path string) <-chan string {
	out := make(chan string, 1)
	go func() {
		resp, err := s.client.Get(s.url + path)
		if err != nil {
			out <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- string(b)
	}()
	return out
}

var clfLine = regexp.MustCompile(`^127\.0\.0\.1 - - \[[^\]]+\] "(\S+) (\S+) HTTP/2\.0" (\d{3}) (\d+|-)$`)

// TestLeanH2Streams: many concurrent streams on one connection each get
// their own answer, and each leaves one CLF line with its status and size.
func TestLeanH2Streams(t *testing.T) {
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path), false
	})
	logPath := filepath.Join(t.TempDir(), "access.log")
	h := startLeanH2(t, s.addr, logPath, "{}")
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := h.client.Get(fmt.Sprintf("%s/stream/%d", h.url, i))
			if err != nil {
				errs <- err
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.ProtoMajor != 2 || string(body) != fmt.Sprintf("/stream/%d", i) {
				errs <- fmt.Errorf("stream %d: %s %q %v", i, resp.Proto, body, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var lines []string
	waitUntil(t, 5*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		return len(lines) >= n
	}, "a log line per stream")
	seen := map[string]bool{}
	for _, line := range lines {
		m := clfLine.FindStringSubmatch(line)
		if m == nil || m[1] != "GET" || m[3] != "200" || m[4] != strconv.Itoa(len(m[2])) {
			t.Fatalf("log line %q", line)
		}
		seen[m[2]] = true
	}
	if len(lines) != n || len(seen) != n {
		t.Fatalf("%d lines for %d paths, want %d", len(lines), len(seen), n)
	}
}

// TestLeanH2FlowControl: answers larger than the client's windows (64 KiB)
// arrive whole, with a Content-Length, chunked, and delimited by the
// server's close; a request body is forwarded, one larger than a window
// is streamed, with or without a content-length.
func TestLeanH2FlowControl(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		switch req.URL.Path {
		case "/length":
			return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n" + string(big), false
		case "/chunked":
			var b strings.Builder
			b.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			for p := big[:300<<10]; len(p) > 0; {
				k := min(len(p), 7777)
				fmt.Fprintf(&b, "%x\r\n%s\r\n", k, p[:k])
				p = p[k:]
			}
			b.WriteString("0\r\nX-Trailer: t\r\n\r\n")
			return b.String(), false
		case "/close":
			return "HTTP/1.1 200 OK\r\n\r\n" + string(big[:200<<10]), true
		case "/echo":
			n := int(req.ContentLength)
			if n < 0 {
				n = bodyLen(req)
			}
			return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n" + strings.Repeat("e", n), false
		}
		return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false
	})
	h := startLeanH2(t, s.addr, "off", "{}")
	for _, c := range []struct {
		path string
		want []byte
	}{{"/length", big}, {"/chunked", big[:300<<10]}, {"/close", big[:200<<10]}, {"/length", big}} {
		resp, body := h.get(t, c.path)
		if resp.StatusCode != 200 || body != string(c.want) {
			t.Fatalf("%s: %d, %d bytes, want %d", c.path, resp.StatusCode, len(body), len(c.want))
		}
	}
	resp, err := h.client.Post(h.url+"/echo", "text/plain", strings.NewReader(strings.Repeat("x", 40000)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) != 40000 {
		t.Fatalf("POST: %d, %d bytes", resp.StatusCode, len(body))
	}
	// Bodies larger than a window are streamed: with a content-length,
	// and without (chunked to the server).
	for _, known := range []bool{true, false} {
		var body io.Reader = strings.NewReader(strings.Repeat("x", 300000))
		if !known {
			pr, pw := io.Pipe()
			go func() {
				for range 30 {
					pw.Write([]byte(strings.Repeat("y", 10000)))
				}
				pw.Close()
			}()
			body = pr
		}
		resp, err = h.client.Post(h.url+"/echo", "text/plain", body)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(got) != 300000 {
			t.Fatalf("large POST (length known %v): %d, %d bytes", known, resp.StatusCode, len(got))
		}
	}
	// The connection still serves.
	if resp, body := h.get(t, "/length"); resp.StatusCode != 200 || len(body) != len(big) {
		t.Fatalf("after the large POST: %d, %d bytes", resp.StatusCode, len(body))
	}
}

// bodyLen is the length of what startRawServer read of req's body.
func bodyLen(req *http.Request) int {
	n, _ := strconv.Atoi(req.Header.Get("X-Test-Body-Length"))
	return n
}

// TestLeanH2Shutdown: Shutdown sends GOAWAY; the streams in flight finish
// with their answers, and the connection then closes.
func TestLeanH2Shutdown(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int32
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		if req.URL.Path == "/slow" {
			arrived.Add(1)
			<-release
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone", false
	})
	h := startLeanH2(t, s.addr, "off", "{}")
	h.get(t, "/warm") // the connection is up
	const n = 5
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := h.client.Get(h.url + "/slow")
			if err != nil {
				errs <- err
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(body) != "done" {
				errs <- fmt.Errorf("in flight: %q %v", body, err)
			}
		}()
	}
	waitUntil(t, 5*time.Second, func() bool { return arrived.Load() >= 1 }, "a request at the server")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- h.l.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // let Shutdown begin
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	h.l.mu.Lock()
	left := len(h.l.h2)
	h.l.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d connections left", left)
	}
}

// TestLeanH2MaxConn: with maxconn 2, ten concurrent streams of one
// connection never have more than two requests at the server at once, and
// all get their answer.
func TestLeanH2MaxConn(t *testing.T) {
	var inflight, peak atomic.Int32
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		inflight.Add(-1)
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	h := startLeanH2Server(t, s.addr, "off", "{queue: 10s}", ", maxconn: 2")
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := h.client.Get(h.url + "/")
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok" {
				errs <- fmt.Errorf("%d %q", resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if p := peak.Load(); p > 2 {
		t.Fatalf("%d requests at the server at once, maxconn 2", p)
	}
}

// TestLeanH2SlowStream: a server slow to answer one stream, or streaming
// its answer slowly, does not hold up the other streams of the connection.
func TestLeanH2SlowStream(t *testing.T) {
	release := make(chan struct{})
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		switch req.URL.Path {
		case "/slow":
			<-release
			return "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow", false
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast", false
	})
	h := startLeanH2(t, s.addr, "off", "{client: 1s}")
	h.get(t, "/warm")
	slow := h.getAsync("/slow")
	time.Sleep(50 * time.Millisecond) // the slow request is at the server
	for i := range 20 {
		start := time.Now()
		if _, body := h.get(t, "/fast"); body != "fast" {
			t.Fatalf("fast %d: %q", i, body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("fast %d took %v behind the slow one", i, d)
		}
	}
	// Longer than the client timeout: a connection whose streams all wait
	// for their server is not the client's idleness.
	time.Sleep(1500 * time.Millisecond)
	close(release)
	if got := <-slow; got != "slow" {
		t.Fatalf("slow: %q", got)
	}
}

// TestLeanH2Streaming: a chunked answer whose chunks come slowly reaches
// the client chunk by chunk, while another stream is served.
func TestLeanH2Streaming(t *testing.T) {
	leanOnly(t, "fails against its path too (INTERNAL_ERROR on the event stream), not investigated")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	next := make(chan string)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				n, _ := c.Read(buf)
				if !strings.HasPrefix(string(buf[:n]), "GET /events") {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast")
					for {
						if _, err := c.Read(buf); err != nil {
							return
						}
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast")
					}
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
				for ev := range next {
					fmt.Fprintf(c, "%x\r\n%s\r\n", len(ev), ev)
				}
				io.WriteString(c, "0\r\n\r\n")
			}()
		}
	}()
	h := startLeanH2(t, ln.Addr().String(), "off", "{}")
	resp, err := h.client.Get(h.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 100)
	for i := range 3 {
		ev := fmt.Sprintf("event %d", i)
		next <- ev
		n, err := io.ReadAtLeast(resp.Body, buf, len(ev))
		if err != nil || string(buf[:n]) != ev {
			t.Fatalf("event %d: %q %v", i, buf[:n], err)
		}
		if _, body := h.get(t, "/fast"); body != "fast" {
			t.Fatalf("fast: %q", body)
		}
	}
	close(next)
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("end: %q %v", rest, err)
	}
}

// TestLeanH2Errors: a server that does not answer in time gets 504, one
// that cannot be reached 503, each logged; a client that leaves while its
// stream waits for the server ends its connection at once, waiter and
// all.
func TestLeanH2Errors(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		if req.URL.Path == "/hang" {
			<-hang
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	logPath := filepath.Join(t.TempDir(), "access.log")
	h := startLeanH2(t, s.addr, logPath, "{server: 300ms}")
	if resp, _ := h.get(t, "/hang"); resp.StatusCode != 504 {
		t.Fatalf("hanging server: %d, want 504", resp.StatusCode)
	}

	// A client that leaves while its server is awaited.
	r := dialRawH2(t, h)
	blk := r.block(":method", "GET", ":scheme", "https", ":authority", "a.test", ":path", "/hang")
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	r.c.Close()
	// Every connection but the x/net client's is gone well before the
	// server timeout would have ended the wait.
	waitUntil(t, 250*time.Millisecond, func() bool {
		h.l.mu.Lock()
		defer h.l.mu.Unlock()
		return len(h.l.h2) <= 1
	}, "the left connection closed")

	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	h2 := startLeanH2(t, deadAddr, logPath, "{}")
	if resp, body := h2.get(t, "/down"); resp.StatusCode != 503 || !strings.Contains(body, "503") {
		t.Fatalf("unreachable server: %d %q", resp.StatusCode, body)
	}
	var log string
	waitUntil(t, 5*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		log = string(b)
		return strings.Contains(log, `"GET /down HTTP/2.0" 503`) && strings.Contains(log, `"GET /hang HTTP/2.0" 504`)
	}, "the 504 and 503 logged")
}

// TestLeanH2BodyLength: a body longer or shorter than its content-length
// is malformed: RST_STREAM PROTOCOL_ERROR, and what it carried beyond the
// length never reaches a server as a request of its own.
func TestLeanH2BodyLength(t *testing.T) {
	leanOnly(t, "a body shorter than its content-length is not reset with PROTOCOL_ERROR")
	var paths sync.Map
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		paths.Store(req.URL.Path, true)
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	h := startLeanH2(t, s.addr, "off", "{}")
	r := dialRawH2(t, h)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	for i, c := range []struct {
		clen  string
		parts []string
	}{
		{"5", []string{"01234" + smuggled}},     // longer, with the head
		{"5", []string{"012", "34" + smuggled}}, // longer, streamed
		{"10", []string{"abc"}},                 // shorter
	} {
		id := uint32(2*i + 1)
		blk := r.block(":method", "POST", ":scheme", "https", ":authority", "a.test", ":path", "/post", "content-length", c.clen)
		if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		for j, p := range c.parts {
			if j > 0 {
				time.Sleep(20 * time.Millisecond) // a later cycle: streamed
			}
			if err := r.fr.WriteData(id, j == len(c.parts)-1, []byte(p)); err != nil {
				t.Fatal(err)
			}
		}
		err := r.readFrames(5*time.Second, func(f http2.Frame) bool {
			rst, ok := f.(*http2.RSTStreamFrame)
			if ok && rst.StreamID == id && rst.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("case %d: RST_STREAM %v", i, rst.ErrCode)
			}
			return ok && rst.StreamID == id
		})
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if _, ok := paths.Load("/smuggled"); ok {
		t.Fatal("the bytes past the content-length reached the server as a request")
	}
}

// TestLeanH2Interim: a 103 Early Hints answer reaches the client before
// the final one.
func TestLeanH2Interim(t *testing.T) {
	leanOnly(t, "serveDirect does not pass interim answers on")
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	h := startLeanH2(t, s.addr, "off", "{}")
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprint(code, " ", hdr.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", h.url+"/", nil)
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" || len(hints) != 1 || hints[0] != "103 </a.css>; rel=preload" {
		t.Fatalf("%d %q, interim %q", resp.StatusCode, body, hints)
	}
}

// rawH2 is a client that writes frames as it pleases.
type rawH2 struct {
	c    net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

func dialRawH2(t *testing.T, h *leanH2) *rawH2 {
	t.Helper()
	c, err := tls.Dial("tcp", h.addr, h.conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	r := &rawH2{c: c, fr: http2.NewFramer(c, c)}
	r.enc = hpack.NewEncoder(&r.hbuf)
	if err := r.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rawH2) block(fields ...string) []byte {
	r.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		r.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return r.hbuf.Bytes()
}

// readFrames reads frames for up to within, handing each to done until it
// says so; the error is the read's that ended it first.
func (r *rawH2) readFrames(within time.Duration, done func(http2.Frame) bool) error {
	r.c.SetReadDeadline(time.Now().Add(within))
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return err
		}
		if done(f) {
			return nil
		}
	}
}

// goAway reads frames until a GOAWAY or the connection's end; it returns
// the GOAWAY's code.
func (r *rawH2) goAway(t *testing.T) (code http2.ErrCode, ok bool) {
	t.Helper()
	err := r.readFrames(10*time.Second, func(f http2.Frame) bool {
		if ga, is := f.(*http2.GoAwayFrame); is {
			code, ok = ga.ErrCode, true
		}
		return ok
	})
	return code, err == nil
}

// TestLeanH2RapidReset: a client that opens and resets streams without
// end (CVE-2023-44487) gets GOAWAY ENHANCE_YOUR_CALM and is cut off, and
// none of its requests reaches the server more than maxconn allows.
func TestLeanH2RapidReset(t *testing.T) {
	leanOnly(t, "x/net answers a reset flood with its own GOAWAY (NO_ERROR)")
	var requests atomic.Int32
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		requests.Add(1)
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false
	})
	h := startLeanH2(t, s.addr, "off", "{}")
	r := dialRawH2(t, h)
	start := time.Now()
	go func() {
		for id := uint32(1); id < 20000; id += 2 {
			blk := r.block(":method", "GET", ":scheme", "https", ":authority", "a.test", ":path", "/")
			if r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true}) != nil ||
				r.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	code, ok := r.goAway(t)
	if !ok || code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v (%v), want ENHANCE_YOUR_CALM", code, ok)
	}
	// The bound is a rate: h2MaxResets per h2ResetPeriod.
	periods := int32(time.Since(start)/h2ResetPeriod) + 1
	if n := requests.Load(); n > periods*(h2MaxResets+1) {
		t.Fatalf("%d requests reached the server in %d periods", n, periods)
	}
}

// TestLeanH2ContinuationFlood: a header block continued past the header
// list limit (CVE-2024-27316) ends the connection with PROTOCOL_ERROR
// instead of being read without end.
func TestLeanH2ContinuationFlood(t *testing.T) {
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false
	})
	h := startLeanH2(t, s.addr, "off", "{}")
	r := dialRawH2(t, h)
	var sent atomic.Int64
	go func() {
		blk := r.block(":method", "GET", ":scheme", "https", ":authority", "a.test", ":path", "/")
		if r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true}) != nil {
			return
		}
		for i := 0; i < 100000; i++ {
			frag := r.block(fmt.Sprintf("x-flood-%d", i), strings.Repeat("v", 1000))
			if r.fr.WriteContinuation(1, false, frag) != nil {
				return
			}
			sent.Add(int64(len(frag)))
		}
	}()
	code, ok := r.goAway(t)
	if !ok || code != http2.ErrCodeProtocol {
		t.Fatalf("GOAWAY %v (%v), want PROTOCOL_ERROR", code, ok)
	}
	if n := sent.Load(); n > 10<<20 {
		t.Fatalf("%d bytes of header block read before the end", n)
	}
}

// TestLeanH2Limits: streams past MAX_CONCURRENT_STREAMS are refused, PINGs
// are answered, and a PING flood is cut off.
func TestLeanH2Limits(t *testing.T) {
	leanOnly(t, "streams past the limit are not refused with REFUSED_STREAM")
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false
	})
	h := startLeanH2(t, s.addr, "off", "{client: 1s}")
	r := dialRawH2(t, h)
	// Streams whose request never ends (a body announced, never sent).
	for id := uint32(1); id <= 2*(h2MaxStreams+1); id += 2 {
		blk := r.block(":method", "POST", ":scheme", "https", ":authority", "a.test", ":path", "/")
		if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	r.fr.WritePing(false, [8]byte{1, 2, 3})
	var refused, pong bool
	err := r.readFrames(10*time.Second, func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID != 2*h2MaxStreams+1 || f.ErrCode != http2.ErrCodeRefusedStream {
				t.Fatalf("RST_STREAM %d %v", f.StreamID, f.ErrCode)
			}
			refused = true
		case *http2.PingFrame:
			pong = f.IsAck() && f.Data == [8]byte{1, 2, 3}
		}
		return refused && pong
	})
	if err != nil {
		t.Fatalf("refused %v ping %v: %v", refused, pong, err)
	}
	// A PING flood from a client that does not read: each cycle's acks
	// are written before the next frames are read, so the write blocks,
	// and the client timeout ends the connection.
	flood := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			err = r.fr.WritePing(false, [8]byte{})
		}
		flood <- err
	}()
	select {
	case <-flood:
	case <-time.After(20 * time.Second):
		t.Fatal("the PING flood was not cut off")
	}
}

// FuzzH2Frames feeds the frame loop what follows a valid preface and
// SETTINGS: it must neither panic nor hang, and must end when the client
// does.
func FuzzH2Frames(f *testing.F) {
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "a.test"}, {":path", "/x"}, {"cookie", "a=1"}, {"cookie", "b=2"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	f.Add(bytes.Clone(seed.Bytes()))
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndHeaders: true})
	fr.WriteData(3, false, []byte("body"))
	fr.WriteWindowUpdate(0, 1000)
	fr.WriteWindowUpdate(3, 1000)
	fr.WriteData(3, true, []byte("more"))
	fr.WritePing(false, [8]byte{})
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	fr.WriteRSTStream(1, http2.ErrCodeCancel)
	fr.WriteGoAway(3, http2.ErrCodeNo, nil)
	f.Add(bytes.Clone(seed.Bytes()))
	f.Add([]byte{0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0})                // WINDOW_UPDATE 0
	f.Add([]byte{0, 0, 0, 9, 0, 0, 0, 0, 1})                            // CONTINUATION alone
	f.Add([]byte{0, 0, 5, 1, 4, 0, 0, 0, 1, 0x82, 0x84, 0x87, 0x41, 0}) // HEADERS, short authority

	s := startRawServer(f, func(req *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	l := newTestListen(f, s.addr, "off", "{server: 2s, client: 2s}")
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		defer client.Close()
		if !l.serveH2(server, time.Now()) {
			t.Fatal("not served")
		}
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		var pre bytes.Buffer
		pre.WriteString(http2.ClientPreface)
		http2.NewFramer(&pre, nil).WriteSettings()
		if _, err := client.Write(pre.Bytes()); err != nil {
			t.Fatal(err)
		}
		client.Write(in)
		client.Close()
		deadline := time.Now().Add(10 * time.Second)
		for {
			l.mu.Lock()
			n := len(l.h2)
			l.mu.Unlock()
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the connection's goroutine did not end")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

var _ = errors.New

// TestAppendH2HeadAllocs: the head of a forwarded HTTP/2 request is built
// without allocating.
func TestAppendH2HeadAllocs(t *testing.T) {
	st := &h2Stream{method: "GET", path: "/a?b=c", authority: "a.test", clen: -1, fields: []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: "user-agent", Value: "ua"}, {Name: "cookie", Value: "a=1"},
		{Name: "cookie", Value: "b=2"}, {Name: "x-forwarded-for", Value: "203.0.113.7"}, {Name: "te", Value: "trailers"}}}
	buf := make([]byte, 0, 1024)
	got := string(appendH2Head(buf, st, 0, "", "127.0.0.1", true))
	want := "GET /a?b=c HTTP/1.1\r\nHost: a.test\r\nuser-agent: ua\r\nx-forwarded-for: 203.0.113.7\r\nte: trailers\r\n" +
		"cookie: a=1; b=2\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Host: a.test\r\nX-Forwarded-Proto: https\r\n\r\n"
	if got != want {
		t.Fatalf("head\n%q\nwant\n%q", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { buf = appendH2Head(buf[:0], st, 0, "", "127.0.0.1", true) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// BenchmarkLeanH2 is GET requests over one HTTP/2 connection served by
// the lean loop (net/http's server with H2_NETHTTP=1), 10 streams at a
// time; the client's and the in-process backend's allocations count too.
//
// x/net's client's 10 goroutines fall out of step, so requests arrive one
// by one while others are in flight. Medians of 3 interleaved runs on the
// shared machine: 72 µs per request through the loop, 88 µs through
// net/http's server, 85 µs through the loop's earlier design (whose read
// cycles sent a cycle's requests together, then awaited their answers in
// turn); under heavier load 97, 126 and 155 µs (255 µs against
// net/http's 107 µs when that design was measured first).
//
// Rejected: that design (the connection's goroutine awaited answers up to
// 2 ms each, a waiter goroutine past that): a stream arriving meanwhile
// waited for the next cycle, and a full queue or an unread upload held
// the connection; a new goroutine per stream: 58.1k user-space
// instructions per request under callgrind, 9k of them growing its stack
// again (45.0k with growStack), against 37.7k with goroutines that serve
// the connection's next stream (worker). Not tried: waking the
// connection's goroutine to frame each answer (a read deadline in the
// past, as Shutdown's wake does), which would add a deadline change and a
// failed read to every answer's goroutine switch.
func BenchmarkLeanH2(b *testing.B) {
	addr := benchBackend(b)
	l := newBenchListen(b, addr, "off")
	lean := os.Getenv("H2_NETHTTP") == ""
	l.cfg.LeanHTTP2 = &lean
	ca := testpki.NewCA(b, "h2 bench CA")
	leaf := ca.Issue(b, []string{"a.test"}, time.Time{}, time.Time{})
	conf := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"h2"}}
	ln := dispatchOn(b, l, conf)
	tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: ca.Pool()}}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	url := "https://" + ln.Addr().String() + "/"
	b.ReportAllocs()
	b.SetParallelism(5) // 10 streams on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

package httpproxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// proxyRequest is a request as ReverseProxy hands it to the transport.
func proxyRequest(t testing.TB, method, target string, h http.Header) *http.Request {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	if h == nil {
		h = http.Header{}
	}
	return &http.Request{Method: method, URL: u, Host: u.Host, Header: h, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
}

// TestAppendRequest: what appendRequest writes reads back, through
// http.ReadRequest, exactly as what req.Write writes; and what it leaves to
// req.Write, it leaves whole.
func TestAppendRequest(t *testing.T) {
	for _, tt := range []struct {
		name   string
		req    *http.Request
		direct bool // appendRequest takes it
	}{
		{"bench", proxyRequest(t, "GET", "http://127.0.0.1:8080/", http.Header{"User-Agent": {""},
			"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"bench"}}), true},
		{"browser", proxyRequest(t, "GET", "http://app.test/a/b%20c?x=1&y=%2F", http.Header{
			"User-Agent": {"Mozilla/5.0 (X11; Linux x86_64)"}, "Accept": {"text/html", "*/*"},
			"Cookie": {"a=1; b=2"}, "X-Empty": {""}, "Accept-Language": {"en"}}), true},
		{"no user agent field", proxyRequest(t, "HEAD", "http://h/", nil), true},
		{"post without body", proxyRequest(t, "POST", "http://h/p", nil), true},
		{"delete", proxyRequest(t, "DELETE", "http://h/d", nil), true},
		{"force query", proxyRequest(t, "GET", "http://h/q?", nil), true},
		{"empty path", proxyRequest(t, "OPTIONS", "http://h", nil), true},
		{"ipv6 host", proxyRequest(t, "GET", "http://[::1]:8080/", nil), true},
		{"value with spaces around", proxyRequest(t, "GET", "http://h/", http.Header{"X-A": {" v "}}), false},
		{"value with a newline", proxyRequest(t, "GET", "http://h/", http.Header{"X-A": {"a\nb"}}), false},
		{"bad field name", proxyRequest(t, "GET", "http://h/", http.Header{"Bad Name": {"v"}}), false},
		{"non-ASCII host", proxyRequest(t, "GET", "http://bücher.test/", nil), false},
		{"control in query", &http.Request{Method: "GET", URL: &url.URL{Path: "/", RawQuery: "a\x01"}, Host: "h", Header: http.Header{}}, false},
		{"close", func() *http.Request { r := proxyRequest(t, "GET", "http://h/", nil); r.Close = true; return r }(), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := appendRequest([]byte("kept"), tt.req)
			if ok != tt.direct {
				t.Fatalf("appendRequest took it: %v, want %v", ok, tt.direct)
			}
			if !ok {
				if string(got) != "kept" {
					t.Fatalf("appended %q to a request it left", got[4:])
				}
				return
			}
			var want bytes.Buffer
			if err := tt.req.Write(&want); err != nil {
				t.Fatal(err)
			}
			wantText := want.String()
			a, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(got[4:])))
			if err != nil {
				t.Fatalf("%v reading %q", err, got[4:])
			}
			b, err := http.ReadRequest(bufio.NewReader(&want))
			if err != nil {
				t.Fatal(err)
			}
			if a.Method != b.Method || a.RequestURI != b.RequestURI || a.Host != b.Host || a.ContentLength != b.ContentLength ||
				!reflect.DeepEqual(a.Header, b.Header) {
				t.Fatalf("appendRequest:\n%s\nreq.Write:\n%s", got[4:], wantText)
			}
			if n, m := strings.Count(string(got[4:]), "\r\n"), strings.Count(wantText, "\r\n"); n != m {
				t.Fatalf("%d lines, req.Write %d:\n%s\n%s", n, m, got[4:], wantText)
			}
		})
	}
}

// TestAppendRequestAllocs: into a buffer large enough, appendRequest
// allocates nothing.
func TestAppendRequestAllocs(t *testing.T) {
	req := proxyRequest(t, "GET", "http://127.0.0.1:8080/index.html?q=1", http.Header{"User-Agent": {"curl/8"},
		"Accept": {"*/*"}, "X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"https"}})
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf, _ = appendRequest(buf[:0], req) }); n != 0 {
		t.Fatalf("%v allocations per request head, want 0", n)
	}
}

// BenchmarkRequestHead compares appendRequest with req.Write for a
// typical proxied GET.
func BenchmarkRequestHead(b *testing.B) {
	req := proxyRequest(b, "GET", "http://127.0.0.1:8080/index.html?q=1", http.Header{"User-Agent": {"Mozilla/5.0"},
		"Accept": {"text/html"}, "Accept-Language": {"en"}, "Cookie": {"a=1"},
		"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"app.test"}})
	b.Run("appendRequest", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf, _ = appendRequest(buf[:0], req)
		}
	})
	b.Run("Request.Write", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		for b.Loop() {
			buf.Reset()
			req.Write(bw)
			bw.Flush()
		}
	})
}

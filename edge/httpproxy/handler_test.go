package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/pgswitch/pgswitch/edge/accesslog"
	"github.com/pgswitch/pgswitch/edge/backend"
	"github.com/pgswitch/pgswitch/edge/config"
	"github.com/pgswitch/pgswitch/edge/metrics"
)

// benchBackend is the benchmark's application: it answers every request
// with 23 bytes and keeps the connection, allocating nothing per request so
// that the benchmark's allocations are the proxy's.
func benchBackend(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n" +
		"Date: Sun, 06 Dec 2026 12:00:00 GMT\r\n\r\nhello from the backend\n")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += m
					// One request at a time: its head ends the bytes read.
					if n >= 4 && string(buf[n-4:n]) == "\r\n\r\n" {
						n = 0
						if _, err := c.Write(answer); err != nil {
							return
						}
					} else if n == len(buf) {
						return
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// newBenchListen is a Listen of one server at addr, with the access log
// written to logPath ("off": none).
func newBenchListen(tb testing.TB, addr, logPath string) *Listen {
	return newTestListen(tb, addr, logPath, "{}")
}

// newTestListen is newBenchListen with the listen's timeouts (YAML).
func newTestListen(tb testing.TB, addr, logPath, timeouts string) *Listen {
	return newTestListenServer(tb, addr, logPath, timeouts, "")
}

// newTestListenServer is newTestListen with more settings of the server
// (YAML, after a comma).
func newTestListenServer(tb testing.TB, addr, logPath, timeouts, server string) *Listen {
	tb.Helper()
	cfg, err := config.Parse([]byte(`
access_log: {path: "off"}
listens:
  bench:
    binds: [127.0.0.1:0]
    timeouts: ` + timeouts + `
    servers: [{name: be, addr: "` + addr + `", check: false` + server + `}]
`))
	if err != nil {
		tb.Fatal(err)
	}
	lc := cfg.Listens["bench"]
	pool, err := backend.NewPool(lc, backend.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	logger, err := accesslog.Open(logPath, "clf")
	if err != nil {
		tb.Fatal(err)
	}
	l, err := New(lc, pool, Options{Log: slog.New(slog.DiscardHandler), AccessLog: logger,
		Metrics: metrics.New(func() []*backend.Pool { return nil })})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Shutdown(context.Background()) })
	return l
}

// discardWriter is a ResponseWriter that keeps nothing: what net/http's
// server does with the answer is not the handler's cost.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// benchRequest is a GET as net/http's server hands it to the handler.
func benchRequest(tb testing.TB) *http.Request {
	tb.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(
		"GET /index.html?q=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\nAccept-Language: en\r\n\r\n")))
	if err != nil {
		tb.Fatal(err)
	}
	r.RemoteAddr = "127.0.0.1:40000"
	return r
}

// BenchmarkServeHTTP is the handler's share of an HTTP/1.1 request through
// the proxy: pick a server, ReverseProxy, serverTransport's exchange over a
// kept-alive loopback connection, metrics and (in the log variant) the
// access log line. net/http's reading of the client's request and writing
// of the answer are not in it.
func BenchmarkServeHTTP(b *testing.B) {
	addr := benchBackend(b)
	for _, bc := range []struct{ name, log string }{{"nolog", "off"}, {"log", os.DevNull}} {
		b.Run(bc.name, func(b *testing.B) {
			l := newBenchListen(b, addr, bc.log)
			r := benchRequest(b)
			// The connection an HTTP/1.x request arrives on, as ConnContext
			// records it.
			cc := &clientConn{l: l}
			r = r.WithContext(context.WithValue(r.Context(), connKey{}, cc))
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				l.ServeHTTP(w, r)
			}
		})
	}
}

// serveListen accepts loopback connections and hands them to l, as the
// proxy package does; it returns the address.
func serveListen(t *testing.T, l *Listen) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !l.Dispatch(c, nil) {
				c.Close()
			}
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestAnswerFields: the fields of the server's answer reach the client as
// they were, repeated ones in order, hop-by-hop ones (and those Connection
// names) removed, over HTTP/1.1 where moveHeader hands them over.
func TestAnswerFields(t *testing.T) {
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nX-A: 1\r\nSet-Cookie: a=1\r\nX-A: 2\r\nSet-Cookie: b=2\r\n" +
			"Connection: X-Hop\r\nX-Hop: h\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok", false
	})
	l := newBenchListen(t, s.addr, "off")
	addr := serveListen(t, l)
	client := &http.Client{Transport: &http.Transport{}}
	for i := range 2 { // the second on the kept-alive connection
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		h := resp.Header
		if !reflect.DeepEqual(h["X-A"], []string{"1", "2"}) || !reflect.DeepEqual(h["Set-Cookie"], []string{"a=1", "b=2"}) {
			t.Fatalf("request %d: repeated fields %v %v", i, h["X-A"], h["Set-Cookie"])
		}
		if h.Get("X-Hop") != "" || h.Get("Keep-Alive") != "" || h.Get("Content-Length") != "2" {
			t.Fatalf("request %d: fields %v", i, h)
		}
	}
}

// dispatchOn accepts on a loopback listener and hands each connection to
// l.Dispatch with conf (nil: plain), closing one it does not take, until
// the test ends.
func dispatchOn(tb testing.TB, l *Listen, conf *tls.Config) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !l.Dispatch(c, conf) {
				c.Close()
			}
		}
	}()
	return ln
}

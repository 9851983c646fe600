package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawServer is a loopback HTTP/1.1 server written by hand, so that tests
// choose exactly what goes on the wire. answer returns the bytes to send
// for a request and whether to close the connection after them.
type rawServer struct {
	addr    string
	accepts atomic.Int64
}

func startRawServer(t testing.TB, answer func(req *http.Request) (string, bool)) *rawServer {
	return serveRaw(t, true, answer)
}

// serveRaw runs a rawServer. With drainFirst, answer sees the request
// after its body was read (X-Test-Body-Length says how much); without,
// answer gets the body unread and what it leaves is drained after it.
func serveRaw(t testing.TB, drainFirst bool, answer func(req *http.Request) (string, bool)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if drainFirst {
						n, _ := io.Copy(io.Discard, req.Body)
						req.Header.Set("X-Test-Body-Length", strconv.FormatInt(n, 10)) // what was read of the body
					}
					out, closeAfter := answer(req)
					io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(c, out); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func newTestTransport(addr string, timeout time.Duration) *serverTransport {
	return &serverTransport{addr: addr, connectTimeout: 5 * time.Second, responseTimeout: timeout,
		fallback: &http.Transport{DisableCompression: true}}
}

func roundTrip(t *testing.T, tr http.RoundTripper, method, url, body string) (*http.Response, string, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return resp, string(b), nil
}

func TestTransportKeepAliveAndBodies(t *testing.T) {
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		switch req.URL.Path {
		case "/chunked":
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", false
		case "/empty":
			return "HTTP/1.1 204 No Content\r\n\r\n", false
		case "/until-close":
			return "HTTP/1.1 200 OK\r\n\r\nread until the end", true
		}
		if req.Method == http.MethodHead {
			return "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", false
		}
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path), false
	})
	tr := newTestTransport(s.addr, 10*time.Second)
	base := "http://" + s.addr
	for _, tt := range []struct{ method, path, want string }{
		{"GET", "/a", "/a"}, {"GET", "/chunked", "hello world"}, {"GET", "/empty", ""},
		{"HEAD", "/h", ""}, {"GET", "/bb", "/bb"},
	} {
		resp, body, err := roundTrip(t, tr, tt.method, base+tt.path, "")
		if err != nil || body != tt.want {
			t.Fatalf("%s %s: %q %v, want %q", tt.method, tt.path, body, err, tt.want)
		}
		if tt.method == "HEAD" && resp.ContentLength != 1000 {
			t.Fatalf("HEAD lost Content-Length: %d", resp.ContentLength)
		}
	}
	if n := s.accepts.Load(); n != 1 {
		t.Fatalf("%d connections for 5 keep-alive requests, want 1", n)
	}
	// A body delimited by the close cannot leave its connection reusable.
	if _, body, err := roundTrip(t, tr, "GET", base+"/until-close", ""); err != nil || body != "read until the end" {
		t.Fatalf("close-delimited: %q %v", body, err)
	}
	if _, _, err := roundTrip(t, tr, "GET", base+"/after", ""); err != nil {
		t.Fatal(err)
	}
	if n := s.accepts.Load(); n != 2 {
		t.Fatalf("%d connections after a close-delimited body, want 2", n)
	}
	// A request with a body goes through the fallback transport.
	if _, body, err := roundTrip(t, tr, "POST", base+"/post", "payload"); err != nil || body != "/post" {
		t.Fatalf("POST: %q %v", body, err)
	}
}

// TestTransportRetriesStaleConnection: the server closes every connection
// after its answer without saying so; a GET on the dead kept-alive
// connection is sent again on a new one, a DELETE is not.
func TestTransportRetriesStaleConnection(t *testing.T) {
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	})
	tr := newTestTransport(s.addr, 10*time.Second)
	url := "http://" + s.addr + "/"
	for i := range 3 {
		if _, body, err := roundTrip(t, tr, "GET", url, ""); err != nil || body != "ok" {
			t.Fatalf("GET %d: %q %v", i, body, err)
		}
	}
	if n := s.accepts.Load(); n != 3 {
		t.Fatalf("%d connections for 3 requests on a server that closes each, want 3", n)
	}
	_, _, err := roundTrip(t, tr, "DELETE", url, "")
	if err == nil || !errors.Is(err, errNoAnswer) {
		t.Fatalf("DELETE on a dead connection: %v, want errNoAnswer and no retry", err)
	}
}

// TestTransportTimeoutAndCancel: a server that never answers is given up
// after the response timeout; an HTTP/2 client that resets its stream stops
// the wait at once (an HTTP/1.x request's context does not end while its
// handler runs: see exchange).
func TestTransportTimeoutAndCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // holds the connection, never answers
			accepted <- struct{}{}
		}
	}()
	tr := newTestTransport(ln.Addr().String(), 100*time.Millisecond)
	_, _, err = roundTrip(t, tr, "GET", "http://"+ln.Addr().String()+"/", "")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("silent server: %v, want a timeout", err)
	}

	tr = newTestTransport(ln.Addr().String(), time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ln.Addr().String()+"/", nil)
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	errc := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		errc <- err
	}()
	<-accepted // the first request's
	<-accepted // this one's: it is waiting for the answer
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a cancelled request kept waiting for the server")
	}
}

func TestFirstLine(t *testing.T) {
	for in, want := range map[string]string{
		"GET / HTTP/1.1\r\nHost: x": "GET / HTTP/1.1",
		"GET / HTTP/1.1\nHost: x":   "GET / HTTP/1.1",
		"GET /partial":              "",
		"":                          "",
	} {
		if got := firstLine([]byte(in)); got != want {
			t.Errorf("firstLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTransportSendsLargeHead: a request head larger than the socket
// buffers, to a server that reads it late, is written whole (send's raw
// write stops at EAGAIN and Conn.Write finishes it), and its answer read.
func TestTransportSendsLargeHead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		time.Sleep(100 * time.Millisecond) // the client's buffers fill meanwhile
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			got <- -1
			return
		}
		got <- len(req.Header.Get("X-Big"))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}()
	tr := newTestTransport(ln.Addr().String(), 30*time.Second)
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
	big := strings.Repeat("b", 16<<20)
	req.Header.Set("X-Big", big)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := <-got; n != len(big) || string(body) != "ok" {
		t.Fatalf("server read a %d-byte field (want %d), answer %q", n, len(big), body)
	}
}

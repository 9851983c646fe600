package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/edge/internal/testpki"
)

// rawClient is a client connection to the proxy that writes raw requests
// and reads answers.
type rawClient struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawClient{Conn: c, br: bufio.NewReader(c)}
}

// answer reads one answer to a request of method, and its body.
func (c *rawClient) answer(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// TestLeanAnswers: every framing of an answer reaches the client as the
// server framed it, on one kept-alive client connection, pipelined
// requests in order; interim answers come before the final one.
func TestLeanAnswers(t *testing.T) {
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		switch req.URL.Path {
		case "/chunked":
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n6;e=1\r\n world\r\n0\r\nX-T: t\r\n\r\n", false
		case "/empty":
			return "HTTP/1.1 204 No Content\r\n\r\n", false
		case "/hints":
			return "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal", false
		case "/big":
			return "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("b", 100000), false
		case "/server-closes":
			return "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye", true
		case "/until-close":
			return "HTTP/1.1 200 OK\r\n\r\nread until the end", true
		}
		if req.Method == http.MethodHead {
			return "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", false
		}
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path), false
	})
	l := newBenchListen(t, s.addr, "off")
	c := dialRaw(t, serveListen(t, l))

	io.WriteString(c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"/one", "/two"} {
		if _, body := c.answer(t, "GET"); body != want {
			t.Fatalf("pipelined: got %q, want %q", body, want)
		}
	}
	io.WriteString(c, "GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.answer(t, "GET")
	if body != "hello world" || len(resp.TransferEncoding) != 1 || resp.Trailer.Get("X-T") != "t" {
		t.Fatalf("chunked: %q te %v trailer %v", body, resp.TransferEncoding, resp.Trailer)
	}
	io.WriteString(c, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.answer(t, "HEAD"); resp.ContentLength != 1000 || body != "" {
		t.Fatalf("HEAD: length %d body %q", resp.ContentLength, body)
	}
	io.WriteString(c, "GET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c.answer(t, "GET"); resp.StatusCode != 204 {
		t.Fatalf("204: %d", resp.StatusCode)
	}
	io.WriteString(c, "GET /hints HTTP/1.1\r\nHost: x\r\n\r\n")
	line, _ := c.br.ReadString('\n')
	if line != "HTTP/1.1 103 Early Hints\r\n" {
		t.Fatalf("interim answer: %q", line)
	}
	for line != "\r\n" {
		line, _ = c.br.ReadString('\n')
	}
	if resp, body := c.answer(t, "GET"); resp.StatusCode != 200 || body != "final" {
		t.Fatalf("after 103: %d %q", resp.StatusCode, body)
	}
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.answer(t, "GET"); len(body) != 100000 {
		t.Fatalf("big: %d bytes", len(body))
	}
	io.WriteString(c, "GET /server-closes HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.answer(t, "GET"); body != "bye" || resp.Close {
		t.Fatalf("server closing: %q close %v (the client's connection stays)", body, resp.Close)
	}
	io.WriteString(c, "GET /until-close HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.answer(t, "GET"); body != "read until the end" || !resp.Close {
		t.Fatalf("until close: %q close %v", body, resp.Close)
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("after an answer framed by its end: %v, want EOF", err)
	}
}

// TestLeanBadAnswers: an answer the proxy cannot pass on is a 502 to the
// client, whose connection serves on.
func TestLeanBadAnswers(t *testing.T) {
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		switch req.URL.Path {
		case "/garbage":
			return "HTTP/9 nonsense\r\n\r\n", true
		case "/huge-head":
			return "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("h", 20000) + "\r\nContent-Length: 0\r\n\r\n", true
		case "/switch":
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", true
		case "/gzip":
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", true
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	l := newBenchListen(t, s.addr, "off")
	c := dialRaw(t, serveListen(t, l))
	for _, path := range []string{"/garbage", "/huge-head", "/switch", "/gzip"} {
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := c.answer(t, "GET"); resp.StatusCode != 502 {
			t.Fatalf("%s: %d, want 502", path, resp.StatusCode)
		}
		io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := c.answer(t, "GET"); body != "ok" {
			t.Fatalf("after %s: %q", path, body)
		}
	}
}

// echoServer is a net/http server that answers each request with its
// method, path and body.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/too-large" {
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		b, _ := io.ReadAll(req.Body)
		io.WriteString(w, req.Method+" "+req.URL.Path+" "+string(b))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestLeanBodies: a request body with a Content-Length goes to the server
// whole, whether it came with its head, in pieces after it, or larger than
// any buffer; what follows it is the next request.
func TestLeanBodies(t *testing.T) {
	l := newBenchListen(t, echoServer(t), "off")
	c := dialRaw(t, serveListen(t, l))
	io.WriteString(c, "POST /with-head HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"POST /with-head hello", "GET /next "} {
		if _, body := c.answer(t, "GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
	io.WriteString(c, "PUT /pieces HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhel")
	time.Sleep(20 * time.Millisecond)
	io.WriteString(c, "lo ")
	time.Sleep(20 * time.Millisecond)
	io.WriteString(c, "worldGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"PUT /pieces hello world", "GET /after "} {
		if _, body := c.answer(t, "GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
	big := strings.Repeat("0123456789", 300000)
	go fmt.Fprintf(c, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(big), big)
	if _, body := c.answer(t, "POST"); body != "POST /big "+big {
		t.Fatalf("3 MB body: answer of %d bytes", len(body))
	}

	// A server that answers before reading the body: its answer reaches
	// the client, whose connection then closes.
	c2 := dialRaw(t, serveListen(t, l))
	go fmt.Fprintf(c2, "POST /too-large HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(big), big)
	if resp, _ := c2.answer(t, "POST"); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("early answer: %d", resp.StatusCode)
	}
}

// TestLeanHandOff: a request the lean loop does not take (here a chunked
// body) is served by net/http on the same connection, and so is what
// follows.
func TestLeanHandOff(t *testing.T) {
	l := newBenchListen(t, echoServer(t), "off")
	c := dialRaw(t, serveListen(t, l))
	io.WriteString(c, "GET /lean HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.answer(t, "GET"); body != "GET /lean " {
		t.Fatalf("lean: %q", body)
	}
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel")
	time.Sleep(10 * time.Millisecond) // the body in two pieces
	io.WriteString(c, "\r\n2\r\nlo\r\n0\r\n\r\n")
	if _, body := c.answer(t, "POST"); body != "POST /upload hello" {
		t.Fatalf("handed off: %q", body)
	}
	io.WriteString(c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.answer(t, "GET"); body != "GET /after " {
		t.Fatalf("after the hand-off: %q", body)
	}
}

// TestLeanParks: idle connections, plain and TLS, give their goroutines up
// after parkAfter, and a request on one is answered; Shutdown closes them.
func TestLeanParks(t *testing.T) {
	if !parkingOn() {
		t.Skip("no epoll here")
	}
	for _, overTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "TLS"}[overTLS], func(t *testing.T) { testParks(t, overTLS) })
	}
}

func testParks(t *testing.T, overTLS bool) {
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path), false
	})
	l := newBenchListen(t, s.addr, "off")
	var serverConf, clientConf *tls.Config
	if overTLS {
		ca := testpki.NewCA(t, "park test CA")
		leaf := ca.Issue(t, []string{"a.test"}, time.Time{}, time.Time{})
		serverConf = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"h2", "http/1.1"}}
		clientConf = &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}}
	}
	ln := dispatchOn(t, l, serverConf)
	before := runtime.NumGoroutine()
	const n = 20
	var cs []*rawClient
	for i := range n {
		c := dialRaw(t, ln.Addr().String())
		if overTLS {
			tc := tls.Client(c.Conn, clientConf)
			c = &rawClient{Conn: tc, br: bufio.NewReader(tc)}
		}
		fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		if _, body := c.answer(t, "GET"); body != fmt.Sprintf("/%d", i) {
			t.Fatalf("first request: %q", body)
		}
		cs = append(cs, c)
	}
	parkedAll := func() bool {
		parked := 0
		l.mu.Lock()
		for h := range l.h1 {
			if h.state.Load() == connParked {
				parked++
			}
		}
		l.mu.Unlock()
		return parked == n
	}
	waitUntil(t, 10*time.Second, parkedAll, "all connections parked")
	if g := runtime.NumGoroutine(); g > before+2 {
		t.Errorf("%d goroutines with %d parked connections, %d before them", g, n, before)
	}
	for i, c := range cs {
		fmt.Fprintf(c, "GET /again%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		if _, body := c.answer(t, "GET"); body != fmt.Sprintf("/again%d", i) {
			t.Fatalf("after parking: %q", body)
		}
	}
	waitUntil(t, 10*time.Second, parkedAll, "all connections parked again")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, c := range cs {
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Fatalf("parked connection after shutdown: %v, want EOF", err)
		}
	}
}

// TestLeanKeepAliveTimeouts: a parked connection is closed once
// http_keep_alive has passed, without an answer; a later request whose
// head dribbles past http_request gets 408, counted from its first byte.
func TestLeanKeepAliveTimeouts(t *testing.T) {
	if !parkingOn() {
		t.Skip("no epoll here")
	}
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	l := newTestListen(t, s.addr, "off", "{http_keep_alive: 1500ms, http_request: 300ms}")
	addr := serveListen(t, l)

	c := dialRaw(t, addr)
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.answer(t, "GET")
	waitUntil(t, 10*time.Second, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for h := range l.h1 {
			return h.state.Load() == connParked
		}
		return false
	}, "the connection parked")
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("parked connection: %v, want EOF once http_keep_alive passed", err)
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("closed after %v, before http_keep_alive", d)
	}

	c = dialRaw(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.answer(t, "GET")
	time.Sleep(400 * time.Millisecond) // idle longer than http_request: not counted
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n")
	if resp, _ := c.answer(t, "GET"); resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("dribbled head: %d close %v, want 408 and close", resp.StatusCode, resp.Close)
	}
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkLeanKeepAlive is an HTTP/1.1 keep-alive request through the lean
// loop end to end on loopback: the client's write and read, the proxy, the
// benchmark backend.
func BenchmarkLeanKeepAlive(b *testing.B) {
	l := newBenchListen(b, benchBackend(b), "off")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.Dispatch(c, nil)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /index.html HTTP/1.1\r\nHost: app.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		n := 0
		for !bytes.HasSuffix(buf[:n], backendEnd) {
			m, err := c.Read(buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += m
		}
	}
}

var backendEnd = []byte("backend\n")

// TestMalformedChunkedBody: an upload whose chunks are framed wrongly is
// the client's fault: 400, not the 502 of a server that failed.
func TestMalformedChunkedBody(t *testing.T) {
	l := newBenchListen(t, echoServer(t), "off")
	for _, body := range []string{"zz\r\nhello\r\n0\r\n\r\n", "3\r\nhelXX0\r\n\r\n"} {
		c := dialRaw(t, serveListen(t, l))
		io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+body)
		if resp, _ := c.answer(t, "POST"); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("body %q: %d, want 400", body, resp.StatusCode)
		}
	}
}

package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// leanOnly skips a test of what only the lean loop does when the h2
// tests run against net/http's server (H2_NETHTTP=1).
func leanOnly(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("H2_NETHTTP") != "" {
		t.Skip("net/http's HTTP/2 server: " + why)
	}
}

// startHeadServer is a loopback HTTP/1.1 server that hands handle each
// request with its body unread; handle returns the answer, and what it
// left of the body is drained before the answer goes out.
func startHeadServer(t *testing.T, handle func(req *http.Request) string) string {
	t.Helper()
	return serveRaw(t, false, func(req *http.Request) (string, bool) { return handle(req), false }).addr
}

// h2Of returns the listen's one lean HTTP/2 connection.
func h2Of(t *testing.T, l *Listen) *h2Conn {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.h2) != 1 {
		t.Fatalf("%d lean HTTP/2 connections, want 1", len(l.h2))
	}
	for h := range l.h2 {
		return h
	}
	return nil
}

func ok(body string) string {
	return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// TestLeanH2SlowServerOneConnection: on one connection, while the server
// of one stream holds its answer, fifty other streams are sent to their
// server and answered; the slow one is answered when its server lets
// it.
func TestLeanH2SlowServerOneConnection(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{})
	addr := startHeadServer(t, func(req *http.Request) string {
		if req.URL.Path == "/slow" {
			close(arrived)
			<-release
			return ok("slow")
		}
		return ok(req.URL.Path)
	})
	h := startLeanH2(t, addr, "off", "{}")
	h.client.Timeout = 30 * time.Second // a stall fails, not hangs
	h.get(t, "/warm")
	slow := h.getAsync("/slow")
	<-arrived
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/fast/%d", i)
			resp, err := h.client.Get(h.url + path)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != path {
				errs <- fmt.Errorf("%s: %q", path, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	select {
	case got := <-slow:
		t.Fatalf("the slow stream ended before its server answered: %q", got)
	default:
	}
	if os.Getenv("H2_NETHTTP") == "" {
		h2Of(t, h.l) // one connection served them all
	}
	close(release)
	if got := <-slow; got != "slow" {
		t.Fatalf("slow: %q", got)
	}
}

// TestLeanH2UnreadUpload: a server that does not read a large upload
// holds up that stream only; other streams of the connection are
// answered meanwhile, and the upload arrives whole once the server
// reads it.
func TestLeanH2UnreadUpload(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{})
	addr := startHeadServer(t, func(req *http.Request) string {
		if req.URL.Path == "/upload" {
			close(arrived)
			<-release
			n, _ := io.Copy(io.Discard, req.Body)
			return ok(strconv.FormatInt(n, 10))
		}
		return ok("fast")
	})
	h := startLeanH2(t, addr, "off", "{}")
	h.client.Timeout = 30 * time.Second
	h.get(t, "/warm")
	const size = 64 << 20 // far more than the socket buffers hold
	var sent atomic.Int64
	upload := make(chan string, 1)
	go func() {
		pr, pw := io.Pipe()
		go func() {
			chunk := bytes.Repeat([]byte("u"), 64<<10)
			for n := 0; n < size; n += len(chunk) {
				if _, err := pw.Write(chunk); err != nil {
					return
				}
				sent.Add(int64(len(chunk)))
			}
			pw.Close()
		}()
		resp, err := h.client.Post(h.url+"/upload", "application/octet-stream", pr)
		if err != nil {
			upload <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		upload <- string(b)
	}()
	<-arrived
	// The upload stalls: its server reads nothing.
	var last int64 = -1
	waitUntil(t, 20*time.Second, func() bool {
		n := sent.Load()
		stalled := n == last
		last = n
		time.Sleep(50 * time.Millisecond)
		return stalled && n < size
	}, "the upload stalled")
	for i := range 20 {
		if _, body := h.get(t, "/fast"); body != "fast" {
			t.Fatalf("fast %d: %q", i, body)
		}
	}
	select {
	case got := <-upload:
		t.Fatalf("the upload ended before its server read it: %q", got)
	default:
	}
	close(release)
	if got := <-upload; got != strconv.Itoa(size) {
		t.Fatalf("upload: %q, want %d bytes read", got, size)
	}
}

// TestLeanH2QueueDoesNotHoldConnection: while a stream waits in the
// maxconn queue (another connection holds the only server), the other
// streams of its connection are answered (a PING, a request the proxy
// refuses itself); the queued one gets the server when it is released.
func TestLeanH2QueueDoesNotHoldConnection(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	addr := startHeadServer(t, func(req *http.Request) string {
		if req.URL.Path == "/hold" {
			arrived <- struct{}{}
			<-release
		}
		return ok(req.URL.Path)
	})
	h := startLeanH2Server(t, addr, "off", "{queue: 30s}", ", maxconn: 1")
	h.client.Timeout = 30 * time.Second
	held := h.getAsync("/hold")
	<-arrived
	r := dialRawH2(t, h)
	blk := r.block(":method", "GET", ":scheme", "https", ":authority", "a.test", ":path", "/queued")
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() bool { return h.l.pool.QueueLen() == 1 }, "the request queued")
	blk = r.block(":method", "GET", ":scheme", "https", ":authority", "a.test", ":path", "no-slash")
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: blk, EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WritePing(false, [8]byte{7}); err != nil {
		t.Fatal(err)
	}
	var pong, refused bool
	err := r.readFrames(20*time.Second, func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.PingFrame:
			pong = pong || f.IsAck() && f.Data == [8]byte{7}
		case *http2.HeadersFrame:
			if f.StreamID == 1 {
				t.Fatal("the queued stream was answered while the server was held")
			}
			refused = f.StreamID == 3
		case *http2.RSTStreamFrame:
			refused = refused || f.StreamID == 3 // net/http refuses the path so
		}
		return pong && refused
	})
	if err != nil {
		t.Fatalf("pong %v refused %v: %v", pong, refused, err)
	}
	if n := h.l.pool.QueueLen(); n != 1 {
		t.Fatalf("%d requests queued, want 1", n)
	}
	close(release)
	if got := <-held; got != "/hold" {
		t.Fatalf("held: %q", got)
	}
	err = r.readFrames(20*time.Second, func(f http2.Frame) bool {
		d, ok := f.(*http2.DataFrame)
		if ok && d.StreamID == 1 && string(d.Data()) != "/queued" {
			t.Fatalf("queued: %q", d.Data())
		}
		return ok && d.StreamID == 1
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLeanH2RequestTrailers: request trailers reach the server, in the
// trailer section of a chunked body: with a body streamed to the server,
// and with one that arrived whole with its trailers.
func TestLeanH2RequestTrailers(t *testing.T) {
	leanOnly(t, "ReverseProxy announces the trailers but sends them empty")
	seen := make(chan string, 2)
	addr := startHeadServer(t, func(req *http.Request) string {
		b, _ := io.ReadAll(req.Body)
		seen <- fmt.Sprintf("%s %v %q %s", req.URL.Path, req.TransferEncoding, b, req.Trailer.Get("X-Sum"))
		return ok("ok")
	})
	h := startLeanH2(t, addr, "off", "{}")
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", h.url+"/streamed", pr)
	req.Trailer = http.Header{"X-Sum": nil}
	go func() {
		pw.Write([]byte("hello "))
		time.Sleep(20 * time.Millisecond) // a later read cycle: streamed
		pw.Write([]byte("world"))
		req.Trailer.Set("X-Sum", "abc")
		pw.Close()
	}()
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := <-seen, `/streamed [chunked] "hello world" abc`; got != want {
		t.Fatalf("server saw %s, want %s", got, want)
	}

	r := dialRawH2(t, h)
	var out bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
		BlockFragment: r.block(":method", "POST", ":scheme", "https", ":authority", "a.test", ":path", "/whole", "content-length", "5")})
	fr.WriteData(1, false, []byte("whole"))
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: r.block("x-sum", "def")})
	if _, err := r.c.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	if got, want := <-seen, `/whole [chunked] "whole" def`; got != want {
		t.Fatalf("server saw %s, want %s", got, want)
	}
}

// TestLeanH2Connect: a plain CONNECT goes to the server as an HTTP/1.1
// CONNECT; after its 200 the stream is a tunnel both ways, and each
// side's end reaches the other.
func TestLeanH2Connect(t *testing.T) {
	leanOnly(t, "ReverseProxy sends a CONNECT's stream as a chunked body once it ended")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	line := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		line <- req.Method + " " + req.RequestURI + " " + req.Host
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		// Echo in upper case until the client's end, then close.
		buf := make([]byte, 1024)
		for {
			n, err := br.Read(buf)
			c.Write(bytes.ToUpper(buf[:n]))
			if err != nil {
				return
			}
		}
	}()
	h := startLeanH2(t, ln.Addr().String(), "off", "{}")
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("CONNECT", h.url, pr)
	req.Host = "db.example:5432"
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	if got := <-line; got != "CONNECT db.example:5432 db.example:5432" {
		t.Fatalf("server saw %q", got)
	}
	buf := make([]byte, 100)
	for _, msg := range []string{"ping", "more bytes"} {
		if _, err := pw.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		n, err := io.ReadAtLeast(resp.Body, buf, len(msg))
		if err != nil || string(buf[:n]) != strings.ToUpper(msg) {
			t.Fatalf("tunnel: %q %v", buf[:n], err)
		}
	}
	pw.Close() // END_STREAM: the server reads its end, and closes
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("end of the tunnel: %q %v", rest, err)
	}
	resp.Body.Close()
}

// TestLeanH2IdleReleasesBuffers: a connection with no stream open gives
// its read buffer and frame reader back after parkAfter, and takes them
// again for its next request.
func TestLeanH2IdleReleasesBuffers(t *testing.T) {
	leanOnly(t, "the buffers are the lean loop's")
	s := startRawServer(t, func(req *http.Request) (string, bool) { return ok("ok"), false })
	h := startLeanH2(t, s.addr, "off", "{http_keep_alive: 1m}")
	h.get(t, "/")
	c := h2Of(t, h.l)
	waitUntil(t, 10*parkAfter, func() bool { return !c.bufsHeld.Load() }, "the buffers given back")
	c.mu.Lock()
	outHeld := c.out.b != nil || c.spare != nil || c.ans != nil
	c.mu.Unlock()
	if outHeld {
		t.Fatal("the output buffers or the answer head are still held")
	}
	for i := range 3 {
		if resp, body := h.get(t, "/again"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d after idle: %d %q", i, resp.StatusCode, body)
		}
	}
	if h2Of(t, h.l) != c {
		t.Fatal("a new connection served the requests after idle")
	}
}

// TestLeanH2RandomStreams runs many streams on one connection against a
// model: random request bodies (none, small, larger than a window;
// sometimes without a content-length), random answer sizes and framings,
// random resets by the client. Every stream not reset gets its own answer
// intact, and the server saw its body intact.
func TestLeanH2RandomStreams(t *testing.T) {
	// The server answers /n/<size>/<chunked> with size bytes derived
	// from the path, and reports the body it read.
	addr := startHeadServer(t, func(req *http.Request) string {
		b, _ := io.ReadAll(req.Body)
		parts := strings.Split(req.URL.Path, "/")
		size, _ := strconv.Atoi(parts[2])
		body := modelBody(req.URL.Path, size)
		sum := fmt.Sprintf("X-Got: %d %x\r\n", len(b), crc(b))
		if parts[3] == "chunked" {
			var w strings.Builder
			w.WriteString("HTTP/1.1 200 OK\r\n" + sum + "Transfer-Encoding: chunked\r\n\r\n")
			for p := body; len(p) > 0; {
				k := min(len(p), 1+len(p)/3)
				fmt.Fprintf(&w, "%x\r\n%s\r\n", k, p[:k])
				p = p[k:]
			}
			w.WriteString("0\r\n\r\n")
			return w.String()
		}
		return "HTTP/1.1 200 OK\r\n" + sum + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	})
	h := startLeanH2(t, addr, "off", "{}")
	h.client.Timeout = 60 * time.Second
	rng := rand.New(rand.NewSource(15))
	type streamCase struct {
		path    string
		body    []byte
		length  bool // a content-length
		resetAt int  // bytes of the answer read before a reset; -1: none
	}
	var cases []streamCase
	for i := range 200 {
		sizes := []int{0, 10, 1000, 70000, 200000}
		c := streamCase{
			path:    fmt.Sprintf("/n/%d/%s/%d", sizes[rng.Intn(len(sizes))], []string{"length", "chunked"}[rng.Intn(2)], i),
			body:    bytes.Repeat([]byte{byte('a' + i%26)}, sizes[rng.Intn(len(sizes))]),
			length:  rng.Intn(2) == 0,
			resetAt: -1,
		}
		if rng.Intn(5) == 0 {
			c.resetAt = rng.Intn(2000)
		}
		cases = append(cases, c)
	}
	sem := make(chan struct{}, 40)
	var wg sync.WaitGroup
	errs := make(chan error, len(cases))
	for _, c := range cases {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var body io.Reader = bytes.NewReader(c.body)
			if !c.length {
				body = io.MultiReader(body) // no length known
			}
			req, _ := http.NewRequestWithContext(ctx, "POST", h.url+c.path, body)
			resp, err := h.client.Do(req)
			if err != nil {
				errs <- fmt.Errorf("%s: %v", c.path, err)
				return
			}
			defer resp.Body.Close()
			if c.resetAt >= 0 {
				io.CopyN(io.Discard, resp.Body, int64(c.resetAt))
				cancel()
				return
			}
			got, err := io.ReadAll(resp.Body)
			size, _ := strconv.Atoi(strings.Split(c.path, "/")[2])
			if err != nil || resp.StatusCode != 200 || string(got) != modelBody(strings.Join(strings.Split(c.path, "/")[:5], "/"), size) {
				errs <- fmt.Errorf("%s: %d, %d bytes, %v", c.path, resp.StatusCode, len(got), err)
				return
			}
			if want := fmt.Sprintf("%d %x", len(c.body), crc(c.body)); resp.Header.Get("X-Got") != want {
				errs <- fmt.Errorf("%s: the server read %s, want %s", c.path, resp.Header.Get("X-Got"), want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The connection still serves, and nothing is left in flight.
	if resp, body := h.get(t, "/n/5/length/end"); resp.StatusCode != 200 || body != modelBody("/n/5/length/end", 5) {
		t.Fatalf("after: %d %q", resp.StatusCode, body)
	}
	if os.Getenv("H2_NETHTTP") == "" {
		c := h2Of(t, h.l)
		waitUntil(t, 10*time.Second, func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.idleLocked()
		}, "every stream ended")
	}
}

// modelBody is the answer body of path: size bytes that differ by path.
func modelBody(path string, size int) string {
	var b strings.Builder
	for b.Len() < size {
		b.WriteString(path)
		b.WriteByte(';')
	}
	return b.String()[:size]
}

func crc(b []byte) uint32 {
	var h uint32 = 2166136261
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

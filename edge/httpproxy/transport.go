package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"syscall"
	"time"
)

// serverTransport forwards body-less, non-upgrade requests (most of them:
// GET, HEAD, …) to one server over HTTP/1.1 keep-alive, writing the request
// and reading the answer on the handler's own goroutine. http.Transport
// spends two goroutine hand-offs and an extra read per request on its
// per-connection writeLoop and readLoop; the CPU profile of the keep-alive
// benchmark put a third of the proxy's time there (bench/RESULTS.md).
// Requests with a body or an Upgrade go to http.Transport (fallback), which
// writes the body while it reads the answer.
//
// Rejected: routing everything here (a server that answers before reading
// a large body would stall a synchronous writer); a goroutine per server
// connection watching it while idle (the very hand-off this removes).
type serverTransport struct {
	addr            string
	tlsConf         *tls.Config // nil: plain HTTP
	dialer          net.Dialer
	connectTimeout  time.Duration
	responseTimeout time.Duration
	fallback        http.RoundTripper

	mu     sync.Mutex
	idle   []*serverConn // most recently used last
	closed bool
}

const (
	maxIdlePerServer = 1024
	idleTimeout      = 90 * time.Second
	// A connection idle longer than this is checked (one non-blocking
	// peek) before reuse: the server may have closed it meanwhile.
	checkIdleAfter = time.Second
)

// serverConn is one keep-alive connection to the server.
type serverConn struct {
	net.Conn
	raw       net.Conn // the TCP connection under TLS, for the liveness peek
	br        *bufio.Reader
	bw        *bufio.Writer // for requests appendRequest leaves to req.Write
	head      []byte        // the request head appendRequest made
	idleSince time.Time
	rdl, wdl  deadline // set on Conn (and raw under it)

	// Plain connections write a request head with send: see sendHead.
	rc           syscall.RawConn
	sendThenWait func(fd uintptr) bool // c.sendHead, bound once
	sent         int                   // bytes of head written; -1: all, answer awaited
	sendErr      error
}

// send writes head and waits until the answer's first bytes can be read,
// without the read that would find nothing: it writes inside the raw
// connection's read callback, that is after the poller forgot the
// connection's last readiness, so the answer's arrival cannot be missed,
// then lets the poller wait. (A plain Write then Read tries the read at
// once, gets EAGAIN, and only then waits: one syscall per request more.)
// What a full socket buffer leaves unwritten is written by Conn.Write.
func (c *serverConn) send(head []byte) error {
	c.head, c.sent, c.sendErr = head, 0, nil
	err := c.rc.Read(c.sendThenWait)
	if c.sendErr != nil {
		return c.sendErr
	}
	if c.sent >= 0 {
		if _, werr := c.Conn.Write(c.head[c.sent:]); werr != nil {
			return werr
		}
		return nil
	}
	return err
}

// sendHead is the callback of send: the first call writes the head and
// reports false (wait for the answer) when all of it went out; the call
// after the wait reports true.
func (c *serverConn) sendHead(fd uintptr) bool {
	if c.sent < 0 {
		return true
	}
	for c.sent < len(c.head) {
		n, err := syscall.Write(int(fd), c.head[c.sent:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			if err != syscall.EAGAIN {
				c.sendErr = err
			}
			return true
		}
		c.sent += n
	}
	c.sent = -1
	return false
}

// armRead bounds the next read by the response timeout.
func (c *serverConn) armRead(timeout time.Duration) {
	if at, ok := c.rdl.arm(time.Now().Add(timeout), slackOf(timeout)); ok {
		_ = c.Conn.SetReadDeadline(at)
	}
}

// armWrite bounds the next writes by the response timeout.
func (c *serverConn) armWrite(timeout time.Duration) {
	if at, ok := c.wdl.arm(time.Now().Add(timeout), slackOf(timeout)); ok {
		_ = c.Conn.SetWriteDeadline(at)
	}
}

// armDeadlines bounds the next reads and writes by the response timeout.
func (c *serverConn) armDeadlines(timeout time.Duration) {
	want := time.Now().Add(timeout)
	if at, ok := c.rdl.arm(want, slackOf(timeout)); ok {
		_ = c.Conn.SetReadDeadline(at)
	}
	if at, ok := c.wdl.arm(want, slackOf(timeout)); ok {
		_ = c.Conn.SetWriteDeadline(at)
	}
}

func (t *serverTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// Header["Upgrade"]: ReverseProxy sets it canonical, and Get would
	// canonicalize the name on every request.
	if up := req.Header["Upgrade"]; (req.Body != nil && req.Body != http.NoBody) || len(up) > 0 && up[0] != "" {
		return t.fallback.RoundTrip(req)
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := t.conn(req.Context())
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(c, req, false)
		if err == nil {
			return resp, nil
		}
		c.Close()
		// A kept-alive connection the server closed meanwhile fails before
		// any answer; a request that may be repeated gets a new one.
		if reused && attempt == 0 && errors.Is(err, errNoAnswer) && idempotent(req) && req.Context().Err() == nil {
			continue
		}
		return nil, err
	}
}

// errNoAnswer marks a failure before any byte of the answer arrived.
var errNoAnswer = errors.New("server closed the connection without an answer")

func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

// conn returns an idle connection, or a new one.
func (t *serverTransport) conn(ctx context.Context) (*serverConn, bool, error) {
	now := time.Now()
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		c := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		age := now.Sub(c.idleSince)
		if age > checkIdleAfter {
			c.rdl.set(time.Time{}) // alive clears it
		}
		if age > idleTimeout || (age > checkIdleAfter && !alive(c.raw)) {
			c.Close()
			continue
		}
		return c, true, nil
	}
	c, err := t.dial(ctx)
	return c, false, err
}

// alive peeks at an idle connection without blocking: no byte and no EOF
// means the server still keeps it open. It clears the deadline the last
// exchange left, which would fail the peek once past.
func alive(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Time{})
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && ok
}

func (t *serverTransport) dial(ctx context.Context) (*serverConn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.connectTimeout)
	defer cancel()
	raw, err := t.dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	c := &serverConn{Conn: raw, raw: raw}
	if t.tlsConf != nil {
		tc := tls.Client(raw, t.tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", t.addr, err)
		}
		c.Conn = tc
	} else if sc, ok := raw.(syscall.Conn); ok {
		if c.rc, err = sc.SyscallConn(); err == nil {
			c.sendThenWait = c.sendHead
		}
	}
	c.br = bufio.NewReaderSize(c.Conn, bufSize)
	c.bw = bufio.NewWriterSize(c.Conn, 4096)
	return c, nil
}

// aLongTimeAgo is a deadline in the past, to stop a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// exchange writes req on c and reads the answer's headers.
//
// An HTTP/2 client that resets its stream stops the wait for the server at
// once. The context of an HTTP/1.x request ends only when its handler does
// (clientConn answers net/http's background read), so watching it would
// cost every request a context.AfterFunc for nothing: such a client's
// leaving is noticed when the answer is written, as HAProxy does without
// abortonclose.
//
// The deadlines armed here bound the writing of the request and the wait
// for the answer's headers; they are not cleared after (the next exchange
// arms its own, and alive clears the read deadline before peeking).
func (t *serverTransport) exchange(c *serverConn, req *http.Request, built bool) (*http.Response, error) {
	stop := func() bool { return true }
	if req.ProtoMajor >= 2 {
		stop = context.AfterFunc(req.Context(), func() { c.SetDeadline(aLongTimeAgo) })
		defer stop()
	}
	c.armDeadlines(t.responseTimeout)
	ok := built
	if !ok {
		c.head, ok = appendRequest(c.head[:0], req)
	}
	if ok {
		var err error
		if c.rc != nil {
			err = c.send(c.head)
		} else {
			_, err = c.Conn.Write(c.head)
		}
		if err != nil {
			return nil, noAnswer(err, req)
		}
	} else {
		if err := req.Write(c.bw); err != nil {
			return nil, noAnswer(err, req)
		}
		if err := c.bw.Flush(); err != nil {
			return nil, noAnswer(err, req)
		}
	}
	var resp *http.Response
	length := int64(-1) // of the body readAnswer left to serverBody
	for {
		if _, err := c.br.Peek(1); err != nil {
			return nil, noAnswer(err, req)
		}
		if r, n, ok := readAnswer(c.br, req); ok {
			resp, length = r, n
			break
		}
		var err error
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return nil, ctxErr(err, req)
		}
		// 1xx answers other than 101 come before the real one; ReverseProxy
		// forwards them through the client trace.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
	if !stop() {
		// The client left as the answer arrived.
		return nil, req.Context().Err()
	}
	if length == 0 {
		resp.Body = http.NoBody
	}
	if resp.Body == http.NoBody {
		t.release(c, resp)
		return resp, nil
	}
	resp.Body = &serverBody{body: resp.Body, remain: length, c: c, t: t, resp: resp}
	return resp, nil
}

func noAnswer(err error, req *http.Request) error {
	if ctx := req.Context().Err(); ctx != nil {
		return ctx
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return fmt.Errorf("%w: %w", errNoAnswer, err)
}

func ctxErr(err error, req *http.Request) error {
	if ctx := req.Context().Err(); ctx != nil {
		return ctx
	}
	return err
}

// release puts c back among the idle connections when the exchange left
// it reusable.
func (t *serverTransport) release(c *serverConn, resp *http.Response) {
	if resp.Close || resp.Request.Close || c.br.Buffered() > 0 {
		c.Close()
		return
	}
	t.put(c)
}

// put puts c, reusable, back among the idle connections.
func (t *serverTransport) put(c *serverConn) {
	c.idleSince = time.Now()
	t.mu.Lock()
	if t.closed || len(t.idle) >= maxIdlePerServer {
		t.mu.Unlock()
		c.Close()
		return
	}
	t.idle = append(t.idle, c)
	t.mu.Unlock()
}

// CloseIdleConnections closes the idle connections; with the fallback's.
func (t *serverTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
	if ci, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// serverBody is an answer's body: read to its end, it gives the connection
// back; closed early, it closes the connection.
type serverBody struct {
	body   io.ReadCloser // http.ReadResponse's; nil: remain bytes from c.br
	remain int64
	c      *serverConn
	t      *serverTransport
	resp   *http.Response
	done   bool
}

// read reads the body readAnswer left: remain bytes, then io.EOF.
func (b *serverBody) read(p []byte) (int, error) {
	if b.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.c.br.Read(p)
	b.remain -= int64(n)
	switch {
	case err == io.EOF:
		err = io.ErrUnexpectedEOF
	case err == nil && b.remain == 0:
		err = io.EOF
	}
	return n, err
}

func (b *serverBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	// timeouts.server bounds each wait for the body, as it does for the
	// headers.
	if at, ok := b.c.rdl.arm(time.Now().Add(b.t.responseTimeout), slackOf(b.t.responseTimeout)); ok {
		_ = b.c.SetReadDeadline(at)
	}
	var n int
	var err error
	if b.body != nil {
		n, err = b.body.Read(p)
	} else {
		n, err = b.read(p)
	}
	if err == io.EOF {
		b.done = true
		b.t.release(b.c, b.resp)
	} else if err != nil {
		b.done = true
		b.c.Close()
	}
	return n, err
}

func (b *serverBody) Close() error {
	if !b.done {
		b.done = true
		b.c.Close()
	}
	return nil
}

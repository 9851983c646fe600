package httpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pgswitch/pgswitch/edge/accesslog"
	"github.com/pgswitch/pgswitch/edge/backend"
)

// The lean HTTP/1.1 loop serves the client connections of a listen itself
// instead of net/http's server: one goroutine per connection while a
// request is in flight, its buffers taken from a pool for that time only,
// the request head forwarded as it came (hop-by-hop fields dropped,
// X-Forwarded-* added) and the answer passed on as the server sent it.
// Between requests a connection holds no buffer; one idle for parkAfter
// gives its goroutine up too (park_linux.go).
//
// It serves the requests most traffic is made of: origin-form HTTP/1.1,
// without a body or with a Content-Length one (streamed to the server,
// each read bounded by the client timeout: a stalled body gets 408). A
// request head it does not take (a chunked body, Expect, Upgrade,
// HTTP/1.0, a malformed or oversized head) hands the connection,
// with the bytes read so far, to net/http's server for the rest of its
// life (handOff): WebSocket, chunked uploads, 100-continue and net/http's
// 400 and 431 answers keep working as they did. HTTP/2 stays net/http's.

// connState is where an h1Conn is; the transitions are CAS so that
// Shutdown and the parker never race the connection's goroutine.
const (
	connBusy   int32 = iota // reading a request or serving it
	connIdle                // waiting for a request's first byte, with a goroutine
	connParked              // waiting without a goroutine (park_linux.go)
	connClosed
)

// parkAfter is how long a connection waits for its next request with a
// goroutine before it parks.
const parkAfter = time.Second

// h1Conn is a client connection of the lean loop. Its fields are its
// goroutine's but state (atomic) and the parker's (guarded by the parker).
type h1Conn struct {
	l  *Listen
	c  net.Conn        // *net.TCPConn, or *tls.Conn
	rc syscall.RawConn // plain connections: waits without a buffer; nil under TLS
	// prc is the socket that parks: rc's, or the TCP connection's under
	// TLS (nil: the connection never parks).
	prc      syscall.RawConn
	isTLS    bool
	client   string // the client's IP address
	accepted time.Time
	rdl, wdl deadline
	state    atomic.Int32
	// idleEnd is when the keep-alive wait ends (http_keep_alive).
	idleEnd time.Time
	// waitFn is h.waitStep bound once; waitState is its state.
	waitFn    func(fd uintptr) bool
	waitState uint8
	pend      []byte    // what waitStep writes first: the end of pendX's answer
	pendX     *exchange // back to the pool once pend is written
	pendErr   error
	one       [1]byte // the first byte of a request, read while idle (TLS)
	// parker's: the connection's id and descriptor while parked.
	parkID uint64
	parkFD int
}

// exchange is the state of one request in flight, pooled.
type exchange struct {
	// in holds the client's bytes: the request head, then what followed
	// it (a pipelined request).
	in      [bufSize]byte
	n       int // bytes in in
	scanned int // of in, searched for the head's end without finding it
	head    reqHead
	// used is how much of in the request takes: its head, and the part of
	// its body read with it; streamed is the rest of the body, still to be
	// read from the client (split sets both).
	used     int
	streamed int64
	out      [bufSize]byte // the answer on its way to the client
	nout     int
	ans      ansHead
}

// bufSize is the size of the lean loop's buffers: the largest request
// head it serves itself (larger ones go to net/http, which applies
// max_header_bytes), and the largest answer head it passes on.
const bufSize = 16 << 10

var exchanges = sync.Pool{New: func() any { return new(exchange) }}

// split divides the request's body between what in holds and what is
// still to be read.
func (x *exchange) split() {
	inBuf := min(int64(x.n-x.head.end), x.head.length)
	x.used = x.head.end + int(inBuf)
	x.streamed = x.head.length - inBuf
}

func getExchange() *exchange {
	x := exchanges.Get().(*exchange)
	x.n, x.scanned, x.nout = 0, 0, 0
	return x
}

// serveH1 starts the lean loop on c.
func (l *Listen) serveH1(c net.Conn, isTLS bool, accepted time.Time) bool {
	h := &h1Conn{l: l, c: c, isTLS: isTLS, accepted: accepted, client: hostOf(c.RemoteAddr())}
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if sc, ok := raw.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			h.prc = rc
			if !isTLS {
				h.rc = rc
				h.waitFn = h.waitStep
			}
		}
	}
	// Idle until its first byte: Shutdown closes it then.
	h.state.Store(connIdle)
	if !l.trackH1(h, true) {
		return false
	}
	go h.serve(nil, accepted)
	return true
}

// serve is the connection's goroutine: x is the request being read (nil:
// none yet), started when its first byte arrived (or the connection was
// accepted).
func (h *h1Conn) serve(x *exchange, started time.Time) {
	for {
		if x == nil {
			x = getExchange()
		}
		switch h.readHead(x, started) {
		case readOK:
		case readHandOff:
			h.handOff(x, started)
			return
		default:
			exchanges.Put(x)
			h.close()
			return
		}
		keep := h.handle(x)
		if !keep || h.l.closing.Load() {
			_ = h.flush(x)
			exchanges.Put(x)
			h.close()
			return
		}
		if end := x.used; x.n > end || h.rc == nil {
			if h.flush(x) != nil {
				exchanges.Put(x)
				h.close()
				return
			}
			// What follows the head is the next request's.
			x.n = copy(x.in[:], x.in[end:x.n])
			x.scanned = 0
			started = time.Now()
			if x.n > 0 {
				continue
			}
			exchanges.Put(x)
			x = nil
			if !h.idle(nil) {
				return
			}
		} else {
			// The answer's last write and the wait for the next request
			// are one (plain connections, nothing pipelined).
			if !h.idle(x) {
				return
			}
			x = nil
		}
		started = time.Now()
		if h.rc == nil {
			x = getExchange()
			x.in[0], x.n = h.one[0], 1
		}
	}
}

type readResult uint8

const (
	readOK readResult = iota
	readHandOff
	readGone // closed, failed or timed out (answered then)
)

// readHead reads until x.in holds a whole request head. A head not
// complete within http_request of started gets 408 (none if no byte came).
func (h *h1Conn) readHead(x *exchange, started time.Time) readResult {
	l := h.l
	limit := min(l.cfg.Limits.MaxHeaderBytes, bufSize)
	for {
		if x.n > 0 {
			switch parseHead(&x.head, x.in[:x.n], x.scanned, l.cfg.Limits.MaxHeaders) {
			case headOK:
				return readOK
			case headHandOff:
				return readHandOff
			}
			x.scanned = x.n
			if x.n >= limit {
				return readHandOff // net/http answers 431
			}
		}
		to := l.cfg.Timeouts.HTTPRequest
		if at, ok := h.rdl.arm(started.Add(to), slackOf(to)); ok {
			if err := h.c.SetReadDeadline(at); err != nil {
				return readGone
			}
		}
		n, err := h.c.Read(x.in[x.n:])
		x.n += n
		if n > 0 {
			if h.state.Load() == connIdle && !h.state.CompareAndSwap(connIdle, connBusy) {
				return readGone // closed by Shutdown
			}
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && h.state.Load() != connClosed {
			l.requestTimeout(h.c, h.client, started, x.n > 0, x.in[:min(x.n, maxLogLine)])
		}
		return readGone
	}
}

// idle waits for the next request, up to http_keep_alive, after writing
// the answer x leaves unwritten (nil: none); x goes back to the pool. It
// reports false when the connection closed, or parked (its goroutine then
// ends).
func (h *h1Conn) idle(x *exchange) bool {
	l := h.l
	ka := l.cfg.Timeouts.HTTPKeepAlive
	h.idleEnd = time.Now().Add(ka)
	if x == nil && !h.state.CompareAndSwap(connBusy, connIdle) {
		h.close()
		return false
	}
	parkable := h.prc != nil && parkingOn()
	for {
		wait, slack := h.idleEnd, slackOf(ka)
		if parkable && parkAfter < ka {
			if p := time.Now().Add(parkAfter); p.Before(wait) {
				wait = p
			}
			slack = slackOf(parkAfter)
		}
		if at, ok := h.rdl.arm(wait, slack); ok {
			_ = h.c.SetReadDeadline(at)
		}
		var err error
		switch {
		case x != nil:
			h.pend, h.pendX, h.pendErr, h.waitState = x.out[:x.nout], x, nil, 2
			x = nil
			err = h.rc.Read(h.waitFn)
			if px := h.pendX; px != nil {
				// Not all written (a full socket buffer), or failed.
				h.pendX = nil
				if h.pendErr == nil && len(h.pend) > 0 {
					h.pendErr = h.write(h.pend)
				}
				h.pend = nil
				exchanges.Put(px)
				if h.pendErr != nil || !h.state.CompareAndSwap(connBusy, connIdle) {
					h.close()
					return false
				}
				continue
			}
		case h.rc != nil:
			h.waitState = 1
			err = h.rc.Read(h.waitFn)
		default:
			var n int
			n, err = h.c.Read(h.one[:])
			if n == 1 {
				err = nil
			}
		}
		if err == nil {
			// The client wrote (or closed: the read will tell).
			return h.state.CompareAndSwap(connIdle, connBusy)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(h.idleEnd) && h.state.Load() == connIdle {
			if parkable && park(h) {
				return false
			}
			continue
		}
		h.close()
		return false
	}
}

// resume carries a parked connection on in a new goroutine once its
// client wrote.
func (h *h1Conn) resume() {
	if !h.state.CompareAndSwap(connParked, connBusy) {
		return
	}
	go h.serve(nil, time.Now())
}

// waitStep is the callback of the raw connection's Read that idle uses:
// in state 2 it writes pend first, and the connection turns idle; in
// state 1 it peeks without blocking and reports whether there is
// something to read (or an end); after the poller's wait it reports true.
func (h *h1Conn) waitStep(fd uintptr) bool {
	switch h.waitState {
	case 2:
		for len(h.pend) > 0 {
			n, err := syscall.Write(int(fd), h.pend)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				if err != syscall.EAGAIN {
					h.pendErr = err
				}
				return true
			}
			h.pend = h.pend[n:]
		}
		h.waitState = 0
		exchanges.Put(h.pendX)
		h.pendX = nil
		if !h.state.CompareAndSwap(connBusy, connIdle) {
			return true // closed by Shutdown
		}
		// Written after the poller forgot the last readiness: the next
		// request cannot be missed, and no read need find nothing first.
		return false
	case 1:
		h.waitState = 0
		n, _, err := syscall.Recvfrom(int(fd), h.one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return n >= 0 || err != syscall.EAGAIN
	}
	return true
}

// handle answers the request in x: a server is chosen (waiting in the
// queue if need be), the request forwarded, the answer passed on, and a
// line logged. It reports whether the connection may serve another.
func (h *h1Conn) handle(x *exchange) bool {
	l := h.l
	start := time.Now()
	s, err := l.pool.TryAcquire()
	if s == nil && err == nil {
		s, err = h.queue(x)
	}
	var status int
	var bytes int64
	keep := !x.head.close
	codes := l.codesNoServer
	if err != nil {
		if !l.refused(err) {
			status, keep = 499, false
		}
		if x.split(); x.streamed > 0 {
			keep = false // the body is not read
		}
		if status == 0 {
			status, bytes, keep = h.answerError(x, http503, keep)
		}
	} else {
		t := l.targets[s.Index]
		status, bytes, keep = h.forward(x, t, keep)
		l.pool.Release(s)
		codes = t.codes
	}
	if status != 499 {
		codes.Inc(status)
	}
	l.m.Duration.Observe(time.Since(start).Seconds())
	if l.logger != nil {
		b := x.in[:]
		e := accesslog.Entry{Client: h.client, Time: start, Method: string(x.head.method.of(b)),
			Target: string(x.head.target.of(b)), Proto: "HTTP/1.1", Status: status, Bytes: bytes,
			Referer: string(x.head.referer.of(b)), UserAgent: string(x.head.ua.of(b))}
		l.logger.Log(&e)
	}
	return keep
}

// queue waits for a server below its maxconn. A client that closes its
// connection meanwhile abandons its request (its status is then 499): a
// read watches for that, and keeps what it reads (a pipelined request).
func (h *h1Conn) queue(x *exchange) (*backend.Server, error) {
	l := h.l
	if x.n == len(x.in) {
		return l.pool.Acquire(context.Background(), l.cfg.Timeouts.Queue)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = h.c.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	var n int
	var rerr error
	go func() {
		defer close(done)
		n, rerr = h.c.Read(x.in[x.n:])
		if n == 0 && rerr != nil {
			cancel()
		}
	}()
	s, err := l.pool.Acquire(ctx, l.cfg.Timeouts.Queue)
	_ = h.c.SetReadDeadline(aLongTimeAgo)
	<-done
	h.rdl.set(aLongTimeAgo)
	x.n += n
	if n == 0 && rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) {
		if s != nil {
			l.pool.Release(s)
		}
		return nil, context.Canceled
	}
	return s, err
}

// errorPage is an answer the proxy makes: its head without the empty
// line, and its page.
type errorPage struct {
	status int
	head   string
	body   string
}

func newErrorPage(code int, text, msg string) errorPage {
	body := "<html><body><h1>" + strconv.Itoa(code) + " " + text + "</h1>\n" + msg + "\n</body></html>\n"
	head := "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\nContent-Type: text/html\r\nCache-Control: no-cache\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n"
	return errorPage{status: code, head: head, body: body}
}

var (
	http502     = newErrorPage(502, "Bad Gateway", "The server returned an invalid or incomplete response.")
	http502Cert = newErrorPage(502, "Bad Gateway", "The server's certificate did not verify.")
	http503     = newErrorPage(503, "Service Unavailable", "No server is available to handle this request.")
	http504     = newErrorPage(504, "Gateway Timeout", "The server didn't respond in time.")
	http408     = newErrorPage(408, "Request Timeout", "Your browser didn't send a complete request in time.")
	http400     = newErrorPage(400, "Bad Request", "Your browser sent an invalid request.")
	http431     = newErrorPage(431, "Request Header Fields Too Large", "Your browser sent too many or too large header fields.")
	http501     = newErrorPage(501, "Not Implemented", "This method is not served here.")
)

// answerError puts an error page of the proxy's in x.out, to be written
// as the answer's last bytes are.
func (h *h1Conn) answerError(x *exchange, p errorPage, keep bool) (int, int64, bool) {
	out := append(x.out[:0], p.head...)
	if !keep || h.l.closing.Load() {
		keep = false
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, "\r\n"...)
	out = append(out, p.body...)
	x.nout = len(out)
	return p.status, int64(len(p.body)), keep
}

// flush writes x.out[:x.nout] to the client.
func (h *h1Conn) flush(x *exchange) error {
	if x.nout == 0 {
		return nil
	}
	err := h.write(x.out[:x.nout])
	x.nout = 0
	return err
}

// write writes p to the client, bounded by the client timeout.
func (h *h1Conn) write(p []byte) error {
	to := h.l.cfg.Timeouts.Client
	if at, ok := h.wdl.arm(time.Now().Add(to), slackOf(to)); ok {
		if err := h.c.SetWriteDeadline(at); err != nil {
			return err
		}
	}
	_, err := h.c.Write(p)
	return err
}

// emit adds p to the answer on its way to the client, writing what the
// buffer cannot hold.
func (h *h1Conn) emit(x *exchange, p []byte) error {
	for len(p) > 0 {
		n := copy(x.out[x.nout:], p)
		x.nout += n
		p = p[n:]
		if x.nout == len(x.out) {
			if err := h.flush(x); err != nil {
				return err
			}
		}
	}
	return nil
}

// close closes the connection once.
func (h *h1Conn) close() {
	for {
		s := h.state.Load()
		if s == connClosed {
			return
		}
		if h.state.CompareAndSwap(s, connClosed) {
			break
		}
	}
	if h.prc != nil {
		unpark(h)
	}
	h.c.Close()
	h.l.trackH1(h, false)
}

// closeIdle closes the connection if no request is in flight on it.
func (h *h1Conn) closeIdle() {
	if h.state.CompareAndSwap(connIdle, connClosed) || h.state.CompareAndSwap(connParked, connClosed) {
		if h.prc != nil {
			unpark(h)
		}
		h.c.Close()
		h.l.trackH1(h, false)
	}
}

// handOff gives the connection, with the bytes of x read so far, to
// net/http's server for the rest of its life.
func (h *h1Conn) handOff(x *exchange, started time.Time) {
	pending := append([]byte(nil), x.in[:x.n]...)
	exchanges.Put(x)
	l := h.l
	if !h.state.CompareAndSwap(connBusy, connClosed) {
		h.c.Close()
		l.trackH1(h, false)
		return
	}
	l.trackH1(h, false)
	_ = h.c.SetDeadline(time.Time{})
	cc := l.newClientConn(&prefixConn{Conn: h.c, pending: pending}, h.isTLS, h.accepted)
	cc.phaseStart = started
	if len(pending) > 0 {
		cc.sawBytes = true
		cc.line = append(cc.line, pending[:min(len(pending), maxLogLine)]...)
	}
	if !l.ln.push(cc) {
		cc.Close()
	}
}

// prefixConn reads the bytes the lean loop read before handing the
// connection over, then the connection.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

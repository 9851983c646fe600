package httpproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/pgswitch/pgswitch/edge/accesslog"
)

// phase is where an HTTP/1.x client connection is in its life; it decides
// which timeout bounds the next read.
type phase uint8

const (
	// phaseHeaders: a request is expected or arriving; it must be complete
	// within http_request of the connection (first request) or of its
	// first byte (later ones).
	phaseHeaders phase = iota
	// phaseIdle: between keep-alive requests, bounded by http_keep_alive.
	phaseIdle
	// phaseBusy: the request is being served; reads of its body and writes
	// of the response are bounded by client (inactivity).
	phaseBusy
	// phaseTunnel: upgraded (WebSocket): every read and write by client.
	phaseTunnel
)

// clientConn is an HTTP/1.x client connection. net/http reads and writes
// it, and sets deadlines on it; clientConn replaces those deadlines with the
// listen's own timeouts, phase by phase, because net/http closes a
// connection whose headers time out without an answer, and HAProxy users
// expect 408.
type clientConn struct {
	net.Conn
	l       *Listen
	isTLS   bool
	started time.Time // accepted
	// answer is the header map of the answer to the request being served;
	// only the handler's goroutine uses it (one request at a time).
	answer http.Header

	// mu guards the fields below; net/http's background read runs in
	// another goroutine than its request reads.
	mu         sync.Mutex
	phase      phase
	phaseStart time.Time
	sawBytes   bool   // bytes of the request being read have arrived
	line       []byte // the start of the request being read, for a 408's log line
	bodyDL     time.Time
	bodyGone   bool      // the client let its body time out: no more body reads wait
	bodyBad    error     // why the request's body could not be read as the client framed it
	abortDL    time.Time // a past deadline net/http set to stop its background read
	closed     bool
	// bgArmed: net/http cleared the read deadline of a request being
	// served, as it does just before it starts its background read; the
	// next 1-byte read is that read (see Read).
	bgArmed bool
	// early is a byte watchGone read, kept for net/http's next read.
	early   byte
	isEarly bool
	// rdl and wdl are the deadlines set on Conn.
	rdl, wdl deadline
}

func (l *Listen) newClientConn(c net.Conn, isTLS bool, accepted time.Time) *clientConn {
	cc := &clientConn{Conn: c, l: l, isTLS: isTLS, started: accepted, phase: phaseHeaders, phaseStart: accepted}
	l.track(cc, true)
	return cc
}

// readDeadlineLocked is the deadline of the next read, and how much later
// it may fire (see deadline).
func (c *clientConn) readDeadlineLocked() (time.Time, time.Duration) {
	if !c.abortDL.IsZero() {
		return c.abortDL, 0
	}
	t := &c.l.cfg.Timeouts
	switch c.phase {
	case phaseHeaders:
		return c.phaseStart.Add(t.HTTPRequest), slackOf(t.HTTPRequest)
	case phaseIdle:
		return c.phaseStart.Add(t.HTTPKeepAlive), slackOf(t.HTTPKeepAlive)
	case phaseBusy:
		// Only body reads are bounded.
		return c.bodyDL, slackOf(t.Client)
	default:
		return time.Now().Add(t.Client), slackOf(t.Client)
	}
}

// setReadDeadlineLocked arms the read deadline for the next read.
func (c *clientConn) setReadDeadlineLocked() error {
	if at, ok := c.rdl.arm(c.readDeadlineLocked()); ok {
		return c.Conn.SetReadDeadline(at)
	}
	return nil
}

// Read is every read net/http makes. One of them is answered at once: the
// 1-byte background read net/http starts while a handler runs, to notice a
// client that leaves (and a pipelined request). Left to block on the socket
// it costs each request a goroutine hand-off, a read that finds nothing, two
// deadline changes and a wake-up when net/http aborts it; answered (0, nil)
// it ends at once and net/http reads the next request as usual. A client
// that leaves is then noticed as HAProxy notices it without abortonclose:
// when the answer is written to it; while a request waits in the queue,
// watchGone does what the background read did.
func (c *clientConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	if c.bgArmed && len(b) == 1 && c.phase == phaseBusy {
		c.bgArmed = false
		c.mu.Unlock()
		return 0, nil
	}
	if c.isEarly && len(b) > 0 {
		b[0], c.isEarly = c.early, false
		c.mu.Unlock()
		c.afterRead(b[:1], nil)
		return 1, nil
	}
	err := c.setReadDeadlineLocked()
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(b)
	if n > 0 || err != nil {
		c.afterRead(b[:n], err)
	}
	return n, err
}

// maxLogLine is how much of a timed-out request's first line is logged.
const maxLogLine = 512

func (c *clientConn) afterRead(b []byte, err error) {
	c.mu.Lock()
	if len(b) > 0 {
		if c.phase == phaseIdle {
			c.phase, c.phaseStart = phaseHeaders, time.Now()
		}
		if c.phase == phaseHeaders {
			c.sawBytes = true
			if len(c.line) < maxLogLine {
				c.line = append(c.line, b[:min(len(b), maxLogLine-len(c.line))]...)
			}
		}
	}
	deadline := err != nil && c.abortDL.IsZero() && errors.Is(err, os.ErrDeadlineExceeded)
	if deadline && c.phase == phaseBusy && !c.bodyDL.IsZero() {
		// The client let its request body stall. Noted here, before
		// net/http cancels the request for the failed read, so that the
		// answer is 408; later reads of the body (net/http drains an
		// unread body before it answers) fail at once.
		c.bodyGone, c.bodyDL = true, aLongTimeAgo
	}
	timedOut := deadline && c.phase == phaseHeaders && !c.closed
	var saw bool
	var line []byte
	if timedOut {
		saw, line = c.sawBytes, c.line
		c.closed = true
	}
	c.mu.Unlock()
	if timedOut {
		c.l.requestTimeout(c.Conn, hostOf(c.RemoteAddr()), c.phaseStart, saw, line)
	}
}

// requestTimeout answers a client whose request headers did not arrive
// within http_request: 408 and close, as HAProxy does. A connection that
// sent nothing is closed without an answer (a browser's speculative
// connection would show the 408 as an error) and is logged only without
// dontlognull. The caller then closes the connection.
func (l *Listen) requestTimeout(c net.Conn, client string, started time.Time, sawBytes bool, line []byte) {
	l.refusedTimeout.Inc()
	if !sawBytes {
		if !l.dontLogNull {
			l.logger.Log(&accesslog.Entry{Client: client, Time: started, Status: 408})
		}
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	n, _ := c.Write(answer408)
	bytes := int64(0)
	if n == len(answer408) {
		bytes = int64(len(body408))
	}
	l.codesNoServer.Inc(408)
	l.logger.Log(&accesslog.Entry{Client: client, Time: started,
		RequestLine: firstLine(line), Status: 408, Bytes: bytes})
}

// firstLine returns the request line if it arrived whole, else "".
func firstLine(b []byte) string {
	for i, ch := range b {
		if ch == '\n' {
			if i > 0 && b[i-1] == '\r' {
				i--
			}
			return string(b[:i])
		}
	}
	return ""
}

var (
	body408    = "<html><body><h1>408 Request Time-out</h1>\nYour browser didn't send a complete request in time.\n</body></html>\n"
	answer408  = []byte("HTTP/1.1 408 Request Time-out\r\nContent-Length: " + strconv.Itoa(len(body408)) + "\r\nCache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/html\r\n\r\n" + body408)
	errClosing = errors.New("connection closed after a request timeout")
)

func (c *clientConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, errClosing
	}
	var dl time.Time
	if c.phase == phaseBusy || c.phase == phaseTunnel {
		dl = time.Now().Add(c.l.cfg.Timeouts.Client)
	}
	if at, ok := c.wdl.arm(dl, slackOf(c.l.cfg.Timeouts.Client)); ok {
		if err := c.Conn.SetWriteDeadline(at); err != nil {
			c.mu.Unlock()
			return 0, err
		}
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// SetReadDeadline records net/http's deadlines: only one in the past (the
// abort of its background read) is obeyed, and at once; the others are the
// server-wide timeouts that clientConn replaces.
func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.IsZero() && !t.After(time.Now()) {
		c.abortDL = t
		c.rdl.set(t)
		return c.Conn.SetReadDeadline(t)
	}
	c.abortDL = time.Time{}
	c.bgArmed = t.IsZero() && c.phase == phaseBusy
	return nil
}

// SetDeadline is net/http's too.
func (c *clientConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetWriteDeadline is ignored: clientConn bounds writes itself.
func (c *clientConn) SetWriteDeadline(time.Time) error { return nil }

// beginRequest is called when a request's headers have been read: by the
// StateActive hook, before net/http starts its background read, and again
// (doing nothing then) by the handler, for a pipelined request whose bytes
// were read with the previous one and that net/http serves without the hook.
func (c *clientConn) beginRequest() {
	c.mu.Lock()
	if c.phase != phaseBusy {
		c.phase, c.sawBytes, c.line, c.bgArmed = phaseBusy, false, c.line[:0], false
	}
	c.mu.Unlock()
}

// idle is called when the response is complete and net/http waits for the
// next request.
func (c *clientConn) idle() {
	c.mu.Lock()
	if c.phase == phaseBusy {
		c.phase, c.phaseStart, c.bodyDL, c.bodyGone, c.bodyBad = phaseIdle, time.Now(), time.Time{}, false, nil
	}
	c.bgArmed = false
	c.mu.Unlock()
}

// goneWatch is one watchGone read.
type goneWatch struct {
	done    chan struct{}
	stopped bool // guarded by clientConn.mu
}

// watchGone returns a context that ends when the client closes the
// connection (or the read fails) while a request without a body waits in
// the queue: it reads one byte as net/http's background read would, and a
// byte that arrives (a pipelined request) is kept for net/http's next read.
// stop ends the watch and waits for its read to end; the caller must call
// it before anything else reads the connection.
func (c *clientConn) watchGone(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	w := &goneWatch{done: make(chan struct{})}
	c.mu.Lock()
	c.rdl.set(time.Time{})
	_ = c.Conn.SetReadDeadline(time.Time{})
	c.mu.Unlock()
	go func() {
		defer close(w.done)
		var b [1]byte
		n, err := c.Conn.Read(b[:])
		c.mu.Lock()
		if n == 1 {
			c.early, c.isEarly = b[0], true
		}
		stopped := w.stopped
		c.mu.Unlock()
		if n == 0 && err != nil && !stopped {
			cancel()
		}
	}()
	return ctx, func() {
		c.mu.Lock()
		w.stopped = true
		c.rdl.set(aLongTimeAgo)
		_ = c.Conn.SetReadDeadline(aLongTimeAgo)
		c.mu.Unlock()
		<-w.done
		cancel()
	}
}

// tunnel is called when the connection is upgraded (WebSocket).
func (c *clientConn) tunnel() {
	c.mu.Lock()
	c.phase = phaseTunnel
	c.mu.Unlock()
}

// bodyRead bounds the next read of the request body by the client timeout.
func (c *clientConn) bodyRead() {
	c.mu.Lock()
	if !c.bodyGone {
		c.bodyDL = time.Now().Add(c.l.cfg.Timeouts.Client)
	}
	c.mu.Unlock()
}

// bodyDone ends the bound of one body read.
func (c *clientConn) bodyDone() {
	c.mu.Lock()
	if !c.bodyGone {
		c.bodyDL = time.Time{}
	}
	c.mu.Unlock()
}

// bodyFailed notes a read of the request body that failed: a body framed
// wrongly (malformed chunks) is the client's fault, answered 400.
func (c *clientConn) bodyFailed(err error) {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isTimeout(err) {
		return // the end, or the client left or stalled
	}
	c.mu.Lock()
	c.bodyBad = err
	c.mu.Unlock()
}

// malformedBody returns why the request's body was framed wrongly, if it was.
func (c *clientConn) malformedBody() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bodyBad
}

// bodyTimedOut reports whether the client let its request body stall.
func (c *clientConn) bodyTimedOut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bodyGone
}

func (c *clientConn) Close() error {
	c.l.track(c, false)
	return c.Conn.Close()
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

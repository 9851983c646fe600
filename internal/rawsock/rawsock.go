// Package rawsock reads and writes sockets with raw system calls, for the
// forwarding path's connections.
//
// Why: net.Conn's Read and Write enter the runtime's syscall state
// (entersyscall), and the first such call after every goroutine went idle
// wakes the runtime's monitor thread (sysmon) back into its 20 µs polling.
// A pooler's round trip leaves the process idle twice, so at one client
// sysmon woke about three times per transaction and took a third of
// pgswitch's CPU. A non-blocking socket's read or write never blocks, so it
// needs neither that state nor sysmon; waiting for readiness still goes
// through the runtime's netpoller (syscall.RawConn), with deadlines and
// Close working as before.
package rawsock

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Conn is a socket whose Read and Write use raw system calls. Each
// direction keeps its call's state (made on its first use, so that a call
// allocates nothing) under a lock of its own: concurrent Reads, or Writes,
// take turns, as net.Conn's do (a Write's bytes are never interleaved with
// another's). Idle gives the state back while the connection idles.
type Conn struct {
	net.Conn
	rmu sync.Mutex
	r   *call
	wmu sync.Mutex
	w   *call

	// Serve's state, its goroutine's alone.
	fd      uintptr
	drained bool // the last read inside Serve returned less than asked

	// A Close while Serve runs is a Shutdown, and the socket is closed as
	// Serve returns (see Close). serving is written by Serve's goroutine
	// under smu, so that it alone may read it without; closing is set
	// under smu too.
	serving bool
	closing atomic.Bool
	smu     sync.Mutex

	// Write's short way (see Write): the descriptor Serve holds, 0
	// outside Serve; the Writes using it now; whether a write deadline is
	// set (only the netpoller's way keeps one).
	wfd  atomic.Uintptr
	wref atomic.Int32
	wdl  atomic.Bool
}

// call is one direction's state: the socket's raw access, the callback
// given to it (made once), and the call in progress.
type call struct {
	rc    syscall.RawConn
	f     func(fd uintptr) bool
	buf   []byte
	n     int
	errno syscall.Errno
}

// Wrap returns nc reading and writing with raw system calls when it is a
// TCP or Unix socket, and nc itself otherwise (TLS, pipes).
func Wrap(nc net.Conn) net.Conn {
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
		return &Conn{Conn: nc}
	}
	return nc
}

// Unwrap returns the socket c reads and writes.
func (c *Conn) Unwrap() net.Conn { return c.Conn }

// Of returns the Conn under nc, following Unwrap, or nil if there is none
// (TLS: its reads may find bytes already decrypted, not the socket's).
func Of(nc net.Conn) *Conn {
	for {
		switch v := nc.(type) {
		case *Conn:
			return v
		case interface{ Unwrap() net.Conn }:
			nc = v.Unwrap()
		default:
			return nil
		}
	}
}

// Close closes the socket. While a goroutine runs Serve on it, Close shuts
// the socket down instead (Serve's reads then say net.ErrClosed) and Serve
// closes it as it returns: closing at once would wait for Serve's read to
// return, and the step inside it may be waiting for the very goroutine
// that closes (a session waiting for the pump that disconnects its
// client).
func (c *Conn) Close() error {
	c.smu.Lock()
	if c.serving {
		c.closing.Store(true)
		c.smu.Unlock()
		c.Shutdown()
		return nil
	}
	c.smu.Unlock()
	return c.Conn.Close()
}

// Idle lets go of the state of both directions: an idle client (10,000
// of them, say) holds only the Conn. The next Read or Write makes its
// direction's anew.
func (c *Conn) Idle() {
	c.rmu.Lock()
	c.r = nil
	c.rmu.Unlock()
	c.wmu.Lock()
	c.w = nil
	c.wmu.Unlock()
}

// run runs one Read or Write: its direction's state (*kp, guarded by its
// lock, which the caller holds) is made on first use with do as its
// callback, then do runs on p until it completes (in the netpoller between
// tries).
func (c *Conn) run(kp **call, do func(*call, uintptr) bool, write bool, p []byte) (int, syscall.Errno, error) {
	k := *kp
	if k == nil {
		rc, err := c.Conn.(syscall.Conn).SyscallConn()
		if err != nil {
			return 0, 0, err
		}
		k = &call{rc: rc}
		k.f = func(fd uintptr) bool { return do(k, fd) }
		*kp = k
	}
	k.buf, k.n, k.errno = p, 0, 0
	var err error
	if write {
		err = k.rc.Write(k.f)
	} else {
		err = k.rc.Read(k.f)
	}
	n, errno := k.n, k.errno
	k.buf = nil
	return n, errno, err
}

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.serving {
		return c.serveRead(p)
	}
	c.rmu.Lock()
	n, errno, err := c.run(&c.r, readFD, false, p)
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, err // closed, or a deadline passed (a *net.OpError)
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func readFD(k *call, fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&k.buf[0])), uintptr(len(k.buf)))
		switch e {
		case 0:
			k.n = int(r)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait in the netpoller
		}
		k.errno = e
		return true
	}
}

// Write writes p whole. While a goroutine serves the socket (Serve), and
// no write deadline is set, it writes with the descriptor Serve holds
// open, straight away: the netpoller's way (syscall.RawConn.Write) takes
// the descriptor's lock and readiness state on every call, which cost a
// round trip more than the system call's own user-side time. Only when the
// socket cannot take all of p at once does it wait, the netpoller's way.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 0
	if fd := c.wfd.Load(); fd != 0 && !c.wdl.Load() {
		c.wref.Add(1)
		var errno syscall.Errno
		if c.wfd.Load() == fd { // Serve still holds it (see endServe)
			n, errno = writeNow(fd, p)
		}
		c.wref.Add(-1)
		switch {
		case errno != 0 && errno != syscall.EAGAIN:
			return n, c.opError("write", errno)
		case n == len(p):
			return n, nil
		}
	}
	m, errno, err := c.run(&c.w, writeFD, true, p[n:])
	n += m
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, c.opError("write", errno)
	}
	return n, nil
}

// writeNow writes as much of p to fd as it takes without waiting.
func writeNow(fd uintptr, p []byte) (int, syscall.Errno) {
	n := 0
	for n < len(p) {
		b := p[n:]
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			n += int(r)
		case syscall.EINTR:
		default:
			return n, e
		}
	}
	return n, 0
}

// SetDeadline sets both deadlines (net.Conn's).
func (c *Conn) SetDeadline(t time.Time) error {
	c.wdl.Store(!t.IsZero())
	return c.Conn.SetDeadline(t)
}

// SetWriteDeadline sets the write deadline (net.Conn's); while one is set,
// Write always takes the netpoller's way, which keeps it.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wdl.Store(!t.IsZero())
	return c.Conn.SetWriteDeadline(t)
}

func writeFD(k *call, fd uintptr) bool {
	n, e := writeNow(fd, k.buf[k.n:])
	k.n += n
	if e == syscall.EAGAIN {
		return false // wait in the netpoller
	}
	k.errno = e
	return true
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Shutdown ends both directions of the socket (shutdown(2)) without
// closing it: reads, Serve's included, find the end of the stream and
// writes fail, at once, while Close would wait for a Read or Serve in
// progress to return. The socket still needs its Close.
func (c *Conn) Shutdown() {
	if s, ok := c.Conn.(interface {
		CloseRead() error
		CloseWrite() error
	}); ok {
		s.CloseWrite()
		s.CloseRead()
	}
}

// ErrWouldWait is what Read returns inside Serve when the socket has
// nothing to read without waiting.
var ErrWouldWait = errors.New("rawsock: nothing to read without waiting")

// Serve calls step, again and again, inside one wait-and-read of the
// socket (syscall.RawConn.Read), until step returns an error other than
// ErrWouldWait, which Serve returns; or until a read deadline passes
// (that error). A Close meanwhile shuts the socket down, Serve's reads
// then fail with net.ErrClosed, and Serve closes the socket as it returns.
// Within step, Read does not wait: it
// returns ErrWouldWait when the socket has nothing to read. When step
// returns ErrWouldWait, Serve waits for readiness and calls step again.
//
// Why: a Read outside Serve must try the system call before it waits,
// because the runtime forgets readiness when a Read starts; for a
// request-and-answer protocol that try fails (EAGAIN) once per answer.
// Within one Serve, readiness that arrives while step runs is kept. So
// step may return ErrWouldWait without that try when Drained says the
// last read emptied the socket and step knows that nothing can be
// pending behind it: a short read does not report an end of stream that
// arrived with its data, which only the next read would (so a peer that
// may close right after its last message must be read once more). Only
// the goroutine in Serve may Read meanwhile; step may block on other
// things (another socket's writes, locks).
func (c *Conn) Serve(step func() error) error {
	rc, err := c.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	var stepErr error
	c.smu.Lock()
	if c.closing.Load() {
		c.smu.Unlock()
		return net.ErrClosed
	}
	c.serving = true
	c.smu.Unlock()
	defer func() {
		c.endServe()
		c.smu.Lock()
		c.serving = false
		later := c.closing.Load()
		c.smu.Unlock()
		if later {
			c.Conn.Close()
		}
	}()
	err = rc.Read(func(fd uintptr) bool {
		c.fd, c.drained = fd, false // ready (or Serve's start): not known drained
		if c.wfd.Load() != fd {
			c.wfd.Store(fd)
		}
		for {
			switch err := step(); err {
			case nil:
			case ErrWouldWait:
				return false
			default:
				stepErr = err
				return true
			}
		}
	})
	if stepErr != nil {
		return stepErr
	}
	return err
}

// endServe ends Write's short way as Serve returns, before anything may
// close the socket: no Write uses the descriptor once it returns. The
// socket is closed only by Close, which shuts it down instead while Serve
// runs, so the descriptor stays the socket's until then.
func (c *Conn) endServe() {
	c.wfd.Store(0)
	for c.wref.Load() != 0 {
		runtime.Gosched() // a Write's non-blocking system call
	}
}

// Serving reports whether the caller runs inside Serve (step); only
// Serve's goroutine may ask.
func (c *Conn) Serving() bool { return c.serving }

// Drained reports, inside Serve, whether the last read returned less than
// it asked for: the socket had no more data then (see Serve).
func (c *Conn) Drained() bool { return c.drained }

// serveRead is Read inside Serve.
func (c *Conn) serveRead(p []byte) (int, error) {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, c.fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			if r == 0 {
				if c.closing.Load() {
					return 0, c.opError("read", net.ErrClosed)
				}
				return 0, io.EOF
			}
			c.drained = int(r) < len(p)
			return int(r), nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			c.drained = true
			return 0, ErrWouldWait
		}
		if c.closing.Load() {
			return 0, c.opError("read", net.ErrClosed)
		}
		return 0, c.opError("read", e)
	}
}

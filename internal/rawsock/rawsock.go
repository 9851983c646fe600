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
	"io"
	"net"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a socket whose Read and Write use raw system calls. Each
// direction keeps its call's state in the Conn, so that a call allocates
// nothing, under a lock of its own: concurrent Reads, or Writes, take
// turns, as net.Conn's do (a Write's bytes are never interleaved with
// another's).
type Conn struct {
	net.Conn
	rc syscall.RawConn

	rmu    sync.Mutex
	rf     func(fd uintptr) bool
	rbuf   []byte
	rn     int
	rerrno syscall.Errno

	wmu    sync.Mutex
	wf     func(fd uintptr) bool
	wbuf   []byte
	wn     int
	werrno syscall.Errno
}

// Wrap returns nc reading and writing with raw system calls when it is a
// TCP or Unix socket, and nc itself otherwise (TLS, pipes).
func Wrap(nc net.Conn) net.Conn {
	var sc syscall.Conn
	switch v := nc.(type) {
	case *net.TCPConn:
		sc = v
	case *net.UnixConn:
		sc = v
	default:
		return nc
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nc
	}
	c := &Conn{Conn: nc, rc: rc}
	c.rf = c.readFD
	c.wf = c.writeFD
	return c
}

// Unwrap returns the socket c reads and writes.
func (c *Conn) Unwrap() net.Conn { return c.Conn }

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.rf)
	n, errno := c.rn, c.rerrno
	c.rbuf = nil
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

func (c *Conn) readFD(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case 0:
			c.rn = int(r)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait in the netpoller
		}
		c.rerrno = e
		return true
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.wf)
	n, errno := c.wn, c.werrno
	c.wbuf = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, c.opError("write", errno)
	}
	return n, nil
}

func (c *Conn) writeFD(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		b := c.wbuf[c.wn:]
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

func (c *Conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errno}
}

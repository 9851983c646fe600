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

// run runs one Read or Write: its direction's state (*kp, guarded by mu)
// is made on first use with do as its callback, then do runs on p until
// it completes (in the netpoller between tries).
func (c *Conn) run(mu *sync.Mutex, kp **call, do func(*call, uintptr) bool, write bool, p []byte) (int, syscall.Errno, error) {
	mu.Lock()
	defer mu.Unlock()
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
	n, errno, err := c.run(&c.rmu, &c.r, readFD, false, p)
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

func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, errno, err := c.run(&c.wmu, &c.w, writeFD, true, p)
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, c.opError("write", errno)
	}
	return n, nil
}

func writeFD(k *call, fd uintptr) bool {
	for k.n < len(k.buf) {
		b := k.buf[k.n:]
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			k.n += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			k.errno = e
			return true
		}
	}
	return true
}

func (c *Conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errno}
}

package main

import (
	"encoding/binary"
	"flag"
	"sync"
	"syscall"
	"unsafe"

	"github.com/pgswitch/pgswitch/bench/internal/pgmini"
)

var (
	rawIO  = flag.Bool("raw", false, "reads and writes without the runtime's system-call bookkeeping (epoll: and a first epoll_wait; pump, sync: internal/rawsock; persist: its reads and writes)")
	loopsN = flag.Int("loops", 0, "epoll: event loops (0: one per CPU)")
)

// loop is one event loop: level-triggered epoll over its clients and its
// server connections, all handled on one goroutine.
type loop struct {
	ep   int
	wake int // eventfd: new clients are pending

	mu      sync.Mutex
	pending []int

	clients map[int]*eclient
	servers map[int]*eserver
	idle    []*eserver
	waiting []*eclient // clients with a query and no server yet
	rbuf    []byte
}

type eclient struct {
	fd  int
	in  []byte   // bytes read, not yet a whole message
	out [][]byte // whole queries waiting for a server
	srv *eserver
}

type eserver struct {
	fd int
	cl *eclient
	sc pgmini.Scanner
}

func newLoop() (*loop, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r1, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		return nil, e
	}
	l := &loop{ep: ep, wake: int(r1), clients: map[int]*eclient{}, servers: map[int]*eserver{}, rbuf: make([]byte, 64<<10)}
	l.watch(l.wake)
	return l, nil
}

func (l *loop) watch(fd int) {
	syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
}

func (l *loop) addServer(fd int) {
	s := &eserver{fd: fd}
	l.servers[fd] = s
	l.idle = append(l.idle, s)
	l.watch(fd)
}

// addClient hands a logged-in client to the loop; any goroutine may call it.
func (l *loop) addClient(fd int) {
	l.mu.Lock()
	l.pending = append(l.pending, fd)
	l.mu.Unlock()
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	syscall.Write(l.wake, one[:])
}

func (l *loop) run() {
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := l.wait(events)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			switch {
			case fd == l.wake:
				var b [8]byte
				syscall.Read(l.wake, b[:])
				l.mu.Lock()
				fds := l.pending
				l.pending = nil
				l.mu.Unlock()
				for _, cfd := range fds {
					l.clients[cfd] = &eclient{fd: cfd}
					l.watch(cfd)
				}
			case l.servers[fd] != nil:
				l.serverReadable(l.servers[fd])
			case l.clients[fd] != nil:
				l.clientReadable(l.clients[fd])
			}
		}
	}
}

// wait returns the ready events: first without blocking and without the
// runtime's system-call bookkeeping, then (with -wait block) blocking in
// epoll_wait, or (-wait poll) parked on Go's own netpoller until the epoll
// descriptor is readable.
func (l *loop) wait(events []syscall.EpollEvent) (int, error) {
	if *rawIO {
		r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if e != 0 {
			return 0, e
		}
		if r > 0 {
			return int(r), nil
		}
	}
	return syscall.EpollWait(l.ep, events, -1)
}

func sysRead(fd int, p []byte) (int, error) {
	if !*rawIO {
		return syscall.Read(fd, p)
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func sysWrite(fd int, p []byte) (int, error) {
	if !*rawIO {
		return syscall.Write(fd, p)
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func writeAll(fd int, p []byte) {
	for len(p) > 0 {
		n, err := sysWrite(fd, p)
		if err == syscall.EAGAIN {
			continue // a prototype: loopback buffers rarely fill
		}
		if err != nil {
			return
		}
		p = p[n:]
	}
}

func (l *loop) clientReadable(c *eclient) {
	n, err := sysRead(c.fd, l.rbuf)
	if n <= 0 || err != nil {
		if err == syscall.EAGAIN {
			return
		}
		l.closeClient(c)
		return
	}
	c.in = append(c.in, l.rbuf[:n]...)
	for len(c.in) >= 5 {
		size := 1 + int(binary.BigEndian.Uint32(c.in[1:5]))
		if len(c.in) < size {
			break
		}
		msg := c.in[:size]
		if msg[0] == 'X' {
			l.closeClient(c)
			return
		}
		if c.srv != nil {
			writeAll(c.srv.fd, msg)
		} else if len(l.idle) > 0 {
			s := l.idle[len(l.idle)-1]
			l.idle = l.idle[:len(l.idle)-1]
			s.cl, c.srv = c, s
			writeAll(s.fd, msg)
		} else {
			c.out = append(c.out, append([]byte(nil), msg...))
			if len(c.out) == 1 {
				l.waiting = append(l.waiting, c)
			}
		}
		c.in = c.in[size:]
	}
	if len(c.in) == 0 {
		c.in = c.in[:0:0]
	}
}

func (l *loop) serverReadable(s *eserver) {
	n, err := sysRead(s.fd, l.rbuf)
	if n <= 0 || err != nil {
		return
	}
	done := s.sc.Feed(l.rbuf[:n])
	if s.cl != nil {
		writeAll(s.cl.fd, l.rbuf[:n])
	}
	if !done {
		return
	}
	if s.cl != nil {
		s.cl.srv = nil
		s.cl = nil
	}
	for len(l.waiting) > 0 {
		c := l.waiting[0]
		l.waiting = l.waiting[1:]
		if l.clients[c.fd] != c || len(c.out) == 0 {
			continue
		}
		s.cl, c.srv = c, s
		for _, m := range c.out {
			writeAll(s.fd, m)
		}
		c.out = nil
		return
	}
	l.idle = append(l.idle, s)
}

func (l *loop) closeClient(c *eclient) {
	syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_DEL, c.fd, nil)
	syscall.Close(c.fd)
	delete(l.clients, c.fd)
	if s := c.srv; s != nil {
		s.cl = nil // its answer still comes; the server goes back when it ends
	}
}

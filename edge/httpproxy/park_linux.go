//go:build linux

package httpproxy

import (
	"sync"
	"syscall"
	"time"
)

// Parking: a lean connection idle for parkAfter gives its goroutine up.
// Its socket waits in an epoll set of the process's; the first byte its
// client sends starts a goroutine that serves the request. An idle
// keep-alive connection then costs its h1Conn and the runtime's socket
// (and a tls.Conn's state), not a goroutine's stack, as in HAProxy.
//
// A TLS connection parks only after its one-byte read timed out: a
// tls.Conn returns a whole record it holds without waiting, so what it
// may still hold then is a record's beginning, whose rest must come from
// the socket, which wakes the parked connection. (A read that times out
// leaves a tls.Conn usable; a write would not.)
//
// A scan every parkScan closes the parked connections whose
// http_keep_alive has passed.

const parkScan = time.Second

type parker struct {
	ep int

	mu   sync.Mutex
	byID map[uint64]*h1Conn
	next uint64
}

var parking struct {
	once sync.Once
	p    *parker // nil: parking is off
}

// parkingOn reports whether connections can park, starting the parker the
// first time.
func parkingOn() bool {
	parking.once.Do(func() {
		ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		p := &parker{ep: ep, byID: map[uint64]*h1Conn{}}
		parking.p = p
		go p.watch()
		go p.expire()
	})
	return parking.p != nil
}

// park puts h, idle, in the epoll set; false if it cannot be.
func park(h *h1Conn) bool {
	p := parking.p
	if p == nil || !h.state.CompareAndSwap(connIdle, connParked) {
		return false
	}
	p.mu.Lock()
	p.next++
	id := p.next
	var err error
	ctlErr := h.prc.Control(func(fd uintptr) {
		h.parkFD = int(fd)
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
			Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
		err = syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if ctlErr != nil || err != nil {
		p.mu.Unlock()
		h.state.CompareAndSwap(connParked, connIdle)
		return false
	}
	h.parkID = id
	p.byID[id] = h
	p.mu.Unlock()
	return true
}

// forget takes h out of the epoll set; false if it was not there.
// Caller holds p.mu.
func (p *parker) forgetLocked(h *h1Conn) bool {
	if h.parkID == 0 || p.byID[h.parkID] != h {
		return false
	}
	delete(p.byID, h.parkID)
	h.parkID = 0
	_ = syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_DEL, h.parkFD, nil)
	return true
}

// unpark takes h out of the epoll set if it is there (before it closes).
func unpark(h *h1Conn) {
	p := parking.p
	if p == nil {
		return
	}
	p.mu.Lock()
	p.forgetLocked(h)
	p.mu.Unlock()
}

// watch resumes each parked connection whose client wrote (or closed).
func (p *parker) watch() {
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(p.ep, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			p.mu.Lock()
			h := p.byID[id]
			ok := h != nil && p.forgetLocked(h)
			p.mu.Unlock()
			if ok {
				h.resume()
			}
		}
	}
}

// expire closes the parked connections past their http_keep_alive.
func (p *parker) expire() {
	t := time.NewTicker(parkScan)
	defer t.Stop()
	var old []*h1Conn
	for now := range t.C {
		old = old[:0]
		p.mu.Lock()
		for _, h := range p.byID {
			if !now.Before(h.idleEnd) {
				old = append(old, h)
			}
		}
		p.mu.Unlock()
		for _, h := range old {
			h.closeIdle()
		}
	}
}

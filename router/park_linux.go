//go:build linux

package router

import (
	"crypto/tls"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Parking: a client idle for a while (transaction mode, no server
// connection, nothing owed or buffered) gives its goroutine up. Its
// connection waits in an epoll set of the router's; the first byte the
// client sends starts a goroutine that carries the session on. An idle
// client then costs its session's state, not a goroutine's stack and read
// buffer: 10,000 idle clients fit in a few tens of MiB, as with PgBouncer.
//
// A session stamps the parker's generation whenever it handles a batch; a
// scan every parkScan asks the sessions waiting in a read that have not
// stamped the last generation to park, by waking their read with a
// deadline in the past.

// parkScan is how often idle sessions are looked for: a client idle
// between one and two of these parks. A variable for tests, which set it
// before starting a router.
var parkScan = time.Second

// Session park states, guarded by Session.parkMu.
const (
	parkBusy      = iota // handling a batch, or not parkable
	parkWaiting          // waiting for the client's next message
	parkRequested        // the scan woke the read to park
	parkParked           // in the epoll set, without a goroutine
	parkLingering        // the client ended its stream; its answers are still coming (linger)
)

type parker struct {
	r    *Router
	ep   int // the epoll set of parked clients; -1: parking is off
	stop int // an eventfd in the set, written to end watch
	gen  atomic.Uint64

	mu     sync.Mutex
	byID   map[uint64]*Session
	nextID uint64

	sinceTrim atomic.Int64 // sessions parked since the last trim
	lastTrim  time.Time    // run's own
	scanning  bool         // parking is on: the scan runs every parkScan (set once)
}

// Trimming: the goroutine stacks and read buffers that parked sessions
// gave up are free heap, which the Go runtime keeps for reuse up to its GC
// goal, twice the live heap: 10,000 idle clients would leave the process
// holding about as much free memory as their state takes. Once many
// sessions parked and at most every trimEvery, run hands that memory back
// to the operating system (debug.FreeOSMemory: a collection and a
// scavenge, a few milliseconds for tens of MiB of live heap), so that an
// idle crowd costs what its sessions hold.
const (
	trimAfter = 1000 // parked sessions since the last trim
	trimEvery = 30 * time.Second
)

func newParker(r *Router) *parker {
	p := &parker{r: r, ep: -1, byID: map[uint64]*Session{}}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err == nil {
		stop, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if errno == 0 {
			// id 0 is the stop signal; sessions' ids start at 1
			err = syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, int(stop), &syscall.EpollEvent{Events: syscall.EPOLLIN})
			p.ep, p.stop = ep, int(stop)
		} else {
			err = errno
			syscall.Close(ep)
		}
	}
	if err != nil {
		p.ep = -1
		r.log.Warn("idle clients cannot park: every client keeps a goroutine", "err", err)
	}
	p.scanning = p.ep >= 0
	return p
}

// run scans for idle sessions and starts the parked ones clients write to,
// until the router closes.
func (p *parker) run() {
	if p.ep < 0 {
		return
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		p.watch()
	}()
	t := time.NewTicker(parkScan)
	defer t.Stop()
	for {
		select {
		case <-p.r.ctx.Done():
			// Close kicks every session, which resumes the parked ones.
			var one [8]byte
			one[0] = 1
			syscall.Write(p.stop, one[:])
			<-watched
			p.mu.Lock()
			syscall.Close(p.ep)
			syscall.Close(p.stop)
			p.ep = -1
			p.mu.Unlock()
			return
		case <-t.C:
			p.scan()
			p.trim()
		}
	}
}

// trim returns free heap to the operating system once many sessions
// parked (a scan after they did, so that their goroutines have ended).
func (p *parker) trim() {
	if p.sinceTrim.Load() < trimAfter || time.Since(p.lastTrim) < trimEvery {
		return
	}
	p.sinceTrim.Store(0)
	p.lastTrim = time.Now()
	go trimMemory()
}

// trimMemory is debug.FreeOSMemory; tests count its calls.
var trimMemory = debug.FreeOSMemory

// scan asks the sessions idle since the last scan to park.
func (p *parker) scan() {
	g := p.gen.Add(1)
	r := p.r
	r.mu.Lock()
	sessions := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		if s.seen.Load() < g-1 {
			sessions = append(sessions, s)
		}
	}
	r.mu.Unlock()
	for _, s := range sessions {
		s.wakeWait()
	}
}

// watch starts a goroutine for each parked session whose client wrote.
func (p *parker) watch() {
	events := make([]syscall.EpollEvent, 64)
	for {
		n, err := syscall.EpollWait(p.ep, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return // closed
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				return // stop
			}
			p.mu.Lock()
			s := p.byID[id]
			p.mu.Unlock()
			if s != nil {
				p.unpark(s)
			}
		}
	}
}

// park puts s's connection in the epoll set; false if it cannot be.
func (p *parker) park(s *Session) bool {
	rc, ok := rawConnOf(s.client.Conn())
	if !ok {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ep < 0 || p.r.ctx.Err() != nil {
		return false
	}
	p.nextID++
	id := p.nextID
	var err error
	ctlErr := rc.Control(func(fd uintptr) {
		s.parkFD = int32(fd)
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
		err = syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if ctlErr != nil || err != nil {
		return false
	}
	s.parkID = id
	p.byID[id] = s
	p.sinceTrim.Add(1)
	return true
}

// unpark takes s out of the epoll set and carries its session on in a new
// goroutine, once; false if s was not parked.
func (p *parker) unpark(s *Session) bool {
	p.mu.Lock()
	if s.parkID == 0 || p.byID[s.parkID] != s {
		p.mu.Unlock()
		return false
	}
	delete(p.byID, s.parkID)
	s.parkID = 0
	if p.ep >= 0 {
		syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_DEL, int(s.parkFD), nil)
	}
	p.mu.Unlock()
	s.parkMu.Lock()
	s.parkState = parkBusy
	s.parkMu.Unlock()
	go s.resume()
	return true
}

// scans reports whether the scan looks at waiting sessions every
// parkScan: parking is on.
func (p *parker) scans() bool { return p.scanning }

// generation is the scan count sessions stamp.
func (p *parker) generation() uint64 { return p.gen.Load() }

// rawConnOf returns the socket under a client connection that may park: a
// plain TCP one. A TLS connection may hold decrypted bytes the socket no
// longer shows, so it never parks.
func rawConnOf(c net.Conn) (syscall.RawConn, bool) {
	for {
		switch v := c.(type) {
		case *tls.Conn:
			return nil, false
		case interface{ Unwrap() net.Conn }:
			c = v.Unwrap()
		case syscall.Conn:
			rc, err := v.SyscallConn()
			return rc, err == nil
		default:
			return nil, false
		}
	}
}

// parked is how many sessions are parked now.
func (p *parker) parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byID)
}

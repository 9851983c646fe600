package main

// The gnet design. gnet's event loops own every connection they poll: a
// connection's callbacks (OnOpen, OnTraffic, OnClose) run on its loop's
// goroutine, and only there may Write, Peek or Discard be called. A write
// to a connection of another loop has to go through AsyncWrite, which
// copies nothing but queues a task on that loop and writes its eventfd to
// wake it: a system call, a wake-up of the other loop's thread, and the
// bytes must outlive the OnTraffic that read them (a copy, as gnet's read
// buffer is the loop's). A pool shared by the loops would pay that twice
// per transaction whenever the client and its server sit on different
// loops.
//
// So each loop has its own share of the pool (gloop), as PgBouncer's
// processes under so_reuseport do and iomodel's epoll mode does: the
// server connections are enrolled in the engine's loops (Engine.Register,
// which gnet offers for outbound connections in the same loops, with an
// established net.Conn: pgconn logs them in first), dealt evenly like the
// clients, and a client's query goes to an idle server of its own loop, or
// waits in that loop's FIFO queue. A transaction is then two OnTraffic
// calls on one goroutine and no hand-off: the client's query is read and
// written to the server in the client's OnTraffic, the answer read and
// written to the client in the server's. (gnet's poller adds a system call
// per wake-up: once it has handled its events it polls again without
// waiting, then yields with runtime.Gosched before it blocks in
// epoll_wait.) The cost of the choice: a client
// waits for a server of its loop while another loop may have one idle,
// and a loop gets no server when -pool is below the number of loops
// (refused at start).
//
// gnet's rules shaped the rest. It has no callback for "the loops are
// running" but OnTick's first call, so the pool is enrolled from there.
// Register deals connections with the engine's balancer, and gnet's
// round-robin one is not safe against its acceptor dealing a client at the
// same time (the race detector sees it), so the engine balances by least
// connections: the servers are enrolled one at a time, each counted before
// the next is dealt, and clients that connect one after the other (as
// pgbench's do) are dealt evenly too. Default reactor mode: one goroutine
// accepts and deals, the loops serve.

import (
	"context"
	"encoding/binary"
	"fmt"
	"log"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/pgswitch/pgswitch/bench/internal/pgmini"
)

// gnetProxy is the engine's event handler.
type gnetProxy struct {
	gnet.BuiltinEventEngine

	eng   gnet.Engine
	conns []net.Conn // logged in, enrolled by OnTick's first call
	once  sync.Once

	loops sync.Map // gnet.EventLoop → *gloop, looked up when a connection opens
}

// gloop is one event loop's share of the pool; only that loop's callbacks
// touch it.
type gloop struct {
	idle    []*gserver
	waiting []*gclient // clients with queries and no server, first come first served
}

// gclient is a client's state; its loop owns it.
type gclient struct {
	c       gnet.Conn
	loop    *gloop
	greeted bool
	srv     *gserver // the server answering it, until ReadyForQuery
	out     []byte   // whole messages waiting for a server
	waiting bool     // in loop.waiting
	closed  bool
}

// gserver is a server connection's state; its loop owns it.
type gserver struct {
	c       gnet.Conn
	loop    *gloop
	cl      *gclient // the client it answers; nil when idle
	sc      pgmini.Scanner
	dropped bool // its client left mid-answer: close it on its next event
	closed  bool
}

func serveGnet(conns []net.Conn) error {
	loops := *loopsN
	if loops == 0 {
		loops = runtime.NumCPU()
	}
	if len(conns) < loops {
		return fmt.Errorf("gnet: a pool of %d for %d loops leaves a loop without servers", len(conns), loops)
	}
	h := &gnetProxy{conns: conns}
	return gnet.Run(h, "tcp://"+*listen,
		gnet.WithNumEventLoop(loops),
		gnet.WithLoadBalancing(gnet.LeastConnections),
		gnet.WithReuseAddr(true), // as net.Listen: or the port is refused for a minute after a run (TIME_WAIT)
		gnet.WithTicker(true))
}

func (h *gnetProxy) OnBoot(eng gnet.Engine) gnet.Action {
	h.eng = eng
	return gnet.None
}

// OnTick runs once the loops run: it enrolls the pool, then sleeps.
func (h *gnetProxy) OnTick() (time.Duration, gnet.Action) {
	h.once.Do(func() { go h.enroll() })
	return time.Hour, gnet.None
}

func (h *gnetProxy) enroll() {
	for _, c := range h.conns {
		ctx := gnet.NewNetConnContext(gnet.NewContext(context.Background(), &gserver{}), c)
		ch, err := h.eng.Register(ctx)
		if err != nil {
			log.Fatalf("gnet: enroll a server connection: %v", err)
		}
		if r := <-ch; r.Err != nil {
			log.Fatalf("gnet: enroll a server connection: %v", r.Err)
		}
	}
	h.conns = nil
	log.Printf("gnet: pool ready, %d server connections", h.eng.CountConnections())
}

func (h *gnetProxy) loopOf(c gnet.Conn) *gloop {
	el := c.EventLoop()
	if l, ok := h.loops.Load(el); ok {
		return l.(*gloop)
	}
	l, _ := h.loops.LoadOrStore(el, &gloop{})
	return l.(*gloop)
}

func (h *gnetProxy) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	l := h.loopOf(c)
	if s, ok := c.Context().(*gserver); ok {
		s.c, s.loop = c, l
		l.release(s)
		return nil, gnet.None
	}
	c.SetContext(&gclient{c: c, loop: l})
	return nil, gnet.None
}

func (h *gnetProxy) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *gclient:
		return x.traffic()
	case *gserver:
		return x.traffic()
	}
	return gnet.Close
}

func (h *gnetProxy) OnClose(c gnet.Conn, err error) gnet.Action {
	switch x := c.Context().(type) {
	case *gclient:
		x.close()
	case *gserver:
		x.close(err)
	}
	return gnet.None
}

// traffic greets a new client, then forwards each whole message it sent.
func (cl *gclient) traffic() gnet.Action {
	c := cl.c
	for !cl.greeted {
		p, _ := c.Peek(-1)
		n, reply, greeted, err := pgmini.StartupReply(p)
		if err != nil {
			return gnet.Close
		}
		if n == 0 {
			return gnet.None
		}
		c.Discard(n)
		if _, err := c.Write(reply); err != nil {
			return gnet.Close
		}
		cl.greeted = greeted
	}
	for {
		hdr, err := c.Peek(5)
		if err != nil {
			return gnet.None // the rest comes with a later OnTraffic
		}
		size := 1 + int(binary.BigEndian.Uint32(hdr[1:5]))
		if size < 5 {
			return gnet.Close
		}
		msg, err := c.Peek(size)
		if err != nil {
			return gnet.None
		}
		if msg[0] == 'X' {
			return gnet.Close
		}
		if !cl.forward(msg) {
			return gnet.Close
		}
		c.Discard(size)
	}
}

// forward writes a message to the client's server, taking an idle one if
// it has none, or queues it until a server is released. It reports false
// if the server's write failed (gnet has closed the server then).
func (cl *gclient) forward(msg []byte) bool {
	s := cl.srv
	if s == nil && !cl.waiting {
		s = cl.loop.take()
		if s != nil {
			s.cl, cl.srv = cl, s
		}
	}
	if s == nil {
		cl.out = append(cl.out, msg...)
		if !cl.waiting {
			cl.waiting = true
			cl.loop.waiting = append(cl.loop.waiting, cl)
		}
		return true
	}
	_, err := s.c.Write(msg)
	return err == nil
}

// close runs on the client's OnClose. A server still answering it is
// dropped: its answer has nowhere to go, and nothing says when it ends.
func (cl *gclient) close() {
	cl.closed = true
	if s := cl.srv; s != nil {
		cl.srv, s.cl = nil, nil
		if !s.closed {
			s.dropped = true
			s.c.Close() // queued on the loop: this may run inside s's own OnTraffic
		}
	}
}

// traffic forwards what the server sent to its client; at ReadyForQuery the
// server goes to the next waiting client or back to the idle list.
func (s *gserver) traffic() gnet.Action {
	buf, _ := s.c.Next(-1)
	done := s.sc.Feed(buf)
	if cl := s.cl; cl != nil {
		cl.c.Write(buf) // on error gnet closes the client, whose close drops s
	}
	if s.dropped {
		return gnet.Close
	}
	if done {
		if cl := s.cl; cl != nil {
			cl.srv, s.cl = nil, nil
		}
		s.loop.release(s)
	}
	return gnet.None
}

// close runs on the server's OnClose: its client, if any, is closed too,
// and a new server connection is logged in and enrolled in the same loop.
func (s *gserver) close(err error) {
	s.closed = true
	if cl := s.cl; cl != nil {
		cl.srv, s.cl = nil, nil
		cl.c.Close()
	}
	s.loop.remove(s)
	if s.dropped {
		log.Printf("gnet: a client left mid-answer, its server connection is replaced")
	} else {
		log.Printf("gnet: server connection lost, replaced: %v", err)
	}
	el := s.c.EventLoop()
	go func() {
		c, ok := login()
		if !ok {
			return
		}
		ch, err := el.Enroll(gnet.NewContext(context.Background(), &gserver{}), c)
		if err == nil {
			if r := <-ch; r.Err != nil {
				err = r.Err
			}
		}
		if err != nil {
			log.Printf("gnet: server connection not replaced: %v", err)
		}
	}()
}

// take returns an idle server, or nil.
func (l *gloop) take() *gserver {
	n := len(l.idle)
	if n == 0 {
		return nil
	}
	s := l.idle[n-1]
	l.idle = l.idle[:n-1]
	return s
}

// release gives s to the first waiting client that is still there, writing
// its queued messages, or puts it on the idle list.
func (l *gloop) release(s *gserver) {
	for len(l.waiting) > 0 {
		cl := l.waiting[0]
		l.waiting[0] = nil
		l.waiting = l.waiting[1:]
		cl.waiting = false
		if cl.closed {
			continue
		}
		s.cl, cl.srv = cl, s
		s.c.Write(cl.out) // on error gnet closes s, whose close closes cl
		cl.out = cl.out[:0]
		return
	}
	l.idle = append(l.idle, s)
}

// remove takes s off the idle list if it is there.
func (l *gloop) remove(s *gserver) {
	for i, x := range l.idle {
		if x == s {
			l.idle = append(l.idle[:i], l.idle[i+1:]...)
			return
		}
	}
}

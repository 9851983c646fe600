package main

// The netpoll design. netpoll's pollers (one per 20 CPUs by default, or
// -loops N) read every connection's bytes into its input buffer
// themselves; they run no user code but OnDisconnect. A client's bytes
// start its OnRequest on a goroutine (netpoll's pool, bytedance's gopool:
// a task list under a lock, and a new worker goroutine for a task queued
// while no worker is free; or a plain go statement with -gopool=false),
// which reads the input buffer with blocking Peek and Next; writes are
// made by whoever calls Flush, on its own goroutine.
//
// An outbound connection has no OnRequest unless one is set: Kitex, which
// netpoll was written for, writes a request on a pooled connection and
// reads its answer on the same goroutine, and so does this. The client's
// OnRequest takes a server from the pool (FIFO wait, handed over directly,
// when none is idle), writes the query and flushes it (a sendmsg on that
// goroutine), then blocks in the server's Reader until the poller has read
// the answer, and writes it to the client until ReadyForQuery. Per
// transaction that is two hand-offs from the poller's goroutine: the
// client's bytes start OnRequest, the server's wake it (a channel); and
// the pool's lock twice. Giving
// the server connections an OnRequest of their own, to forward answers,
// would hand off as often (a task started instead of a channel wake) and
// share each client's state between two goroutines.
//
// netpoll offers no adoption of an established net.Conn but
// NewFDConnection (documented for tests, generic in fact), so pgconn logs
// the servers in and their descriptors are duplicated into netpoll.
//
// A server is held from a client's first message to the ReadyForQuery of
// the one that ends the transaction (Q or S); OnRequest does not return
// while it holds one, so that the goroutine that owns the server is always
// there to drop it: when the client leaves mid-answer, OnDisconnect (run
// on the poller, concurrently with OnRequest) shuts the server's socket
// down (closing the connection would free its buffers under OnRequest),
// and the goroutine, woken by the end of the server's stream, closes the
// connection and logs a new one in.

import (
	"context"
	"encoding/binary"
	"errors"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cloudwego/netpoll"

	"github.com/pgswitch/pgswitch/bench/internal/pgmini"
)

// npool is the pool of server connections, shared by every client.
type npool struct {
	mu      sync.Mutex
	idle    []*nserver
	waiting []chan *nserver // clients' wake channels, first come first served
}

type nserver struct {
	c  netpoll.Connection // read and written by the client's OnRequest that holds it
	fd int

	mu     sync.Mutex // taken only when a client leaves mid-transaction
	closed bool
}

// nclient is a client's state.
type nclient struct {
	c    netpoll.Connection
	srv  atomic.Pointer[nserver] // set and cleared by its OnRequest; OnDisconnect may take it to shut it down
	wake chan *nserver           // a server handed over while it waits
}

type clientKey struct{}

// errClientLeft: the client left mid-answer, and its OnDisconnect took the
// server.
var errClientLeft = errors.New("client left mid-answer")

func serveNetpoll(conns []net.Conn) error {
	cfg := netpoll.Config{PollerNum: *loopsN}
	if !*gopool {
		cfg.Runner = func(_ context.Context, f func()) { go f() }
	}
	if err := netpoll.Configure(cfg); err != nil {
		return err
	}
	p := &npool{}
	for _, c := range conns {
		s, err := adopt(c)
		if err != nil {
			return err
		}
		p.release(s)
	}
	ln, err := netpoll.CreateListener("tcp", *listen)
	if err != nil {
		return err
	}
	evl, err := netpoll.NewEventLoop(p.onRequest,
		netpoll.WithOnConnect(onConnect),
		netpoll.WithOnDisconnect(onDisconnect))
	if err != nil {
		return err
	}
	return evl.Serve(ln)
}

// adopt hands a logged-in server connection's descriptor to netpoll.
func adopt(c net.Conn) (*nserver, error) {
	defer c.Close()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var dupErr error
	if err := rc.Control(func(f uintptr) { fd, dupErr = syscall.Dup(int(f)) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, dupErr
	}
	nc, err := netpoll.NewFDConnection(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return &nserver{c: nc, fd: fd}, nil
}

// onConnect greets the client (netpoll runs it on a goroutine of its own,
// before any OnRequest, and it may block).
func onConnect(ctx context.Context, c netpoll.Connection) context.Context {
	if err := pgmini.Startup(c); err != nil {
		c.Close()
		return ctx
	}
	return context.WithValue(ctx, clientKey{}, &nclient{c: c, wake: make(chan *nserver, 1)})
}

// onDisconnect shuts down the socket of the server a leaving client holds,
// waking its OnRequest if that waits for the answer: it drops the server.
// (Closing the connection here would free its buffers under OnRequest.)
func onDisconnect(ctx context.Context, _ netpoll.Connection) {
	if cl, ok := ctx.Value(clientKey{}).(*nclient); ok {
		if s := cl.srv.Swap(nil); s != nil {
			s.shutdown()
		}
	}
}

// onRequest forwards the client's whole messages to its server and each
// answer back. It returns when the client's input is read and it holds no
// server.
func (p *npool) onRequest(ctx context.Context, c netpoll.Connection) error {
	cl, ok := ctx.Value(clientKey{}).(*nclient)
	if !ok {
		return c.Close()
	}
	r := c.Reader()
	var s *nserver // from a transaction's first message to its ReadyForQuery
	for s != nil || r.Len() > 0 {
		hdr, err := r.Peek(5)
		if err != nil {
			return p.leave(cl, s)
		}
		size := 1 + int(binary.BigEndian.Uint32(hdr[1:5]))
		if size < 5 {
			return p.leave(cl, s)
		}
		msg, err := r.Next(size)
		if err != nil || msg[0] == 'X' {
			return p.leave(cl, s)
		}
		typ := msg[0]
		if s == nil {
			s = p.acquire(cl)
		}
		w := s.c.Writer()
		w.WriteBinary(msg) // large messages are referenced, not copied: flush before Release
		if typ != 'Q' && typ != 'S' && r.Len() > 0 {
			continue
		}
		err = w.Flush()
		r.Release()
		if err == nil && (typ == 'Q' || typ == 'S') {
			if err = p.answer(cl, s); err == nil {
				s = nil // back in the pool
				continue
			}
		}
		if err != nil {
			if cl.srv.Load() == s { // not taken by OnDisconnect
				log.Printf("netpoll: server connection lost: %v", err)
			}
			return p.leave(cl, s)
		}
	}
	return nil
}

// leave closes the client, and drops the server it holds mid-transaction.
func (p *npool) leave(cl *nclient, s *nserver) error {
	if s != nil {
		p.drop(cl, s)
	}
	return cl.c.Close()
}

// answer forwards s's answer to the client until ReadyForQuery, flushing
// when nothing more is buffered, and gives s back to the pool. Write errors
// on the client are for its OnDisconnect to act on; it returns an error
// from s, or errClientLeft if OnDisconnect took s.
func (p *npool) answer(cl *nclient, s *nserver) error {
	r := s.c.Reader()
	w := cl.c.Writer()
	var sc pgmini.Scanner
	for {
		if r.Len() == 0 {
			w.Flush()
			r.Release()
			if _, err := r.Peek(1); err != nil {
				return err
			}
		}
		b, err := r.Next(r.Len())
		if err != nil {
			return err
		}
		done := sc.Feed(b)
		w.WriteBinary(b) // large pieces are referenced: flush before Release
		if !done {
			continue
		}
		// s is the client's no more before the client can see the end of
		// its answer: a client that leaves as soon as it has it (psql
		// does) must not take a sound server down with it.
		kept := cl.srv.CompareAndSwap(s, nil)
		w.Flush()
		r.Release()
		if !kept {
			return errClientLeft
		}
		p.release(s)
		return nil
	}
}

// acquire returns an idle server, or waits for one, and records it as the
// client's.
func (p *npool) acquire(cl *nclient) *nserver {
	p.mu.Lock()
	var s *nserver
	if n := len(p.idle); n > 0 {
		s = p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
	} else {
		p.waiting = append(p.waiting, cl.wake)
		p.mu.Unlock()
		s = <-cl.wake
	}
	cl.srv.Store(s)
	return s
}

// release hands s to the first waiting client or puts it on the idle list.
func (p *npool) release(s *nserver) {
	p.mu.Lock()
	if len(p.waiting) > 0 {
		wake := p.waiting[0]
		p.waiting[0] = nil
		p.waiting = p.waiting[1:]
		p.mu.Unlock()
		wake <- s
		return
	}
	p.idle = append(p.idle, s)
	p.mu.Unlock()
}

// drop closes s, taken mid-transaction, and logs a new server connection in
// to take its place.
func (p *npool) drop(cl *nclient, s *nserver) {
	cl.srv.CompareAndSwap(s, nil)
	s.close()
	log.Printf("netpoll: a transaction was cut short, its server connection is replaced")
	go func() {
		c, ok := login()
		if !ok {
			return
		}
		s, err := adopt(c)
		if err != nil {
			log.Printf("netpoll: server connection not replaced: %v", err)
			return
		}
		p.release(s)
	}()
}

// shutdown makes the poller see the server's end, which wakes a reader.
func (s *nserver) shutdown() {
	s.mu.Lock()
	if !s.closed {
		syscall.Shutdown(s.fd, syscall.SHUT_RDWR)
	}
	s.mu.Unlock()
}

// close closes the connection, after which its descriptor's number may be
// another socket's.
func (s *nserver) close() {
	s.mu.Lock()
	s.closed = true
	s.c.Close()
	s.mu.Unlock()
}

package backend

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pgswitch/pgswitch/edge/config"
	"github.com/pgswitch/pgswitch/health/checkstate"
)

var (
	// ErrNoServer means no server is up: the client gets 503 at once.
	ErrNoServer = errors.New("no server is up")
	// ErrQueueTimeout means every usable server stayed at its maxconn for
	// the whole queue timeout.
	ErrQueueTimeout = errors.New("queue timeout: every server is at maxconn")
)

// Server is one server of a pool. Its mutable fields are guarded by the
// pool's mutex.
type Server struct {
	// Index is the server's position in its listen's configuration.
	Index   int
	Name    string
	Addr    string
	Backup  bool
	MaxConn int
	Weight  int
	// Checked is false when health checks are off: the server is always up.
	Checked bool
	// Config is the server's configuration, for the proxies.
	Config *config.Server

	check    checkstate.State
	since    time.Time
	lastErr  string
	inflight int
	current  int // smooth weighted round robin credit
	checks   uint64
	failures uint64
	served   uint64

	probe        Prober
	checkTimeout time.Duration
}

// waiter is a request queued for a server; ch receives the server (or nil:
// no server left) exactly once, under the pool's mutex.
type waiter struct {
	ch     chan *Server
	served bool
}

// Pool is the servers of one listen.
type Pool struct {
	Name string

	log        *slog.Logger
	clock      Clock
	allBackups bool

	mu      sync.Mutex
	servers []*Server
	queue   list.List // of *waiter, oldest first
}

// Options are what a pool needs besides its listen's configuration.
type Options struct {
	Log   *slog.Logger
	Clock Clock
	// NewProber makes a server's check; nil turns checks off (tests of
	// the queue alone).
	NewProber func(l *config.Listen, s *config.Server) (Prober, error)
	// Previous is the pool this one replaces on reload: servers of the
	// same name and address keep their health state.
	Previous *Pool
}

// NewPool makes the pool of listen l. Checks start with Run.
func NewPool(l *config.Listen, opt Options) (*Pool, error) {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.Clock == nil {
		opt.Clock = RealClock{}
	}
	p := &Pool{Name: l.Name, log: opt.Log, clock: opt.Clock, allBackups: l.AllBackups}
	params := checkstate.Params{Inter: l.Check.Inter, DownInter: l.Check.DownInter, Fall: l.Check.Fall, Rise: l.Check.Rise}
	now := p.clock.Now()
	for i, cs := range l.Servers {
		s := &Server{Index: i, Name: cs.Name, Addr: cs.Addr, Backup: cs.Backup, MaxConn: cs.MaxConn, Weight: cs.Weight,
			Checked: cs.Checked(), Config: cs, check: checkstate.New(params), since: now, checkTimeout: l.Check.Timeout}
		if s.Checked && opt.NewProber != nil {
			pr, err := opt.NewProber(l, cs)
			if err != nil {
				return nil, fmt.Errorf("listen %s server %s: %w", l.Name, cs.Name, err)
			}
			s.probe = pr
		}
		if prev := opt.Previous.find(cs.Name, cs.Addr); prev != nil && s.Checked {
			opt.Previous.mu.Lock()
			s.check, s.since, s.lastErr = prev.check, prev.since, prev.lastErr
			opt.Previous.mu.Unlock()
			s.check.Params = params
		}
		p.servers = append(p.servers, s)
	}
	return p, nil
}

func (p *Pool) find(name, addr string) *Server {
	if p == nil {
		return nil
	}
	for _, s := range p.servers {
		if s.Name == name && s.Addr == addr {
			return s
		}
	}
	return nil
}

// up reports whether s may take traffic. Caller holds p.mu.
func (s *Server) up() bool { return !s.Checked || s.check.Up() }

// candidatesLocked returns the servers traffic may go to now: the up
// servers that are not backups, else the first up backup (every up backup
// with all_backups).
func (p *Pool) candidatesLocked(buf []*Server) []*Server {
	for _, s := range p.servers {
		if !s.Backup && s.up() {
			buf = append(buf, s)
		}
	}
	if len(buf) > 0 {
		return buf
	}
	for _, s := range p.servers {
		if s.Backup && s.up() {
			buf = append(buf, s)
			if !p.allBackups {
				break
			}
		}
	}
	return buf
}

// pickLocked chooses among the candidates below their maxconn by smooth
// weighted round robin, and counts the request in flight. It returns nil
// when every candidate is full, and reports whether any candidate exists.
func (p *Pool) pickLocked() (s *Server, any bool) {
	var arr [16]*Server
	cands := p.candidatesLocked(arr[:0])
	total := 0
	var best *Server
	for _, c := range cands {
		if c.MaxConn > 0 && c.inflight >= c.MaxConn {
			continue
		}
		c.current += c.Weight
		total += c.Weight
		if best == nil || c.current > best.current {
			best = c
		}
	}
	if best == nil {
		return nil, len(cands) > 0
	}
	best.current -= total
	best.inflight++
	best.served++
	return best, true
}

// TryAcquire returns a server below its maxconn without waiting, as
// Acquire does when one is free. When every usable server is full it
// returns nil and no error: the caller then waits with Acquire.
func (p *Pool) TryAcquire() (*Server, error) {
	p.mu.Lock()
	s, any := p.pickLocked()
	p.mu.Unlock()
	if s == nil && !any {
		return nil, ErrNoServer
	}
	return s, nil
}

// Acquire returns a server for one request or connection, waiting in the
// pool's FIFO queue up to timeout while every usable server is at its
// maxconn. The caller must Release the server.
func (p *Pool) Acquire(ctx context.Context, timeout time.Duration) (*Server, error) {
	p.mu.Lock()
	s, any := p.pickLocked()
	if s != nil || !any {
		p.mu.Unlock()
		if s == nil {
			return nil, ErrNoServer
		}
		return s, nil
	}
	w := &waiter{ch: make(chan *Server, 1)}
	e := p.queue.PushBack(w)
	p.mu.Unlock()

	t := time.NewTimer(timeout)
	defer t.Stop()
	var err error
	select {
	case s := <-w.ch:
		if s == nil {
			return nil, ErrNoServer
		}
		return s, nil
	case <-t.C:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.mu.Lock()
	if !w.served {
		p.queue.Remove(e)
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Unlock()
	// Handed a server (or told there is none) as time ran out: take it.
	if s := <-w.ch; s != nil {
		return s, nil
	}
	return nil, ErrNoServer
}

// Release gives back a server Acquire returned; the oldest waiter, if any,
// gets its place.
func (p *Pool) Release(s *Server) {
	p.mu.Lock()
	s.inflight--
	p.dispatchLocked()
	p.mu.Unlock()
}

// dispatchLocked hands free servers to waiters, oldest first, and fails
// them all when no server is up any more.
func (p *Pool) dispatchLocked() {
	for p.queue.Len() > 0 {
		s, any := p.pickLocked()
		if s == nil && any {
			return
		}
		w := p.queue.Remove(p.queue.Front()).(*waiter)
		w.served = true
		w.ch <- s // nil when no server is up
	}
}

// QueueLen is the number of requests waiting for a server.
func (p *Pool) QueueLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.Len()
}

// Status is a server's state for /status and metrics.
type Status struct {
	Listen   string    `json:"listen"`
	Name     string    `json:"name"`
	Addr     string    `json:"addr"`
	Backup   bool      `json:"backup"`
	Checked  bool      `json:"checked"`
	Up       bool      `json:"up"`
	Since    time.Time `json:"since"`
	LastErr  string    `json:"last_error,omitempty"`
	InFlight int       `json:"in_flight"`
	MaxConn  int       `json:"maxconn"`
	Checks   uint64    `json:"checks"`
	Failures uint64    `json:"check_failures"`
	Served   uint64    `json:"served"`
}

// Status returns every server's state, in configuration order.
func (p *Pool) Status() []Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Status, 0, len(p.servers))
	for _, s := range p.servers {
		out = append(out, Status{Listen: p.Name, Name: s.Name, Addr: s.Addr, Backup: s.Backup, Checked: s.Checked,
			Up: s.up(), Since: s.since, LastErr: s.lastErr, InFlight: s.inflight, MaxConn: s.MaxConn,
			Checks: s.checks, Failures: s.failures, Served: s.served})
	}
	return out
}

package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/wire"
)

// Key names a pool: clients of one database and user on one server.
type Key struct {
	Database string // the name clients connect to
	User     string
	Server   string // host:port
}

func (k Key) String() string { return k.Database + "/" + k.User + "@" + k.Server }

// Settings are a pool's limits; they may change on reload.
type Settings struct {
	Size        int           // most connections, > 0
	MinIdle     int           // idle connections kept open
	IdleTimeout time.Duration // idle connections beyond MinIdle closed after (0: never)
	Lifetime    time.Duration // connections closed once this old, when idle (0: never)
}

// ErrClosed is returned by Acquire on a closed pool.
var ErrClosed = errors.New("pool closed")

// queued counts the acquisitions that waited, in every pool.
var queued atomic.Uint64

// Queued is how many acquisitions have waited for a connection, in every
// pool, since the process started: sessions queued for connections are
// the load that runs pgswitch on more than one thread (internal/threads).
func Queued() uint64 { return queued.Load() }

// ErrWaitTimeout is returned by Acquire when no connection came in time.
var ErrWaitTimeout = errors.New("timed out waiting for a server connection")

// Pool holds the server connections of one Key. Waiters are served in FIFO
// order and a released connection is handed directly to the oldest waiter,
// so a newcomer never overtakes a client that has been waiting.
type Pool struct {
	key    Key
	target Target
	limit  *serverLimit
	log    *slog.Logger
	// changed, for tests that wait for a state instead of sleeping, is
	// signalled without blocking when idle connections or waiters change;
	// nil outside tests.
	changed chan struct{}

	// homing counts connections whose lease ended at rest and whose release
	// is still to come (the pump writes the answer first): raised under the
	// connection's lock, read and lowered under mu.
	homing atomic.Int32

	mu       sync.Mutex
	settings Settings
	idle     []*Conn            // most recently used last
	conns    map[*Conn]struct{} // every open connection
	waiters  []*waiter
	total    int // open plus being dialed
	closed   bool
	params   map[string]string // the last connected server's ParameterStatus values
	waitTime time.Duration     // total time clients waited, for stats
	waits    uint64
	paused   bool               // PAUSE: no new connections; released ones close (pause.go)
	stale    map[*Conn]struct{} // RECONNECT: close these when released (pause.go)
	hist     waitHistogram      // queue waits, for metrics (waits.go)
	busy     busyTime           // time connections served clients, for stats (waits.go)
	qtime    queryTime          // time servers spent answering (waits.go)
}

type waiter struct {
	ch    chan result // buffered 1: whoever serves the waiter never blocks
	since int64       // monotime when it started waiting, for SHOW POOLS' maxwait
	timer *time.Timer // its wait's end, made on first use
}

// waiterPool keeps waiters, with their channel and timer, from one wait
// to the next: a pool smaller than its clients queues most units of work.
// A waiter goes back empty once Acquire returns: it was served (its one
// result taken), or it took itself out of the queue (nobody will serve it).
var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan result, 1)} }}

type result struct {
	c     *Conn
	err   error
	noted bool // the wait is recorded already (noteWaitLocked)
}

// Key returns the pool's key.
func (p *Pool) Key() Key { return p.key }

// Acquire returns an idle connection, a new one, or waits in line for one
// for at most wait (or until ctx ends). The connection is not linked to any
// client yet. The fast path allocates no context or timer.
func (p *Pool) Acquire(ctx context.Context, wait time.Duration) (*Conn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		c.inIdle = false
		if c.Closed() {
			continue
		}
		p.changedLocked()
		p.mu.Unlock()
		return c, nil
	}
	// A connection on its way back (homing) is as good as idle: the first
	// waiters take those rather than dial more.
	if !p.paused && p.total < p.settings.Size && len(p.waiters) >= int(p.homing.Load()) && p.limit.take() {
		p.total++
		p.mu.Unlock()
		c, err := p.connect(ctx)
		if err != nil {
			p.dialFailed()
			return nil, err
		}
		p.connected(c)
		return c, nil
	}
	w := waiterPool.Get().(*waiter)
	defer waiterPool.Put(w)
	w.since = monotime()
	queued.Add(1)
	p.waiters = append(p.waiters, w)
	p.changedLocked()
	p.mu.Unlock()

	if w.timer == nil {
		w.timer = time.NewTimer(wait)
	} else {
		w.timer.Reset(wait)
	}
	defer w.timer.Stop() // no stale tick after Stop (Go 1.23 timers): the waiter can be used again
	var cause error
	select {
	case r := <-w.ch:
		p.noteWait(w.since, r.noted)
		return r.c, r.err
	case <-ctx.Done():
		cause = ctx.Err()
	case <-w.timer.C:
		cause = ErrWaitTimeout
	}
	p.mu.Lock()
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.changedLocked()
			p.mu.Unlock()
			p.noteWait(w.since, false)
			return nil, cause
		}
	}
	p.mu.Unlock()
	// Served while timing out: take what was handed over.
	r := <-w.ch
	p.noteWait(w.since, r.noted)
	return r.c, r.err
}

// popWaiterLocked takes the first waiter off the queue; p.mu is held. The
// rest move down, so that the queue keeps its array: taking waiters off the
// front of the slice instead made every append to a short queue allocate.
func (p *Pool) popWaiterLocked() *waiter {
	w := p.waiters[0]
	n := copy(p.waiters, p.waiters[1:])
	p.waiters[n] = nil
	p.waiters = p.waiters[:n]
	return w
}

// noteWait records a wait that began at since (monotime), unless noted.
func (p *Pool) noteWait(since int64, noted bool) {
	if noted {
		return
	}
	now := monotime()
	p.mu.Lock()
	p.noteWaitLocked(time.Duration(now - since))
	p.mu.Unlock()
}

// noteWaitLocked records a wait of d; p.mu is held.
func (p *Pool) noteWaitLocked(d time.Duration) {
	p.waitTime += d
	p.waits++
	p.hist.observe(d)
}

func (p *Pool) connected(c *Conn) {
	p.mu.Lock()
	if p.conns == nil {
		p.conns = map[*Conn]struct{}{}
	}
	p.conns[c] = struct{}{}
	p.params = c.params
	p.mu.Unlock()
}

func (p *Pool) dialFailed() {
	p.mu.Lock()
	p.total--
	p.mu.Unlock()
	p.limit.give()
	p.serveWaiters()
}

// release takes a connection back: to the oldest waiter, to the idle list,
// or closed when the pool no longer wants it. homing: its lease ended in
// unlinkIfIdleLocked, which counted it in p.homing.
func (p *Pool) release(c *Conn, homing bool) {
	closed, linked, discard := c.leaving()
	if closed {
		if homing {
			// Someone may wait for it: dial for them, as room is freed.
			p.homing.Add(-1)
			p.serveWaiters()
		}
		return // the pump removes it
	}
	now := monotime()
	p.mu.Lock()
	if homing {
		p.homing.Add(-1) // under p.mu, with the hand-over: Acquire sees one or the other
	}
	p.noteBusy(linked, now)
	if discard || p.closed || p.paused || p.isStale(c) || (p.settings.Lifetime > 0 && time.Duration(now-c.born) > p.settings.Lifetime) || p.total > p.settings.Size {
		p.mu.Unlock()
		c.Close()
		return
	}
	if len(p.waiters) > 0 {
		w := p.popWaiterLocked()
		p.noteWaitLocked(time.Duration(now - w.since)) // here, under the lock release holds anyway
		p.changedLocked()
		p.mu.Unlock()
		w.ch <- result{c: c, noted: true}
		return
	}
	c.idleSince = now
	c.inIdle = true
	p.idle = append(p.idle, c)
	p.changedLocked()
	p.mu.Unlock()
}

// changedLocked signals p.changed, if a test watches the pool; p.mu is held.
func (p *Pool) changedLocked() {
	if p.changed != nil {
		select {
		case p.changed <- struct{}{}:
		default: // a signal is pending: the watcher looks again anyway
		}
	}
}

// removed is called by the pump when the connection is gone for good.
func (p *Pool) removed(c *Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.stale, c)
	if c.inIdle {
		for i, x := range p.idle {
			if x == c {
				p.idle = append(p.idle[:i], p.idle[i+1:]...)
				break
			}
		}
		c.inIdle = false
	}
	p.total--
	p.changedLocked()
	p.mu.Unlock()
	p.limit.give()
}

// serveWaiters dials for waiters while the pool and the server have room.
// It runs after capacity was freed, here or in another pool of the server.
func (p *Pool) serveWaiters() {
	for {
		p.mu.Lock()
		if p.closed || p.paused || len(p.waiters) == 0 || p.total >= p.settings.Size || !p.limit.take() {
			p.mu.Unlock()
			return
		}
		w := p.popWaiterLocked()
		p.total++
		p.changedLocked()
		p.mu.Unlock()
		go func() {
			c, err := p.connect(context.Background())
			if err != nil {
				p.dialFailed()
				w.ch <- result{err: err}
				return
			}
			p.connected(c)
			w.ch <- result{c: c}
		}()
	}
}

// Params returns the ParameterStatus values of the pool's last new
// connection, or nil if it never connected.
func (p *Pool) Params() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.params
}

// SetSettings applies new limits; surplus idle connections go at the next
// janitor round, surplus busy ones when released.
func (p *Pool) SetSettings(s Settings) {
	p.mu.Lock()
	p.settings = s
	p.mu.Unlock()
	p.serveWaiters()
}

// Stats is a snapshot of a pool's state.
type Stats struct {
	Key      Key
	Total    int // open or being dialed
	Idle     int
	Active   int // linked to a client or cleaning up
	Waiting  int // clients waiting for a connection
	MaxWait  time.Duration
	WaitTime time.Duration
	Waits    uint64
}

// Stats returns a snapshot for the admin console.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Key: p.key, Total: p.total, Idle: len(p.idle), Active: p.total - len(p.idle),
		Waiting: len(p.waiters), WaitTime: p.waitTime, Waits: p.waits}
}

// Close closes idle connections and refuses new acquisitions; busy
// connections are closed when released. Waiters get ErrClosed.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	waiters := p.waiters
	p.waiters = nil
	p.changedLocked()
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
	for _, w := range waiters {
		w.ch <- result{err: ErrClosed}
	}
}

// CloseIdle closes the idle connections (e.g. of a server marked down)
// and keeps the pool open.
func (p *Pool) CloseIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	for _, c := range idle {
		c.inIdle = false
	}
	p.changedLocked()
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// CloseAll closes every connection of the pool, busy ones included: their
// clients get e (FATAL), as when the server went away.
func (p *Pool) CloseAll(e *wire.Error) {
	p.CloseIdle()
	p.mu.Lock()
	all := make([]*Conn, 0, len(p.conns))
	for c := range p.conns {
		all = append(all, c)
	}
	p.mu.Unlock()
	for _, c := range all {
		c.Kill(e)
	}
}

// AcquireError turns an Acquire failure into what the client sees.
func AcquireError(key Key, wait time.Duration, err error) *wire.Error {
	switch {
	case errors.Is(err, ErrWaitTimeout):
		return wire.Errorf(wire.CodeTooManyConnections,
			"no server connection to %s available within query_wait timeout (%s)", key.Server, wait).WithCause(err)
	case errors.Is(err, ErrClosed):
		return wire.Errorf(wire.CodeCannotConnectNow, "pool %s is closed", key).WithCause(err)
	default:
		return wire.Errorf(wire.CodeConnectionFailure, "cannot connect to server %s", key.Server).
			WithCause(err).WithDetail(serverErrorDetail(err))
	}
}

// serverErrorDetail keeps what a server said about a failed login (it holds no
// secret) so that the client learns why, e.g. a bad server password in the config.
func serverErrorDetail(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("server said: %s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	// Why a server's certificate was refused (server_tls_mode), as libpq
	// tells its user.
	var ce *wire.ServerCertError
	if errors.As(err, &ce) {
		return ce.Error()
	}
	return ""
}

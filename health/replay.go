package health

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// replayPollEvery spaces the polls of one replica while reads wait for it:
// at most a thousand small queries a second per replica. Rejected: polling
// back to back (a loopback round trip, ~0.1 ms), which under a steady
// read/write mix keeps a core busy for little gain; every 0.5 ms, which in
// bench/consistency on a loaded machine made the polls 8 % of pgswitch's
// CPU and causal's TPS lower, for reads that waited a little less.
const replayPollEvery = time.Millisecond

// Replay follows replicas' replay positions closely enough for
// read-your-writes: the last position each replica showed, and polls of it
// on demand, on a connection of its own, while reads wait for a position it
// has not shown yet. Positions only grow; an unknown one is 0.
type Replay struct {
	poll func(ctx context.Context, addr string) (int64, error)
	ctx  context.Context

	mu      sync.Mutex
	servers map[string]*replayServer
	changed chan struct{} // closed and made anew whenever a position grows
	wg      sync.WaitGroup
}

type replayServer struct {
	lsn     atomic.Int64
	waiting atomic.Int32  // reads waiting for this server to move
	wake    chan struct{} // cap 1: the poller has reads to serve
}

// NewReplay returns a Replay that asks a server its replay position with
// poll; its pollers stop when ctx ends (Wait for them with Close).
func NewReplay(ctx context.Context, poll func(ctx context.Context, addr string) (int64, error)) *Replay {
	return &Replay{poll: poll, ctx: ctx, servers: map[string]*replayServer{}, changed: make(chan struct{})}
}

// Close waits for the pollers, once the context given to NewReplay ended.
func (r *Replay) Close() { r.wg.Wait() }

func (r *Replay) server(addr string) *replayServer {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.servers[addr]
	if s == nil {
		s = &replayServer{wake: make(chan struct{}, 1)}
		r.servers[addr] = s
		r.wg.Add(1)
		go r.poller(addr, s)
	}
	return s
}

// Known is the last replay position addr showed (0: none yet).
func (r *Replay) Known(addr string) int64 {
	r.mu.Lock()
	s := r.servers[addr]
	r.mu.Unlock()
	if s == nil {
		return 0
	}
	return s.lsn.Load()
}

// Observe records that addr has replayed up to lsn.
func (r *Replay) Observe(addr string, lsn int64) {
	s := r.server(addr)
	for {
		old := s.lsn.Load()
		if lsn <= old {
			return
		}
		if s.lsn.CompareAndSwap(old, lsn) {
			break
		}
	}
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// Wait returns one of addrs that has replayed up to mark, polling them
// while it waits, for at most within; false when none got there in time.
// It polls the one furthest along first, and the others too only once
// that one has kept it waiting for othersAfter: replicas replay the same
// WAL at much the same pace, and each poll costs the server a query.
func (r *Replay) Wait(addrs []string, mark int64, within time.Duration) (string, bool) {
	servers := make([]*replayServer, len(addrs))
	best := 0
	for i, a := range addrs {
		servers[i] = r.server(a)
		servers[i].waiting.Add(1)
		if servers[i].lsn.Load() > servers[best].lsn.Load() {
			best = i
		}
	}
	defer func() {
		for _, s := range servers {
			s.waiting.Add(-1)
		}
	}()
	if len(servers) > 0 {
		servers[best].poke()
	}
	timer := time.NewTimer(within)
	defer timer.Stop()
	var others <-chan time.Time
	if len(servers) > 1 {
		t := time.NewTimer(othersAfter)
		defer t.Stop()
		others = t.C
	}
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		for i, s := range servers {
			if s.lsn.Load() >= mark {
				return addrs[i], true
			}
		}
		select {
		case <-changed:
		case <-others:
			others = nil
			for _, s := range servers {
				s.poke()
			}
		case <-timer.C:
			return "", false
		case <-r.ctx.Done():
			return "", false
		}
	}
}

// othersAfter is how long a read waits on the replica furthest along
// before the others are polled as well.
const othersAfter = 2 * time.Millisecond

// poke starts the server's poller, if it is not polling already.
func (s *replayServer) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// poller polls addr while reads wait for it.
func (r *Replay) poller(addr string, s *replayServer) {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-s.wake:
		}
		for s.waiting.Load() > 0 && r.ctx.Err() == nil {
			start := time.Now()
			if lsn, err := r.poll(r.ctx, addr); err == nil {
				r.Observe(addr, lsn)
			}
			if d := replayPollEvery - time.Since(start); d > 0 {
				time.Sleep(d)
			}
		}
	}
}

// ReplayQuery asks a hot standby how far it has replayed, in bytes (0 on a
// primary, which replays nothing).
const ReplayQuery = `SELECT pg_catalog.pg_wal_lsn_diff(coalesce(pg_catalog.pg_last_wal_replay_lsn(), '0/0'), '0/0')::int8`

// PollReplay asks the server at addr its replay position, on a connection
// kept for these polls (reconnected after a failure).
func (c *Checker) PollReplay(ctx context.Context, addr string) (int64, error) {
	c.replayMu.Lock()
	conn := c.replayConns[addr]
	c.replayMu.Unlock()
	cfg, srv, dbname, err := c.checkDatabase(addr)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Health.Timeout)
	defer cancel()
	if conn == nil {
		if conn, err = Connect(ctx, cfg, srv, dbname, "pgswitch replay position"); err != nil {
			return 0, err
		}
		c.replayMu.Lock()
		if c.replayConns == nil {
			c.replayConns = map[string]*pgx.Conn{}
		}
		c.replayConns[addr] = conn
		c.replayMu.Unlock()
	}
	var lsn int64
	if err := conn.QueryRow(ctx, ReplayQuery).Scan(&lsn); err != nil {
		c.replayMu.Lock()
		delete(c.replayConns, addr)
		c.replayMu.Unlock()
		conn.Close(context.Background())
		return 0, err
	}
	return lsn, nil
}

// ClosePolls closes the connections PollReplay made; call it once nothing
// polls any more.
func (c *Checker) ClosePolls() {
	c.replayMu.Lock()
	conns := c.replayConns
	c.replayConns = nil
	c.replayMu.Unlock()
	for _, conn := range conns {
		conn.Close(context.Background())
	}
}

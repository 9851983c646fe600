package health

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgswitch/pgswitch/config"
)

// Hooks are how the checker tells its owner about changes.
type Hooks struct {
	// Publish receives every new snapshot, in order. It must not block.
	Publish func(*Snapshot)
	// Unusable is called (outside any lock) when a server that could take
	// traffic is marked down or excluded, so its connections can be closed.
	Unusable func(addr, reason string)
}

// prober checks one server; each is owned by that server's check loop.
type prober interface {
	probe(ctx context.Context) Probe
	close()
}

// Checker checks every configured server on its own timer and publishes
// snapshots of what it learns.
type Checker struct {
	log   *slog.Logger
	hooks Hooks
	// newProber makes the prober of one server; tests replace it.
	newProber func(c *Checker, addr string) prober

	mu      sync.Mutex
	cfg     *config.Config
	servers map[string]*server
	judge   *judge
	last    *Snapshot
	loops   map[string]context.CancelFunc
	ctx     context.Context // nil until Run
	wg      sync.WaitGroup

	replayMu    sync.Mutex
	replayConns map[string]*pgx.Conn // PollReplay's, by server address
}

// NewChecker returns a checker for cfg; Run starts it.
func NewChecker(cfg *config.Config, hooks Hooks, log *slog.Logger) *Checker {
	if log == nil {
		log = slog.Default()
	}
	c := &Checker{log: log, hooks: hooks, newProber: newPgxProber, servers: map[string]*server{}, loops: map[string]context.CancelFunc{}}
	c.Apply(cfg)
	return c
}

// Run checks servers until ctx ends, then waits for every check loop.
func (c *Checker) Run(ctx context.Context) {
	c.mu.Lock()
	c.ctx = ctx
	c.startLoopsLocked()
	c.mu.Unlock()
	<-ctx.Done()
	c.wg.Wait()
}

// Apply takes a new configuration: new servers start being checked (as up
// in their hinted role until their first check), removed ones stop.
func (c *Checker) Apply(cfg *config.Config) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg = cfg
	c.judge = newJudge(cfg)
	now := time.Now()
	hints := hintedRoles(cfg)
	for _, db := range cfg.Databases {
		for _, srv := range db.Servers {
			if s := c.servers[srv.Addr()]; s != nil {
				s.check.Params = paramsOf(srv)
				continue
			}
			c.servers[srv.Addr()] = newServer(srv.Addr(), paramsOf(srv), hints[srv.Addr()], now)
		}
	}
	for addr := range c.servers {
		if _, ok := hints[addr]; !ok {
			delete(c.servers, addr)
			if stop := c.loops[addr]; stop != nil {
				stop()
				delete(c.loops, addr)
			}
		}
	}
	if c.ctx != nil {
		c.startLoopsLocked()
	}
	c.last = c.judge.snapshot(c.servers, now)
}

func (c *Checker) startLoopsLocked() {
	for addr := range c.servers {
		if c.loops[addr] != nil {
			continue
		}
		ctx, stop := context.WithCancel(c.ctx)
		c.loops[addr] = stop
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.loop(ctx, addr)
		}()
	}
}

// Snapshot returns the latest snapshot.
func (c *Checker) Snapshot() *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// loop checks one server until ctx ends.
func (c *Checker) loop(ctx context.Context, addr string) {
	p := c.newProber(c, addr)
	defer p.close()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pr := p.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		wait, ok := c.record(addr, pr)
		if !ok {
			return
		}
		t.Reset(wait)
	}
}

// record applies one probe, publishes the new snapshot and reports what
// changed. It returns the wait before the next check.
func (c *Checker) record(addr string, pr Probe) (time.Duration, bool) {
	c.mu.Lock()
	s := c.servers[addr]
	if s == nil {
		c.mu.Unlock()
		return 0, false // removed by Apply
	}
	now := time.Now()
	ev, changed := s.observe(pr, now)
	prev := c.last
	snap := c.judge.snapshot(c.servers, now)
	var lagChanges []Status
	for a, st := range snap.Servers {
		if srv := c.servers[a]; st.Lagging != srv.lagging {
			srv.lagging = st.Lagging
			if st.Lagging {
				srv.counts.LagExclusions++
				st.Counts.LagExclusions++
				snap.Servers[a] = st
			}
			if st.Lagging || st.Usable() {
				lagChanges = append(lagChanges, st)
			}
		}
	}
	c.last = snap
	if c.hooks.Publish != nil {
		// Under the lock so that snapshots are published in order.
		c.hooks.Publish(snap)
	}
	wait := s.interval()
	c.mu.Unlock()

	if changed {
		c.logEvent(ev)
	}
	for _, st := range lagChanges {
		if st.Lagging {
			c.log.Warn("replica excluded from reads", "server", st.Addr, "reason", st.Reason)
		} else {
			c.log.Info("replica readmitted to reads", "server", st.Addr, "lag_bytes", st.LagBytes, "lag_seconds", st.LagSeconds)
		}
	}
	c.reportExclusions(prev, snap)
	return wait, true
}

func (c *Checker) logEvent(ev event) {
	switch ev.kind {
	case eventDown:
		c.log.Warn("server marked down", "server", ev.addr, "role", roleName(ev.role), "reason", ev.reason)
	case eventUp:
		c.log.Info("server marked up", "server", ev.addr, "role", roleName(ev.role), "reason", ev.reason)
	case eventRole:
		c.log.Warn("server role changed", "server", ev.addr, "role", roleName(ev.role), "reason", ev.reason)
	}
}

// reportExclusions logs servers newly excluded or readmitted and tells the
// owner about servers that can no longer take traffic.
func (c *Checker) reportExclusions(prev, snap *Snapshot) {
	for _, a := range slices.Sorted(maps.Keys(snap.Servers)) {
		was, now := prev.Get(a), snap.Servers[a]
		if _, known := prev.Servers[a]; !known {
			was = Status{Up: true}
		}
		switch {
		case now.Excluded && (!was.Excluded || was.Reason != now.Reason):
			c.log.Error("server excluded: no traffic", "server", a, "reason", now.Reason)
		case was.Excluded && !now.Excluded:
			c.log.Warn("server no longer excluded", "server", a, "role", roleName(now.Role))
		}
		if was.Usable() && !now.Usable() && c.hooks.Unusable != nil {
			c.hooks.Unusable(a, now.Reason)
		}
	}
}

// checkDatabase returns the settings a check of addr connects with: the
// first database (by name) that lists it.
func (c *Checker) checkDatabase(addr string) (*config.Config, *config.Server, string, error) {
	c.mu.Lock()
	cfg := c.cfg
	c.mu.Unlock()
	for _, n := range slices.Sorted(maps.Keys(cfg.Databases)) {
		for _, srv := range cfg.Databases[n].Servers {
			if srv.Addr() == addr {
				return cfg, srv, cfg.Databases[n].DBName, nil
			}
		}
	}
	return nil, nil, "", fmt.Errorf("server %s is no longer configured", addr)
}

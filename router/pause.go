package router

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/wire"
)

// drainPoll is how often PAUSE, WAIT_CLOSE and shutdown look whether server
// connections are gone; they are admin commands, not the hot path.
const drainPoll = 20 * time.Millisecond

// databases returns the named databases, or every database for none; an
// unknown name is an error.
func (r *Router) databases(names []string) ([]string, error) {
	cfg := r.Config()
	if len(names) == 0 {
		for name := range cfg.Databases {
			names = append(names, name)
		}
		slices.Sort(names)
		return names, nil
	}
	for _, name := range names {
		if err := r.knownDatabase(name); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// Pause holds new work of the named databases (all for none) and waits
// until their transactions in flight have finished and their server
// connections are closed, so that their servers can restart. Held clients
// wait (up to timeouts.query_wait) instead of failing. If that takes longer
// than timeouts.pause or ctx ends, Pause undoes itself and fails: nothing
// stays paused half-way.
func (r *Router) Pause(ctx context.Context, names []string) error {
	dbs, err := r.databases(names)
	if err != nil {
		return err
	}
	r.admin.pauseMu.Lock()
	defer r.admin.pauseMu.Unlock()
	var paused []string
	for _, db := range dbs {
		if !r.pools.DatabasePaused(db) {
			r.pools.PauseDatabase(db)
			paused = append(paused, db)
		}
	}
	timeout := r.Config().Timeouts.Pause
	if err := r.drain(ctx, dbs, timeout, "timeouts.pause"); err != nil {
		for _, db := range paused {
			r.pools.ResumeDatabase(db)
		}
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.CodeQueryCanceled {
			we.Message += "; nothing was paused"
		}
		return err
	}
	r.log.Info("paused", "databases", dbs)
	return nil
}

// drain waits until the pools of dbs have no connection open.
func (r *Router) drain(ctx context.Context, dbs []string, timeout time.Duration, setting string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return r.waitPools(ctx, dbs, (*pool.Pool).Open, func(open int) error {
		return wire.Errorf(wire.CodeQueryCanceled,
			"%d server connections still in use after %s (%s)", open, timeout, setting).
			WithHint("Transactions in flight, or session-mode clients, hold them.")
	})
}

// waitPools polls the pools of dbs until count sums to 0 over them; when
// ctx ends first it returns late(the sum).
func (r *Router) waitPools(ctx context.Context, dbs []string, count func(*pool.Pool) int, late func(n int) error) error {
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		n := 0
		for _, db := range dbs {
			for _, p := range r.pools.DatabasePools(db) {
				n += count(p)
			}
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return late(n)
		case <-r.ctx.Done():
			return wire.Errorf(wire.CodeAdminShutdown, "pgswitch is shutting down")
		case <-t.C:
		}
	}
}

// Resume lets held work of the named databases (all for none) go on, on new
// server connections.
func (r *Router) Resume(names []string) error {
	dbs, err := r.databases(names)
	if err != nil {
		return err
	}
	r.admin.pauseMu.Lock()
	defer r.admin.pauseMu.Unlock()
	for _, db := range dbs {
		r.pools.ResumeDatabase(db)
	}
	r.log.Info("resumed", "databases", dbs)
	return nil
}

// Paused reports whether database db is paused (by PAUSE or KILL).
func (r *Router) Paused(db string) bool { return r.pools.DatabasePaused(db) }

// Reconnect closes the server connections of the named databases (all for
// none) once their clients release them; new work gets new connections.
func (r *Router) Reconnect(names []string) error {
	dbs, err := r.databases(names)
	if err != nil {
		return err
	}
	for _, db := range dbs {
		for _, p := range r.pools.DatabasePools(db) {
			p.Reconnect()
		}
	}
	return nil
}

// WaitClose waits until the connections RECONNECT marked are closed.
func (r *Router) WaitClose(ctx context.Context, names []string) error {
	dbs, err := r.databases(names)
	if err != nil {
		return err
	}
	return r.waitPools(ctx, dbs, (*pool.Pool).Reconnecting, func(n int) error {
		return wire.Errorf(wire.CodeQueryCanceled, "%d server connections still wait to close", n)
	})
}

// Kill disconnects every client and server connection of database db at
// once; its clients get 57P01. New work waits until Resume, as after Pause.
func (r *Router) Kill(db string) error {
	if err := r.knownDatabase(db); err != nil {
		return err
	}
	r.admin.pauseMu.Lock()
	defer r.admin.pauseMu.Unlock()
	r.pools.PauseDatabase(db)
	r.mu.Lock()
	var victims []*Session
	for _, s := range r.sessions {
		if s.startup["database"] == db {
			victims = append(victims, s)
		}
	}
	r.mu.Unlock()
	e := wire.Fatalf(wire.CodeAdminShutdown, "terminating connection due to administrator command (KILL %s)", db)
	for _, p := range r.pools.DatabasePools(db) {
		p.CloseAll(e) // a linked client hears it from its connection's pump
	}
	for _, s := range victims {
		s.kick(e)
	}
	for _, s := range victims {
		<-s.done // each tells its client and leaves, all at once
	}
	r.log.Info("killed", "database", db, "clients", len(victims))
	return nil
}

// Shutdown stops accepting clients, lets transactions in flight finish for
// up to timeout (new work is held), then closes like Close: remaining
// clients get 57P01.
func (r *Router) Shutdown(timeout time.Duration) {
	r.mu.Lock()
	lns := slices.Clone(r.lns)
	r.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	dbs, _ := r.databases(nil)
	for _, db := range dbs {
		r.pools.PauseDatabase(db)
	}
	if err := r.drain(context.Background(), dbs, timeout, "timeouts.shutdown"); err != nil {
		r.log.Warn("shutting down with transactions in flight", "err", err)
	}
	r.Close()
}

package router

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pgswitch/pgswitch/wire"
)

// drainPoll is how often Shutdown looks whether server connections are
// gone; it is not the hot path.
const drainPoll = 20 * time.Millisecond

// PauseDatabase holds new work of database db: its pools close idle
// server connections, open none and hand none out until ResumeDatabase;
// clients wait in line meanwhile (up to timeouts.query_wait). It does not
// wait for transactions in flight: the admin console's PAUSE does.
func (r *Router) PauseDatabase(db string) { r.pools.PauseDatabase(db) }

// ResumeDatabase lets held work of db go on, on new server connections.
func (r *Router) ResumeDatabase(db string) { r.pools.ResumeDatabase(db) }

// drain waits until the pools of dbs have no connection open, at most
// timeout.
func (r *Router) drain(dbs []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(r.ctx, timeout)
	defer cancel()
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		open := 0
		for _, db := range dbs {
			for _, p := range r.pools.DatabasePools(db) {
				open += p.Open()
			}
		}
		if open == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d server connections still in use after %s (timeouts.shutdown)", open, timeout)
		case <-t.C:
		}
	}
}

// Paused reports whether database db is paused (by PAUSE or KILL).
func (r *Router) Paused(db string) bool { return r.pools.DatabasePaused(db) }

// ReconnectDatabase closes the server connections of db once their clients
// release them; new work gets new connections.
func (r *Router) ReconnectDatabase(db string) {
	for _, p := range r.pools.DatabasePools(db) {
		p.Reconnect()
	}
}

// DisconnectDatabase closes every server connection of database db and
// disconnects its clients with e at once, and waits until their sessions
// have ended. It returns how many clients it disconnected. It does not
// pause db: a client that logs in meanwhile is not disconnected.
func (r *Router) DisconnectDatabase(db string, e *wire.Error) int {
	r.mu.Lock()
	var victims []*Session
	for _, s := range r.sessions {
		if s.names.database == db {
			victims = append(victims, s)
		}
	}
	r.mu.Unlock()
	for _, p := range r.pools.DatabasePools(db) {
		p.CloseAll(e) // a linked client hears it from its connection's pump
	}
	for _, s := range victims {
		s.kick(e)
	}
	for _, s := range victims {
		<-s.done // each tells its client and leaves, all at once
	}
	return len(victims)
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
	var dbs []string
	for name := range r.Config().Databases {
		dbs = append(dbs, name)
	}
	for _, db := range dbs {
		r.pools.PauseDatabase(db)
	}
	if err := r.drain(dbs, timeout); err != nil {
		r.log.Warn("shutting down with transactions in flight", "err", err)
	}
	r.Close()
}

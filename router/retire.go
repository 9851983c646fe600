package router

import (
	"context"
	"slices"
	"time"

	"github.com/pgswitch/pgswitch/wire"
)

// A router retires when a new pgswitch process has taken its listening
// sockets over (a binary upgrade): it accepts no more clients, serves the
// ones it has until they leave, and shuts down when the last one has left
// or timeouts.upgrade_drain has passed.

// retirePoll is how often Retire counts the clients left; it is not the
// hot path. retireLogEvery is how often it logs how many are left.
const (
	retirePoll     = 100 * time.Millisecond
	retireLogEvery = 30 * time.Second
)

// StopAccepting closes the router's listeners; the clients it has stay.
// A unix socket's file stays in place, for the process that serves it now.
func (r *Router) StopAccepting() {
	r.mu.Lock()
	lns := slices.Clone(r.lns)
	r.mu.Unlock()
	for _, ln := range lns {
		if u, ok := ln.(interface{ SetUnlinkOnClose(bool) }); ok { // net.UnixListener
			u.SetUnlinkOnClose(false)
		}
		ln.Close()
	}
}

// remaining returns how many clients are connected or logging in, and how
// many of them are the admin console's.
func (r *Router) remaining() (all, console int) {
	r.mu.Lock()
	all = r.clients
	r.mu.Unlock()
	r.admin.mu.Lock()
	console = len(r.admin.conns)
	r.admin.mu.Unlock()
	return all + r.startup.count(), console
}

// letConsoleGo ends the admin console's connections once each has been
// answered what it asked (ErrRetired): a console kept open, such as a
// metrics exporter's, then reconnects to the process that serves now
// instead of holding this one.
func (r *Router) letConsoleGo() {
	r.admin.mu.Lock()
	defer r.admin.mu.Unlock()
	if r.admin.gone {
		return
	}
	r.admin.gone = true
	close(r.admin.letGo)
	for conn := range r.admin.conns {
		conn.SetReadDeadline(time.Unix(1, 0)) // a command in flight is answered first
	}
}

// Retire stops accepting and serves the clients the router has until they
// have all left, or wait has passed (0: no limit), or ctx ends; then it
// shuts down as Shutdown does: transactions in flight get
// timeouts.shutdown, the clients left get 57P01. The admin console's
// connections stay while other clients do, then are let go (ErrRetired).
func (r *Router) Retire(ctx context.Context, wait time.Duration) {
	r.StopAccepting()
	var deadline <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(retirePoll)
	defer tick.Stop()
	logged := time.Now()
	for {
		all, console := r.remaining()
		if all == console {
			r.letConsoleGo()
		}
		if all == 0 {
			break
		}
		if time.Since(logged) >= retireLogEvery {
			r.log.Info("upgrade: this old process still serves clients", "clients", all-console, "console", console)
			logged = time.Now()
		}
		select {
		case <-tick.C:
		case <-deadline:
			r.log.Info("upgrade: clients still connected after timeouts.upgrade_drain; shutting down", "clients", all)
			r.Shutdown(r.Config().Timeouts.Shutdown)
			return
		case <-ctx.Done():
			r.Shutdown(r.Config().Timeouts.Shutdown)
			return
		case <-r.ctx.Done():
			return
		}
	}
	r.Shutdown(r.Config().Timeouts.Shutdown)
}

// SetCancelRelay makes relay receive the cancel requests for keys the
// router does not know: after an upgrade, they may belong to the clients
// an older process still serves. Set it before Serve.
func (r *Router) SetCancelRelay(relay func(wire.CancelKey)) {
	r.mu.Lock()
	r.cancelRelay = relay
	r.mu.Unlock()
}

// Cancel handles a cancel request another process relayed: as if a client
// had sent it here, except that a key no session has is ignored, not
// relayed again (the process that relayed it asked every older one).
func (r *Router) Cancel(k wire.CancelKey) {
	r.mu.Lock()
	s := r.sessions[k]
	r.mu.Unlock()
	if s != nil {
		r.cancelSession(s)
	}
}

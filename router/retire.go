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
// hot path.
const retirePoll = 100 * time.Millisecond

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

// connected returns how many clients are connected, the admin console's
// included; those still sending their startup packet are r.startup's.
func (r *Router) connected() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.clients
}

// Retire stops accepting and serves the clients the router has until they
// have all left, or wait has passed (0: no limit), or ctx ends; then it
// shuts down as Shutdown does: transactions in flight get
// timeouts.shutdown, the clients left get 57P01.
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
	for r.connected() > 0 || r.startup.count() > 0 { // logins under way count
		select {
		case <-tick.C:
		case <-deadline:
			r.log.Info("upgrade: clients still connected after timeouts.upgrade_drain; shutting down", "clients", r.connected())
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

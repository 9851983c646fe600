package router

import (
	"context"
	"errors"
	"time"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/track"
	"github.com/pgswitch/pgswitch/wire"
)

// errAnswered means the session answered the message itself: no server needed.
var errAnswered = errors.New("answered by pgswitch")

// lease takes a server connection for a unit of work classified as res,
// links it to the client (held until the batch is sent) and brings it to
// the client's session state.
func (s *Session) lease(res classify.Result, sql string) error {
	if err := s.beginUnit(); err != nil {
		return err
	}
	shape := res.Shape
	if s.b.retry.forcePrimary {
		res = classify.Result{Route: classify.Write, Hint: classify.HintPrimary, Reason: "write: a replica refused it as read-only (25006)"}
	}
	known := s.setNeedLSN(res)
	d, err := s.decideWaiting(res)
	if err != nil {
		return err
	}
	var verify *config.Server
	if d.behind {
		d, verify = s.catchUp(res, d, known)
	}
	c, d, err := s.acquire(d)
	if err != nil {
		return err
	}
	c.Link(s.client, s.mode == config.PoolModeSession)
	s.cur, s.curT = c, c.Answers().(*track.Server)
	s.curT.Link(s.state)
	s.held = true
	s.phase = leased
	s.server.Store(c)
	s.curRead = d.read && d.server != nil && s.view().standby(d.server)
	s.txnOpen, s.wrote = false, false
	s.routed(c, d, sql, shape)
	if s.b.units == 1 && (s.b.out == nil || len(*s.b.out) == 0) && len(s.b.local) == 0 {
		s.b.retry.fresh = true
	}
	if verify != nil && d.server == verify {
		// The replica answers how far it has replayed before it runs the
		// unit; write holds the unit's answer until that is known.
		s.b.retry.verify = s.needLSN
		if err := s.emit(track.Request{Type: 'Q', Edit: track.Capture, Verify: s.needLSN}, verifyMsg); err != nil {
			return err
		}
	}
	return s.syncUnit()
}

// switchLease lets cur finish what the client sent it, and ends the lease:
// the next unit needs another server (a write after reads on a replica).
func (s *Session) switchLease() {
	if s.b.out != nil && len(*s.b.out) > 0 {
		s.cur.Write(*s.b.out)
		*s.b.out = (*s.b.out)[:0]
	}
	c := s.cur
	s.unhold()
	c.WaitReleased(s.client)
	s.dropLease()
}

// decide routes a unit. Session-mode clients keep one server for their whole
// session, so they follow the database's route alone (auto: the primary).
func (s *Session) decide(res classify.Result) decision {
	var caughtUp func(*config.Server) bool
	if s.needLSN > 0 {
		caughtUp = s.caughtUpFn
	}
	return s.decideWith(res, caughtUp)
}

// decideWith routes a unit as decide does, with caughtUp as decide's.
func (s *Session) decideWith(res classify.Result, caughtUp func(*config.Server) bool) decision {
	if s.mode == config.PoolModeSession && s.db.Route != config.RouteReplica {
		return decision{server: s.view().primary, why: "session mode: the primary"}
	}
	if s.rule != nil {
		return s.decideRule(res, caughtUp)
	}
	return decide(res, s.db, s.view(), s.dbs.lb, s.loadFn, s.scratch(), caughtUp)
}

// decideWaiting routes a unit; with no server to take it (a write while no
// primary is up), it waits up to primary_wait for the topology to change.
func (s *Session) decideWaiting(res classify.Result) (decision, error) {
	d := s.decide(res)
	if d.server != nil {
		return d, nil
	}
	wait := s.cfg.Timeouts.PrimaryWait
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for d.server == nil {
		changed := s.r.topologyChanged()
		if d = s.decide(res); d.server != nil {
			break
		}
		select {
		case <-changed:
		case <-timer.C:
			return d, wire.Errorf(wire.CodeCannotConnectNow,
				"no primary server for database %q within primary_wait (%s): %s", s.db.Name, wait, noPrimaryReason(s.db, s.r.topology())).
				WithHint("Reads still work; retry the write once a primary is back or promoted.")
		case <-s.r.ctx.Done():
			return d, wire.Fatalf(wire.CodeAdminShutdown, "pgswitch is shutting down")
		}
		d = s.decide(res)
	}
	return d, nil
}

// load is a server's active connections for least_connections.
func (s *Session) load(srv *config.Server) int {
	return s.poolFor(srv).Stats().Active
}

// acquire takes a server connection for d. A read whose replica cannot be
// reached goes to the primary instead; a write has nowhere else to go.
func (s *Session) acquire(d decision) (*pool.Conn, decision, error) {
	p := s.poolFor(d.server)
	c, err := s.wait(p)
	if err == nil {
		return c, d, nil
	}
	var we *wire.Error
	if errors.As(err, &we) {
		return nil, d, we // the session's own end of the wait: cancel, KILL, shutdown
	}
	primary := s.view().primary
	if d.read && primary != nil && d.server != primary && !errors.Is(err, pool.ErrWaitTimeout) {
		s.r.log.Info("replica unreachable, reading from the primary", "server", d.server.Addr(), "err", err)
		d = decision{server: primary, read: true, why: d.why, then: d.then + "; replica unreachable"}
		p = s.poolFor(primary)
		if c, err = s.wait(p); err == nil {
			return c, d, nil
		}
		if errors.As(err, &we) {
			return nil, d, we
		}
	}
	if ce := (*wire.ServerCertError)(nil); errors.As(err, &ce) {
		s.r.log.Warn("server certificate refused", "server", p.Key().Server, "server_tls_mode", s.cfg.ServerTLSMode, "reason", ce.Error())
	}
	return nil, d, pool.AcquireError(p.Key(), s.cfg.Timeouts.QueryWait, err)
}

// errCancelled ends a wait for a server connection that the client's
// cancel request cut short.
var errCancelled = wire.Errorf(wire.CodeQueryCanceled, "canceling statement due to user request")

// wait takes a connection from p for the session, queueing up to
// query_wait; a cancel request from the client ends the wait with 57014.
func (s *Session) wait(p *pool.Pool) (*pool.Conn, error) {
	c, cancelled, err := s.queue.acquire(s.r.ctx, p, s.cfg.Timeouts.QueryWait)
	if e := s.kicked.Load(); e != nil && (cancelled || err != nil) {
		return nil, e // KILL or shutdown ended the wait
	}
	switch {
	case cancelled:
		if c != nil {
			c.Release() // handed over as the cancel came: the query never ran
		}
		return nil, errCancelled
	case err != nil && errors.Is(err, context.Canceled):
		return nil, wire.Fatalf(wire.CodeAdminShutdown, "pgswitch is shutting down")
	}
	return c, err
}

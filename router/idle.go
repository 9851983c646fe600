package router

import (
	"errors"
	"net"
	"os"
	"time"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/wire"
)

// Idle clients (timeouts.client_idle outside a transaction,
// timeouts.idle_transaction inside one) are disconnected as PostgreSQL's
// idle_session_timeout and idle_in_transaction_session_timeout do: with
// their FATAL, the transaction rolled back, the server connection back in
// its pool.

// idleLimit returns how long the client may idle now (0: no limit), the
// error that ends it then, and whether its server is still answering (the
// client is not idle yet: the limit only says when to look again).
func (s *Session) idleLimit() (time.Duration, *wire.Error, bool) {
	t := s.cfg.Timeouts
	if t.ClientIdle == 0 && t.IdleTransaction == 0 {
		return 0, nil, false
	}
	busy, inTxn := false, false
	if s.cur != nil {
		busy, inTxn = s.cur.StateFor(s.client)
	}
	if busy {
		return min(nonZero(t.ClientIdle), nonZero(t.IdleTransaction)), nil, true
	}
	if inTxn {
		return t.IdleTransaction, errIdleInTransaction, false
	}
	return t.ClientIdle, errIdleSession, false
}

// nonZero maps 0 (no limit) to the longest duration.
func nonZero(d time.Duration) time.Duration {
	if d == 0 {
		return 1<<63 - 1
	}
	return d
}

var (
	errIdleSession       = wire.Fatalf(wire.CodeIdleSessionTimeout, "terminating connection due to idle-session timeout")
	errIdleInTransaction = wire.Fatalf(wire.CodeIdleInTransactionSessionTimeout, "terminating connection due to idle-in-transaction timeout")
)

// waitMessage waits for the client's next message to begin. It returns
// the FATAL to end the session with when the client idled too long, park
// when the session parked instead (a client idle a while), or the read's
// error.
func (s *Session) waitMessage() (idle *wire.Error, park bool, err error) {
	if s.in.buffered() > 0 {
		return nil, false, nil
	}
	if s.idleLimited() {
		s.settleWait() // limits came with a reload since write
		idle, err := s.awaitNext()
		return idle, false, err
	}
	if !s.watches() {
		return nil, false, nil // the read of the message waits
	}
	for {
		s.setWaiting()
		// Waiting, so that a deferred guard's pump wakes the read from now
		// on if its unit does not pass; an outcome sent before is here.
		if s.settleSent() {
			continue
		}
		if _, err := s.in.br.Peek(1); err != nil {
			if park, err := s.woken(err); park || err != nil {
				return nil, park, err
			}
			continue
		}
		s.heard()
		return nil, false, nil
	}
}

// woken handles the end of a wait for the client's next message (in
// parkWaiting) that brought no message but err: the read's error, or a
// deadline that wakeWait set to ask the session to look up. It parks the
// session when it may (park), or returns err when the session ends; with
// neither, the session waits again.
func (s *Session) woken(err error) (park bool, failed error) {
	requested := s.endWait()
	if !requested || s.kicked.Load() != nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false, err
	}
	if s.settleSent() {
		return false, nil // the pump's wake: the unit runs again
	}
	if s.pend == nil && s.parkable() && s.parkNow() {
		return true, nil
	}
	// Not now (a transaction is open, or an answer is on its way): the
	// next scan asks again.
	return false, nil
}

// heard ends a wait for the client that its next message ended (endWait),
// and stamps the session as not idle for the parker's scan.
func (s *Session) heard() {
	s.endWait()
	s.seen.Store(s.r.parker.generation())
}

// watches reports whether the session's wait for its client may be asked
// to look up (parkWaiting): in transaction mode, between batches or with a
// deferred guard's outcome to come.
func (s *Session) watches() bool {
	return s.mode != config.PoolModeSession && (len(s.b.msgs) == 0 || s.pend != nil)
}

// setWaiting enters parkWaiting: wakeWait may ask the wait to look up.
func (s *Session) setWaiting() {
	s.parkMu.Lock()
	s.parkState = parkWaiting
	s.parkMu.Unlock()
}

// settleSent settles the batch kept for a deferred guard if its outcome
// has come; it reports whether it did.
func (s *Session) settleSent() bool {
	if s.pend == nil {
		return false
	}
	select {
	case o := <-s.pend:
		s.endWait() // the pump's wake may have come too
		s.settle(o)
		return true
	default:
		return false
	}
}

// endWait ends parkWaiting and reports whether wakeWait asked the session
// to look up, undoing the deadline it set.
func (s *Session) endWait() (requested bool) {
	s.parkMu.Lock()
	requested = s.parkState == parkRequested
	s.parkState = parkBusy
	s.parkMu.Unlock()
	if requested {
		s.readDeadlineOff()
	}
	return requested
}

// idleLimited reports whether the client's reads wait with idle limits
// (awaitNext).
func (s *Session) idleLimited() bool {
	return s.idleTimed || s.cfg.Timeouts.ClientIdle != 0 || s.cfg.Timeouts.IdleTransaction != 0
}

// parkable reports whether the session may give its goroutine up while it
// waits: transaction mode, no server connection, nothing half-sent.
func (s *Session) parkable() bool {
	if s.mode == config.PoolModeSession || len(s.b.msgs) > 0 || len(s.b.local) > 0 || s.extOpen || s.copyIn || s.kicked.Load() != nil {
		return false
	}
	if s.cur != nil {
		if s.cur.LinkedTo(s.client) {
			return false // a transaction, a pin, or an answer on its way
		}
		s.switchLease() // the last unit's lease ended already
	}
	return true
}

// parkNow parks the session: its buffers go, and its connection waits in
// the parker's epoll set. False if it could not park.
func (s *Session) parkNow() bool {
	s.b.buf, s.b.msgs = nil, nil
	s.busy = nil // caches and the guard: made again on waking
	s.in = clientReader{}
	s.queue.release()
	idleIO(s.conn)
	s.parkMu.Lock()
	s.parkState = parkParked
	s.parkMu.Unlock()
	s.r.wg.Add(1) // for the goroutine that resumes the session
	if !s.r.parker.park(s) {
		s.r.wg.Done()
		s.parkMu.Lock()
		s.parkState = parkBusy
		s.parkMu.Unlock()
		s.in = newClientReader(s.conn)
		return false
	}
	if s.kicked.Load() != nil {
		s.r.parker.unpark(s) // kicked while parking: its kick found nothing to wake
	}
	return true
}

// idleIO lets the raw reads' and writes' state of a client connection go
// (internal/rawsock) while its session parks: about 180 bytes a client.
func idleIO(c net.Conn) {
	for {
		switch v := c.(type) {
		case interface{ Idle() }:
			v.Idle()
			return
		case interface{ Unwrap() net.Conn }:
			c = v.Unwrap()
		default:
			return
		}
	}
}

// readDeadlineOff undoes the deadline a park request set, without undoing
// a kick's.
func (s *Session) readDeadlineOff() {
	s.conn.SetReadDeadline(time.Time{})
	if s.kicked.Load() != nil {
		s.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// awaitNext waits for the client's next message to begin, as long as the
// client may idle. It returns the FATAL to end the session with when the
// client idled too long, or the read's error.
func (s *Session) awaitNext() (*wire.Error, error) {
	for {
		limit, e, busy := s.idleLimit()
		if limit == 0 {
			s.readDeadline(time.Time{})
			return nil, nil
		}
		s.readDeadline(time.Now().Add(limit))
		_, err := s.in.br.Peek(1)
		switch {
		case err == nil:
			// A message is on its way: the rest of it has no limit.
			s.readDeadline(time.Time{})
			return nil, nil
		case s.kicked.Load() != nil || !errors.Is(err, os.ErrDeadlineExceeded):
			return nil, err
		}
		if _, again, stillBusy := s.idleLimit(); !busy && !stillBusy && again == e {
			return e, nil
		}
		// The server was answering, or the transaction ended: look again.
	}
}

// readDeadline sets the client's read deadline for the idle limits,
// without undoing a kick's.
func (s *Session) readDeadline(t time.Time) {
	if t.IsZero() && !s.idleTimed {
		return
	}
	s.idleTimed = !t.IsZero()
	s.client.Conn().SetReadDeadline(t)
	if s.kicked.Load() != nil {
		s.client.Conn().SetReadDeadline(time.Unix(1, 0))
	}
}

// idleOut ends the session of a client that idled too long: its
// transaction is rolled back and the server connection given back, then
// the client gets e.
func (s *Session) idleOut(e *wire.Error) {
	s.r.log.Info("client idled too long", "user", s.user.Name, "database", s.db.Name, "code", e.Code)
	s.end()
	s.client.SendError(e)
}

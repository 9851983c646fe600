// Read-your-writes (routing.consistency causal and session): the WAL
// position a read must see (the mark, read on the primary behind each
// write), and how a read gets to a replica that has replayed it: one known
// to have, one checked in the same round trip as the read, or one waited
// for; else the primary.

package router

import (
	"math"
	"sync/atomic"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/health"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/track"
	"github.com/pgswitch/pgswitch/wire"
)

// unknownMark stands for a write whose WAL position could not be read: no
// replica is known to have replayed it.
const unknownMark = math.MaxInt64

// readYourWrites reports whether reads must see earlier writes.
func (s *Session) readYourWrites() bool {
	return s.mode == config.PoolModeTransaction && s.cfg.Routing.Consistency != config.ConsistencyEventual
}

// setNeedLSN sets how far a replica must have replayed to serve a unit
// classified as res that may read on one: past every write the read must
// see (routing.consistency). It reports whether that position is known.
func (s *Session) setNeedLSN(res classify.Result) bool {
	s.needLSN = 0
	if !s.readYourWrites() {
		return true
	}
	if w, _ := wantFor(res, s.db.Route); w != wantReplica {
		return true
	}
	var lsn int64
	var ok bool
	if s.cfg.Routing.Consistency == config.ConsistencySession {
		lsn, ok = s.state.Mark()
	} else {
		lsn, ok = s.dbs.mark.Get()
	}
	if !ok {
		s.needLSN = unknownMark
		return false
	}
	s.needLSN = lsn
	return true
}

// caughtUp reports whether srv has replayed as far as the unit being
// routed needs.
func (s *Session) caughtUp(srv *config.Server) bool {
	return s.r.replay.Known(srv.Addr()) >= s.needLSN
}

// catchUp routes a read no replica is known to have replayed far enough
// for (d, which chose the primary): to a replica behind a check of its
// position (returned as verify), while such checks usually pass; else it
// waits for one to catch up.
func (s *Session) catchUp(res classify.Result, d decision, known bool) (_ decision, verify *config.Server) {
	if v := s.verifiable(res, known); v.server != nil {
		return v, v.server
	}
	return s.waitCaughtUp(res, d, known), nil
}

// waitCaughtUp waits up to causal_wait for a fit replica to replay what
// the read must see (d says none has yet), polling their positions; it
// returns the decision then: that replica, or the primary.
func (s *Session) waitCaughtUp(res classify.Result, d decision, known bool) decision {
	st := &s.dbs.counters.stats
	if known {
		addrs := fitReplicas(nil, s.view(), s.ruleServers())
		if _, ok := s.r.replay.Wait(addrs, s.needLSN, s.cfg.Routing.CausalWait); ok {
			if again := s.decide(res); again.server != nil && !again.behind {
				st.CausalWaits.Add(1)
				return again
			}
		}
	}
	st.CausalPrimary.Add(1)
	return d
}

var verifyMsg = wire.AppendQuery(nil, health.ReplayQuery)

// verifiable returns, for a read no replica is known to have caught up
// for, a replica to run it on anyway, behind a check of the replica's
// replay position that refuses the unit if the replica is behind: the
// answer of that check costs no round trip, while a poll does. Only a unit
// that can run again unseen qualifies (the batch's only unit, complete,
// not a retry) and only one of plain reads: one that begins a transaction
// or changes session state must not run on a server it then leaves.
func (s *Session) verifiable(res classify.Result, known bool) decision {
	if !known || s.b.retry.rerunning || res.Kind != 0 || s.b.units != 1 ||
		(s.b.out != nil && len(*s.b.out) > 0) || len(s.b.local) > 0 || !s.unitEndsBatch() || !s.dbs.checks.worth() {
		return decision{}
	}
	d := s.decideWith(res, nil)
	if !d.read || d.server == nil || s.r.topology().Get(d.server.Addr()).Role != config.RoleReplica {
		return decision{}
	}
	d.then += "; checked that the replica replayed the writes it must see"
	return d
}

// unitEndsBatch reports whether the unit starting at the message being
// handled is the rest of the batch, complete: a Query, or extended-protocol
// messages up to a Sync with no Flush among them.
func (s *Session) unitEndsBatch() bool {
	msgs := s.b.msgs[s.b.at:]
	for i, m := range msgs {
		switch m.typ {
		case 'Q', 'S':
			return i == len(msgs)-1
		case 'F', 'H', 'd', 'c', 'f':
			return false
		}
	}
	return false
}

// verified learns from a checked read how far its replica has replayed,
// and counts how the check went.
func (s *Session) verified(addr string, outcome track.Outcome) {
	if lsn := s.curT.Replayed(); lsn > 0 {
		s.r.replay.Observe(addr, lsn)
	}
	st := &s.dbs.counters.stats
	switch outcome {
	case track.Passed:
		st.CausalChecked.Add(1)
		s.dbs.checks.note(true)
	case track.Behind:
		st.CausalBehind.Add(1)
		s.dbs.checks.note(false)
	}
}

// checkOdds follows how often checks find the replica behind, as a moving
// average over the last checks or so. A check that passes saves the read a
// wait (polls, and a millisecond or more); one that fails costs a check and
// the read run twice besides that wait, which pays while no more than about
// half of them fail: bench/consistency on a loaded machine saw up to half
// fail and causal's TPS go from 0.75× eventual's to 0.81× with checks kept
// up to 50 % failed (20 % before). Replicas fall behind as a block (load, a long replay),
// so checks stop then, but for one in probeEvery reads that would have
// had one, so that the odds are seen to come back.
type checkOdds struct {
	miss  atomic.Int64  // share of failed checks, in 1/1024ths
	reads atomic.Uint64 // reads that could have had a check
}

const (
	missAllowed = 1024 / 2 // checks stop above 50 % failed
	missWeight  = 16       // the average's window, in checks
	probeEvery  = 16
)

// worth reports whether the next read that could have a check should.
func (o *checkOdds) worth() bool {
	n := o.reads.Add(1)
	return o.miss.Load() <= missAllowed || n%probeEvery == 0
}

// note counts a check's outcome.
func (o *checkOdds) note(passed bool) {
	x := int64(1024)
	if passed {
		x = 0
	}
	for {
		old := o.miss.Load()
		if o.miss.CompareAndSwap(old, old+(x-old)/missWeight) {
			return
		}
	}
}

// Retries of a unit refused before any of its answer reached the client:
// on the primary after a replica refused it as read-only (25006), with its
// statements prepared afresh after a schema change made their plans stale
// (0A000). Whether to retry is router policy: the tracker holds the answer
// back and asks policy about the first error.

package router

import (
	"encoding/binary"

	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/track"
	"github.com/pgswitch/pgswitch/wire"
)

// retryState is what a batch's handling learned about whether its unit may
// run again.
type retryState struct {
	fresh        bool // the batch's only unit took a new lease from its first message
	streamed     bool // Flush or COPY data: the answer is not one unit's
	describes    bool // it asks for a statement's description
	pinned       bool // it pinned the client
	rerunning    bool // this is the retry: no second one
	forcePrimary bool // while rerunning: the primary, whatever the classification
	// verify: a check of the replica's replay position precedes the unit,
	// which must see this position (read-your-writes); the unit is guarded.
	verify int64
}

// guardable reports whether the batch's unit may be retried, so that its
// answer must be held back until it is known to pass.
func (r *retryState) guardable(s *Session) bool {
	if !r.fresh || r.streamed || r.pinned || r.rerunning || s.b.units != 1 || !unitComplete(s.b.msgs) {
		return false
	}
	return s.curRead || len(s.b.used) > 0
}

// unitComplete reports whether msgs end a unit: the server answers them in
// full without waiting for more from the client.
func unitComplete(msgs []span) bool {
	if len(msgs) == 0 {
		return false
	}
	last := msgs[len(msgs)-1].typ
	return last == 'Q' || last == 'S'
}

// policy decides about a guarded unit's first error: a replica's read-only
// refusal of a read is retried on the primary, a stale plan with the
// statement prepared afresh.
func (s *Session) policy(code, message []byte) track.Outcome {
	switch {
	case s.curRead && string(code) == wire.CodeReadOnlySQLTransaction:
		return track.Refused
	case len(s.b.used) > 0 && track.IsStalePlan(code, message):
		return track.Stale
	}
	return track.Passed
}

// rerun runs the batch just refused again. Nothing of the refused answer
// reached the client.
func (s *Session) rerun(outcome track.Outcome) {
	for _, name := range s.b.added {
		s.state.DropStmt(name) // its Parse comes again
	}
	switch outcome {
	case track.Behind:
		// The replica had not replayed what the read must see: wait for one
		// that has, or read on the primary.
	case track.Stale:
		for _, u := range s.b.used {
			if name := s.usedName(u); s.state.Stmt(name) == u.st {
				s.state.AddStmt(name, s.renew(u.st))
			}
		}
		if !describesResult(s.b.buf, s.b.msgs) {
			// The client decodes rows with a description it cached: rows of
			// the new shape would break it. Tell it, as PostgreSQL would; its
			// next Parse prepares the statement afresh.
			e := wire.Errorf(wire.CodeFeatureNotSupported, "cached plan must not change result type").
				WithHint("The table changed; prepare the statement again.")
			s.client.Write(wire.AppendReadyForQuery(e.AppendResponse(nil), 'I'))
			return
		}
		s.r.log.Info("statement plan stale after a schema change; preparing it again", "database", s.db.Name)
	case track.Refused:
		write := classify.Result{Route: classify.Write, Reason: "write: a replica refused it as read-only (25006)"}
		for _, u := range s.b.used {
			if name := s.usedName(u); s.state.Stmt(name) == u.st {
				st := *u.st
				st.Res = write
				s.state.AddStmt(name, &st)
			}
		}
		if first := s.b.msgs[0]; first.typ == 'Q' {
			s.dbs.classifier.Remember(cstring(s.b.buf[first.start+wire.HeaderSize:first.end]), write)
		} else if first.typ == 'P' {
			_, text, _ := parseBody(s.b.buf[first.start:first.end])
			s.dbs.classifier.Remember(text, write)
		}
		s.r.log.Info("replica refused a read as read-only; retrying on the primary", "database", s.db.Name)
	}
	s.b.used, s.b.added = s.b.used[:0], s.b.added[:0]
	s.b.units = 0
	s.extOpen = false
	s.b.retry = retryState{rerunning: true, forcePrimary: outcome == track.Refused}
	for i, m := range s.b.msgs {
		s.b.at = i
		if err := s.handle(m); err != nil {
			break
		}
	}
	s.write() // not guarded (rerunning): never deferred
}

// describesResult reports whether a batch asks for its rows' description
// (Describe) and leaves result formats to one code for all columns, so that
// rows of a new shape after a schema change are what the client expects.
func describesResult(batch []byte, msgs []span) bool {
	described := false
	for _, m := range msgs {
		body := batch[m.start+wire.HeaderSize : m.end]
		switch m.typ {
		case 'D':
			described = true
		case 'B':
			if n, ok := bindResultFormats(body); !ok || n > 1 {
				return false
			}
		}
	}
	return described
}

// bindResultFormats returns the number of result format codes of a Bind.
func bindResultFormats(b []byte) (int, bool) {
	_, b = splitCString(b) // portal
	_, b = splitCString(b) // statement
	u16 := func() (int, bool) {
		if len(b) < 2 {
			return 0, false
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		return n, true
	}
	n, ok := u16()
	if !ok || len(b) < 2*n {
		return 0, false
	}
	b = b[2*n:]
	if n, ok = u16(); !ok {
		return 0, false
	}
	for range n {
		if len(b) < 4 {
			return 0, false
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l > 0 {
			if len(b) < l {
				return 0, false
			}
			b = b[l:]
		}
	}
	return u16()
}

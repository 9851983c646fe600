package track

import (
	"bytes"
	"encoding/binary"

	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/wire"
)

// Outcome is how a guarded unit's answer began.
type Outcome uint8

const (
	// Passed: the answer is going to the client.
	Passed Outcome = iota
	// Refused: the server refused the unit as read-only before any of its
	// answer reached the client; it may run elsewhere.
	Refused
	// Stale: a prepared statement's plan no longer fits its result after a
	// schema change, and nothing reached the client; it may run again with
	// the statement prepared afresh.
	Stale
	// Failed: the connection was lost.
	Failed
	// Behind: the replica had not replayed what the unit must see (a
	// Verify request before it said so); its answer was discarded, and it
	// may run elsewhere.
	Behind
)

// Guard holds a unit's answer back until its first telling message. A
// sender keeps one and installs it (Server.Guard) for each unit it guards,
// one at a time: the next may go only once the last one's outcome is taken.
// Reusing it keeps the held answer's buffer and the channel, which were
// made anew for every guarded unit (every read on a replica).
type Guard struct {
	policy   func(code, message []byte) Outcome
	wake     func() // after an outcome other than Passed is sent; may be nil
	ch       chan Outcome
	held     []byte
	refusing bool // discarding the refused unit's answer up to its ReadyForQuery
	outcome  Outcome
	discard  []byte
}

// NewGuard returns a guard whose policy, told the SQLSTATE and message of
// an ErrorResponse that begins the client's answer, says whether the unit
// passed. wake, if not nil, is called after an outcome other than Passed is
// sent (from the pump's goroutine, with the record locked): a sender that
// goes on reading its client while the answer begins is told to look, since
// the client will not write until its answer comes.
func NewGuard(policy func(code, message []byte) Outcome, wake func()) *Guard {
	return &Guard{policy: policy, wake: wake, ch: make(chan Outcome, 1)}
}

// Guard holds back the answer to the unit about to be sent until g's
// policy says whether it passed. A refused unit's answer is discarded up
// to its ReadyForQuery, and then the outcome is sent on the channel
// returned. The sender must take the outcome before it sends anything
// more, and before it installs g again.
func (s *Server) Guard(g *Guard) <-chan Outcome {
	g.held, g.discard = kept(g.held), kept(g.discard)
	g.refusing, g.outcome = false, Passed
	s.mu.Lock()
	s.guard = g
	s.mu.Unlock()
	return g.ch
}

// kept empties a guard's buffer for its next unit; a large answer's
// buffer is let go rather than kept for ever.
func kept(b []byte) []byte {
	if cap(b) > 64<<10 {
		return nil
	}
	return b[:0]
}

// Lost tells a waiting guard that the connection is gone.
func (s *Server) Lost() {
	s.mu.Lock()
	g := s.guard
	s.guard = nil
	s.mu.Unlock()
	if g != nil {
		g.send(Failed)
	}
}

// send delivers the outcome, and wakes the sender when the unit did not
// pass. wake is read first: once the outcome is taken, the sender may
// install g again.
func (g *Guard) send(o Outcome) {
	wake := g.wake
	g.ch <- o
	if o != Passed && wake != nil {
		wake()
	}
}

// decisive reports whether a message of type typ tells how a unit went;
// acknowledgements and descriptions do not.
func decisive(typ byte) bool {
	switch typ {
	case '1', '2', '3', 't', 'n', 'T', 'S', 'N', 'A':
		return false
	}
	return true
}

// Answer is told each message a server sends while a client is linked,
// and appends to out what the client gets for it: the message itself
// unless its request's Edit drops it, a substitute in its place. msg is the
// whole message, header included; it is nil only for a DataRow or CopyData
// too large to hand over, which ends no request (Verdict.Stream then says
// whether to forward it). It implements pool.Answers.
func (s *Server) Answer(out []byte, typ byte, msg []byte) ([]byte, pool.Verdict) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var v pool.Verdict
	h := s.headLocked()
	edit := Pass
	if h != nil {
		edit = h.Edit
	}
	if typ == 'S' || typ == 'A' {
		// Parameter changes and notifications are the client's, whatever
		// they answer, but for pgswitch's own reads.
		if edit != Capture {
			out = append(out, msg...)
		}
		return out, v
	}
	g := s.guard
	if g != nil && !g.refusing && edit != Swallow && edit != Capture && decisive(typ) {
		if typ == 'E' && msg != nil {
			body := msg[wire.HeaderSize:]
			if o := g.policy(wire.ErrorField(body, 'C'), wire.ErrorField(body, 'M')); o != Passed {
				g.refusing, g.outcome = true, o
				g.held = g.held[:0]
			}
		}
		if !g.refusing {
			out = append(out, g.held...)
			s.guard = nil
			g.ch <- Passed
			g = nil
		}
	}
	sink := &out
	if g != nil {
		sink = &g.held
		if g.refusing {
			g.discard = g.discard[:0]
			sink = &g.discard
		}
	}
	switch typ {
	case '1', '2', '3':
		if h != nil && h.Type == answered(typ) {
			r := s.popLocked()
			if typ == '1' && r.Stmt != "" && s.db != nil {
				s.db.Parsed(r.Stmt)
			}
			s.endLocked(sink, r, msg)
			return out, v
		}
	case 'T', 'n':
		if h != nil && h.Type == 'D' {
			s.endLocked(sink, s.popLocked(), msg)
			return out, v
		}
	case 'I', 's':
		if h != nil && h.Type == 'E' {
			s.endLocked(sink, s.popLocked(), msg)
			return out, v
		}
	case 'C':
		if h != nil {
			s.completedLocked(h, msg)
			if h.Type == 'E' {
				s.endLocked(sink, s.popLocked(), msg)
				return out, v
			}
		}
	case 'D':
		if h != nil && h.Edit == Capture {
			s.capture.row(msg)
			return out, v
		}
	case 'E':
		s.errorLocked(sink, h, msg)
		return out, v
	case 'Z':
		// A Verify that fails starts refusing at its own ReadyForQuery; the
		// outcome waits for the unit's.
		refusing := g != nil && g.refusing
		v.Keep = s.readyLocked(sink, msg)
		if refusing {
			s.guard = nil
			g.send(g.outcome)
		}
		return out, v
	}
	// Part of the head request's answer (or, with none owed, the server's
	// own: a notice, say).
	if msg == nil {
		v.Stream = sink == &out && (h == nil || h.Edit == Pass)
		return out, v
	}
	if h == nil || h.Edit == Pass {
		*sink = append(*sink, msg...)
	}
	return out, v
}

// answered returns the request type whose answer a message of type typ ends.
func answered(typ byte) byte {
	switch typ {
	case '1':
		return 'P'
	case '2':
		return 'B'
	}
	return 'C'
}

func (s *Server) headLocked() *Request {
	if s.head == len(s.reqs) {
		return nil
	}
	return &s.reqs[s.head]
}

func (s *Server) popLocked() Request {
	r := s.reqs[s.head]
	s.reqs[s.head] = Request{} // drop references
	s.head++
	return r
}

// endLocked emits the message that ends r's answer, as r's Edit says.
func (s *Server) endLocked(sink *[]byte, r Request, msg []byte) {
	switch r.Edit {
	case Pass:
		*sink = append(*sink, msg...)
	case Substitute:
		*sink = append(*sink, r.Subst...)
	}
}

// completedLocked applies the effect of the statement a CommandComplete
// ends: the next of a Query's, or an Execute's.
func (s *Server) completedLocked(h *Request, msg []byte) {
	if len(h.Effects) == 0 {
		return
	}
	i := 0
	if h.Type == 'Q' {
		i = s.qi
		s.qi++
	}
	if i >= len(h.Effects) {
		return
	}
	tag := []byte(nil)
	if len(msg) > wire.HeaderSize {
		tag = msg[wire.HeaderSize:]
	}
	s.effectLocked(h.Effects[i], !h.Replay, tag)
}

// effectLocked applies a statement the server completed with tag.
func (s *Server) effectLocked(e Effect, client bool, tag []byte) {
	k := e.Kind
	cl := s.client
	if !client {
		cl = nil
	}
	switch {
	case k.Any(classify.KindRole):
		if k.Any(classify.KindSet) && cl != nil {
			cl.Pin("SET ROLE or SESSION AUTHORIZATION")
		}
	case k.Any(classify.KindSet):
		if e.SQL == "" {
			if cl != nil {
				cl.Pin("a SET pgswitch could not isolate")
			}
			return
		}
		s.noteLocked(change{kind: changeSet, name: e.Name, sql: e.SQL, client: client})
	case k.Any(classify.KindReset):
		if e.Name == "all" {
			s.noteLocked(change{kind: changeResetAll, client: client})
		} else {
			s.noteLocked(change{kind: changeReset, name: e.Name, client: client})
		}
	case k.Any(classify.KindDiscardAll):
		// Never inside a transaction block: it commits with this unit.
		s.noteLocked(change{kind: changeResetAll, client: client})
		s.stmts, s.sqlNames, s.unnamedBy = nil, nil, nil
		if cl != nil {
			cl.mu.Lock()
			cl.clearStmtsLocked()
			cl.mu.Unlock()
		}
	case k.Any(classify.KindPrepare):
		// Prepared statements are not transactional.
		if s.sqlNames == nil {
			s.sqlNames = map[string]string{}
		}
		s.sqlNames[e.Name] = e.SQL
		if cl != nil {
			cl.AddStmt(e.Name, &Stmt{Server: e.Name, Text: e.SQL, SQL: true,
				Res: classify.Result{Route: e.Route, Kind: classify.KindPrepare, Reason: "prepared with PREPARE"}})
		}
	case k.Any(classify.KindDeallocate):
		s.deallocateLocked(e.Name, cl)
	case k.Any(classify.KindSavepoint):
		s.noteLocked(change{kind: changeSavepoint, name: e.Name})
	case k.Any(classify.KindRelease):
		s.noteLocked(change{kind: changeRelease, name: e.Name})
	case k.Any(classify.KindRollbackTo):
		s.noteLocked(change{kind: changeRollbackTo, name: e.Name})
	case k.Any(classify.KindCommit):
		if bytes.HasPrefix(tag, []byte("COMMIT")) {
			s.endTxnLocked(true)
		} else {
			s.endTxnLocked(false) // COMMIT of a failed transaction says ROLLBACK
		}
	case k.Any(classify.KindRollback):
		s.endTxnLocked(false)
	}
	if k.Any(classify.KindDDL) {
		s.ddl = true
	}
}

// deallocateLocked drops statement name ("" for all) from the server and,
// when cl is set, from the client.
func (s *Server) deallocateLocked(name string, cl *Client) {
	if name == "" {
		s.stmts, s.sqlNames = nil, nil
		if cl != nil {
			cl.mu.Lock()
			cl.clearStmtsLocked()
			cl.mu.Unlock()
		}
		return
	}
	delete(s.sqlNames, name)
	if cl == nil {
		return
	}
	cl.mu.Lock()
	if st := cl.stmts[name]; st != nil {
		if !st.SQL {
			delete(s.stmts, st.Server) // the router sent DEALLOCATE of its server name
		}
		cl.dropStmtLocked(name)
	}
	cl.mu.Unlock()
}

// endTxnLocked ends the open transaction: its changes last if it committed.
func (s *Server) endTxnLocked(committed bool) {
	if committed {
		s.commitLocked()
		if s.ddl && s.db != nil {
			s.db.CatalogChanged()
		}
	}
	s.txn = s.txn[:0]
	s.failed, s.ddl = false, false
}

// errorLocked handles an ErrorResponse to the head request h.
func (s *Server) errorLocked(sink *[]byte, h *Request, msg []byte) {
	if msg == nil {
		return
	}
	body := msg[wire.HeaderSize:]
	code := wire.ErrorField(body, 'C')
	if s.db != nil && IsStalePlan(code, wire.ErrorField(body, 'M')) {
		s.db.CatalogChanged()
	}
	if h == nil {
		*sink = append(*sink, msg...) // the server's own (FATAL at idle, say)
		return
	}
	s.failed = true
	switch h.Type {
	case 'Q', 'F':
		// The Query stops here; its ReadyForQuery follows.
		switch h.Edit {
		case Pass:
			*sink = append(*sink, msg...)
		case Capture:
			s.capture.err = string(code)
			s.capture.errMsg = append([]byte(nil), msg...)
		}
		return
	}
	// Extended protocol: the server skips everything up to Sync.
	r := s.popLocked()
	switch r.Edit {
	case Pass, Swallow:
		*sink = append(*sink, msg...)
	case Substitute:
		*sink = append(*sink, r.Subst...)
	}
	s.refusedLocked(r)
	for h := s.headLocked(); h != nil && h.Type != 'S'; h = s.headLocked() {
		s.refusedLocked(s.popLocked())
	}
}

// refusedLocked undoes what was recorded at sending r, which the server
// refused or skipped.
func (s *Server) refusedLocked(r Request) {
	if r.Type != 'P' {
		return
	}
	if r.Stmt != "" {
		delete(s.stmts, r.Stmt)
	}
	if r.Client != "" && s.client != nil {
		s.client.DropStmt(r.Client)
	}
	if r.Unnamed {
		s.unnamedBy = nil
	}
}

// readyLocked handles a ReadyForQuery: it ends the answer of the Sync or
// Query at the head, and with status idle the transaction. It reports
// whether the client stays pinned here.
func (s *Server) readyLocked(sink *[]byte, msg []byte) bool {
	status := byte('I')
	if len(msg) > wire.HeaderSize {
		status = msg[wire.HeaderSize]
	}
	var r Request
	found := false
	for h := s.headLocked(); h != nil; h = s.headLocked() {
		x := s.popLocked()
		if x.Type == 'S' || x.Type == 'Q' || x.Type == 'F' {
			r, found = x, true
			break
		}
		s.refusedLocked(x) // not answered: skipped
	}
	s.qi = 0
	switch {
	case (!found || r.Edit == Pass) && s.nextIsMarkLocked():
		if g := s.guard; g == nil {
			s.heldReady = append(s.heldReady[:0], msg...)
		}
	case !found, r.Edit == Pass:
		*sink = append(*sink, msg...)
	case r.Edit == Substitute:
		*sink = append(*sink, r.Subst...)
	case r.Edit == Capture && r.Verify > 0:
		s.verifyDoneLocked(r.Verify)
	case r.Edit == Capture && r.Mark:
		s.markDoneLocked()
		*sink = append(*sink, s.heldReady...)
		s.heldReady = s.heldReady[:0]
	case r.Edit == Capture:
		s.captureDoneLocked(r)
	}
	if status == 'I' {
		s.endTxnLocked(!s.failed)
	}
	return s.client != nil && s.client.Pinned() != ""
}

// IsStalePlan reports whether a server's error, by its SQLSTATE and
// message, says that a statement prepared before a catalog change no longer
// fits it: 0A000 (feature_not_supported) "cached plan must not change
// result type", or XX000 (internal_error) "cache lookup failed" for a plan
// naming an object dropped and made again behind pgswitch's back.
func IsStalePlan(code, message []byte) bool {
	switch string(code) {
	case wire.CodeFeatureNotSupported:
		return bytes.HasPrefix(message, staleMessage)
	case wire.CodeInternalError:
		return bytes.HasPrefix(message, cacheLookupFailed)
	}
	return false
}

var (
	staleMessage      = []byte("cached plan must not change result type")
	cacheLookupFailed = []byte("cache lookup failed")
)

// dataRowText returns the columns of a DataRow as text (NULL as "").
func dataRowText(msg []byte) []string {
	if len(msg) < wire.HeaderSize+2 {
		return nil
	}
	b := msg[wire.HeaderSize:]
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	out := make([]string, 0, n)
	for range n {
		if len(b) < 4 {
			return nil
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l < 0 {
			out = append(out, "")
			continue
		}
		if len(b) < l {
			return nil
		}
		out = append(out, string(b[:l]))
		b = b[l:]
	}
	return out
}

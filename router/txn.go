// The transaction-mode session: each client message is routed with its
// unit of work, renamed or prepared for, or answered by pgswitch.

package router

import (
	"bytes"
	"errors"
	"strings"
	"unsafe"

	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/track"
	"github.com/pgswitch/pgswitch/wire"
)

func extended(typ byte) bool {
	switch typ {
	case 'P', 'B', 'D', 'E', 'C', 'H':
		return true
	}
	return false
}

// answered reports whether the server answers a message of type typ.
func answered(typ byte) bool {
	switch typ {
	case 'P', 'B', 'D', 'E', 'C', 'S', 'Q', 'F':
		return true
	}
	return false
}

// handle sends one client message of the batch in transaction mode.
func (s *Session) handle(m span) error {
	if s.phase == skipping {
		if m.typ == 'S' {
			s.phase = idle
			s.extOpen = false
			s.b.local = wire.AppendReadyForQuery(s.b.local, 'I')
		}
		return nil
	}
	unitStart := m.typ == 'Q' || m.typ == 'F' || (extended(m.typ) && !s.extOpen)
	switch {
	case extended(m.typ):
		s.extOpen = true
	case m.typ == 'S':
		s.extOpen = false
	}
	if unitStart {
		s.b.units++
	}
	if s.cur != nil && !s.held {
		if s.cur.Hold(s.client) != nil {
			s.dropLease() // the last unit ended and the connection went back
		} else {
			s.held = true
		}
	}
	var err error
	switch m.typ {
	case 'Q':
		err = s.query(m)
	case 'P':
		err = s.parse(m, unitStart)
	case 'B':
		err = s.bind(m, unitStart)
	case 'D':
		err = s.describe(m, unitStart)
	case 'E':
		err = s.execute(m, unitStart)
	case 'C':
		err = s.closeMsg(m, unitStart)
	case 'S':
		err = s.sync(m)
	case 'H':
		err = s.flushMsg(m)
	case 'F':
		err = s.functionCall(m)
	default: // CopyData, CopyDone, CopyFail
		if s.cur != nil {
			s.b.retry.streamed = true
			err = s.emit(track.Request{Type: m.typ}, s.msg(m))
			if err == nil && m.typ != 'd' && s.copyIn {
				s.copyIn = false
				err = s.sendAfter() // the COPY's Query is complete
			}
		}
		// Else late COPY data after a failed COPY: PostgreSQL ignores it too.
	}
	if err == nil || errors.Is(err, errAnswered) {
		return nil
	}
	if s.cur != nil && errors.Is(err, pool.ErrUnlinked) {
		return err // the server connection was lost: its pump told the client
	}
	s.failLocal(m.typ, err)
	return nil
}

// msg returns the bytes of batch message m.
func (s *Session) msg(m span) []byte { return s.b.buf[m.start:m.end] }

// emit sends msg on cur with request r: the claim keeps the lease until the
// server answers, the request tells the pump what the answer is for.
func (s *Session) emit(r track.Request, msg []byte) error {
	if err := s.cur.Claim(s.client, r.Type); err != nil {
		return err
	}
	if answered(r.Type) {
		s.curT.Push(r)
	}
	if s.b.out == nil {
		s.b.out = outBufs.Get().(*[]byte)
	}
	*s.b.out = append(*s.b.out, msg...)
	return nil
}

// need makes sure a server connection serves the message: at the start of
// a unit of work (classified as res) the current one is brought to the
// client's state, or a new one leased; within a unit the current one goes on.
func (s *Session) need(res classify.Result, unitStart bool, sql string) error {
	if unitStart && extended(s.b.msgs[s.b.at].typ) {
		res = s.unitResult(res)
	}
	if unitStart {
		if err := s.applyRules(res); err != nil {
			return err
		}
	}
	if s.cur != nil {
		if !unitStart {
			return nil
		}
		if s.state.Pinned() == "" {
			switch {
			case s.cur.AtRest():
				// The last unit is over (its answer is on its way; the
				// lease ends as soon as the pump has written it): this one
				// is routed afresh.
				s.switchLease()
			case s.curRead:
				if w, _ := wantFor(res, s.db.Route); w != wantReplica || s.b.retry.forcePrimary || s.ruleMoves(res) {
					// Linked to a replica by units still in flight; this
					// one needs the primary. Let the replica finish.
					s.switchLease()
				}
			}
		}
		if s.cur != nil {
			s.count(s.cur.Addr(), s.curRead)
			return s.syncUnit()
		}
	}
	return s.lease(res, sql)
}

// incompleteUnit is how the rest of an extended-protocol unit whose Sync
// has not arrived counts: it may write.
var incompleteUnit = classify.Result{Route: classify.Write, Reason: "write: the unit goes on past what has arrived (no Sync yet)"}

// unitResult classifies the extended-protocol unit that starts with the
// message being sent, classified alone as first: every statement it
// parses or binds up to its Sync counts, so that a batch that reads and
// then writes goes to the primary. A unit whose Sync is not in the batch
// (pipelining, a Flush in the middle) may write anything next: it counts
// as a write.
func (s *Session) unitResult(first classify.Result) classify.Result {
	res := first
	typ := s.b.msgs[s.b.at].typ
	skip := typ == 'P' // first is that Parse's result; a Bind's is not even looked up
	complete := s.unitStatements(typ == 'B', func(_ string, r classify.Result, _ bool) bool {
		if skip {
			skip = false
			return true
		}
		res = classify.Combine(res, r)
		return true
	})
	if complete {
		return res
	}
	return classify.Combine(res, incompleteUnit)
}

// unitStatements calls fn, until it returns false, with each statement of
// the unit that starts at the message being sent: a Query's text, or what
// an extended-protocol unit parses or binds up to its Sync (a Bind of a
// statement pgswitch has not seen as unknownStmt, not known, with no
// text). It reports whether the unit's end is in the batch. With skipBind,
// a Bind that starts the unit is left out: the caller has its statement.
func (s *Session) unitStatements(skipBind bool, fn func(text string, res classify.Result, known bool) bool) (complete bool) {
	unnamedText, unnamed, hasUnnamed := s.unnamed.text, s.unnamed.res, len(s.unnamed.msg) > 0
	for i, m := range s.b.msgs[s.b.at:] {
		msg := s.b.buf[m.start:m.end]
		switch m.typ {
		case 'Q':
			if i == 0 {
				text := cstring(msg[wire.HeaderSize:])
				fn(text, s.classifyText(text), true)
			}
			return true
		case 'S', 'F':
			return true
		case 'P':
			name, text, _ := parseBody(msg)
			r := s.classifyText(text)
			if len(name) == 0 {
				unnamedText, unnamed, hasUnnamed = text, r, true
			}
			if !fn(text, r, true) {
				return true
			}
		case 'B':
			if i == 0 && skipBind {
				continue
			}
			_, name, _ := bindNames(msg)
			var ok bool
			switch st := s.state.Stmt(string(name)); {
			case len(name) == 0 && hasUnnamed:
				ok = fn(unnamedText, unnamed, true)
			case len(name) > 0 && st != nil:
				ok = fn(st.Text, st.Res, true)
			default:
				ok = fn("", unknownStmt, false)
			}
			if !ok {
				return true
			}
		}
	}
	return false
}

// failLocal answers message typ with err, pgswitch's own error: with no
// server linked the session writes it; with one, the server is made to fail
// the same way (answer). An extended-protocol message makes the rest of
// the batch up to Sync be skipped, as PostgreSQL does.
func (s *Session) failLocal(typ byte, err error) {
	e := wire.AsError(err)
	if e.IsFatal() {
		s.fatal(e)
		return
	}
	s.r.log.Info("unit of work failed", "user", s.user.Name, "database", s.db.Name, "code", e.Code, "err", err)
	if s.cur != nil {
		s.failHere(typ, e)
		return
	}
	s.b.local = e.AppendResponse(s.b.local)
	switch typ {
	case 'Q', 'S', 'F':
		s.b.local = wire.AppendReadyForQuery(s.b.local, 'I')
	default:
		s.phase = skipping
	}
}

// failHere makes the linked server fail where the client's message of type
// typ would have: a request that fails for sure, answered with e. The
// server then skips to Sync and fails an open transaction, exactly as it
// would after the client's own error.
func (s *Session) failHere(typ byte, e *wire.Error) error {
	if err := s.emit(track.Request{Type: 'D', Edit: track.Substitute, Subst: e.AppendResponse(nil)}, describeNone); err != nil {
		return err
	}
	if typ == 'Q' || typ == 'F' {
		// A simple Query ends with its ReadyForQuery.
		return s.emit(track.Request{Type: 'S'}, syncMsg)
	}
	return nil
}

// query sends a simple Query.
func (s *Session) query(m span) error {
	msg := s.msg(m)
	text := cstring(msg[wire.HeaderSize:])
	res := s.classifyText(text)
	st, single := res.Single()
	if single && st.Kind.Any(classify.KindExecute) {
		if def := s.state.Stmt(st.Name); def != nil {
			res.Route, res.Reason = def.Res.Route, def.Res.Reason // EXECUTE runs as what it runs
		}
	}
	if err := s.need(res, true, text); err != nil {
		return err
	}
	s.unnamed.msg = s.unnamed.msg[:0] // a simple Query destroys the unnamed statement
	if single {
		switch {
		case st.Kind.Any(classify.KindPrepare):
			def := s.state.Stmt(st.Name)
			if def != nil && !def.SQL {
				// The name is taken by a protocol-level statement, which the
				// server knows under another name.
				return s.failHere('Q', duplicateStatement(st.Name))
			}
			if def == nil {
				if e := s.stmtRoom(st.Name, len(text)); e != nil {
					return s.failHere('Q', e)
				}
			}
		case st.Kind.Any(classify.KindDeallocate) && st.Name != "":
			if def := s.state.Stmt(st.Name); def != nil && !def.SQL {
				msg = wire.AppendQuery(nil, "DEALLOCATE "+track.QuoteIdent(def.Server))
			}
		}
	}
	effects := track.Effects(res, text)
	s.pinFor(res)
	s.noteRun(res)
	if err := s.emit(track.Request{Type: 'Q', Effects: effects}, msg); err != nil {
		return err
	}
	s.noteAfter(res, effects)
	if res.Kind.Any(classify.KindCopyFrom) {
		// The client's COPY data comes next: nothing may come between.
		s.copyIn = true
		return nil
	}
	return s.sendAfter()
}

// parse sends a Parse.
func (s *Session) parse(m span, unitStart bool) error {
	msg := s.msg(m)
	name, text, types := parseBody(msg)
	res := s.classifyText(text)
	if !wellFormedParse(msg) {
		if err := s.need(unknownStmt, unitStart, ""); err != nil {
			return err
		}
		return s.emit(track.Request{Type: 'P'}, msg)
	}
	if len(name) == 0 {
		if err := s.need(res, unitStart, text); err != nil {
			return err
		}
		s.unnamed.n++
		if cap(s.unnamed.msg) > batchFlushAt && len(msg) < cap(s.unnamed.msg)/4 {
			s.unnamed.msg = nil // a large one went before: do not keep its room
		}
		s.unnamed.msg = append(s.unnamed.msg[:0], msg...)
		s.unnamed.res = res
		// A view of the copy kept above, while it is the unnamed statement;
		// one whose effects are tracked is copied (a portal may outlive it).
		_, s.unnamed.text, _ = parseBody(s.unnamed.msg)
		if track.HasEffects(res) {
			s.unnamed.text = strings.Clone(s.unnamed.text)
		}
		s.curT.SetUnnamed(s.state, s.unnamed.n)
		return s.emit(track.Request{Type: 'P', Unnamed: true}, msg)
	}
	s.dbs.counters.stats.ClientParses.Add(1)
	old := s.state.Stmt(string(name))
	if old == nil {
		if e := s.stmtRoom(string(name), len(text)+len(types)); e != nil {
			return e
		}
	}
	st := s.newStmt(strings.Clone(text), append([]byte(nil), types...), res)
	if old != nil {
		// PostgreSQL parses first: a syntax error wins over the name.
		known := s.dbs.known(st.Server)
		if s.cur == nil && known {
			return duplicateStatement(string(name))
		}
		if err := s.need(res, unitStart, text); err != nil {
			return err
		}
		if !known && !s.curT.HasStmt(st.Server) {
			if err := s.emit(track.Request{Type: 'P', Edit: track.Swallow, Stmt: st.Server}, appendParse(nil, st)); err != nil {
				return err
			}
		}
		return s.failHere('P', duplicateStatement(string(name)))
	}
	s.state.AddStmt(string(name), st)
	s.b.added = append(s.b.added, string(name))
	if s.cur == nil && s.dbs.known(st.Server) {
		// A server accepted this text in this context before: the answer
		// is PostgreSQL's, with no server needed (pgbench -M prepared on
		// one thread prepares while its other connections hold servers).
		s.b.local = wire.AppendParseComplete(s.b.local)
		return nil
	}
	if err := s.need(res, unitStart, text); err != nil {
		s.state.DropStmt(string(name))
		return err
	}
	if s.curT.HasStmt(st.Server) {
		return s.emit(track.Request{Type: 'C', Edit: track.Substitute, Subst: parseOK}, closeNone)
	}
	s.dbs.counters.stats.ServerParses.Add(1)
	return s.emit(track.Request{Type: 'P', Stmt: st.Server, Client: string(name)}, appendParse(nil, st))
}

// prepareOn makes sure cur has the client's statement st (a protocol one:
// SQL-level ones are there since the unit began).
func (s *Session) prepareOn(st *track.Stmt) error {
	if st.SQL || s.curT.HasStmt(st.Server) {
		return nil
	}
	s.dbs.counters.stats.ServerParses.Add(1)
	return s.emit(track.Request{Type: 'P', Edit: track.Swallow, Stmt: st.Server}, appendParse(nil, st))
}

// needUnnamed makes sure a server connection serves a message that names
// the client's unnamed statement, and has that statement.
func (s *Session) needUnnamed(unitStart bool) error {
	res := unknownStmt
	if len(s.unnamed.msg) > 0 {
		res = s.unnamed.res
	}
	if err := s.need(res, unitStart, s.unnamed.text); err != nil {
		return err
	}
	return s.unnamedOn()
}

// unnamedOn makes sure cur has the client's unnamed statement.
func (s *Session) unnamedOn() error {
	if len(s.unnamed.msg) == 0 || s.curT.HasUnnamed(s.state, s.unnamed.n) {
		return nil
	}
	s.curT.SetUnnamed(s.state, s.unnamed.n)
	return s.emit(track.Request{Type: 'P', Edit: track.Swallow, Unnamed: true}, s.unnamed.msg)
}

// unknownStmt is how a unit that starts by naming no statement pgswitch
// knows is routed.
var unknownStmt = classify.Result{Route: classify.Write, Reason: "write: not a statement pgswitch has seen"}

// bind sends a Bind.
func (s *Session) bind(m span, unitStart bool) error {
	msg := s.msg(m)
	portal, name, off := bindNames(msg)
	if len(name) == 0 {
		if err := s.needUnnamed(unitStart); err != nil {
			return err
		}
		s.setPortal(portal, portalInfo{res: s.unnamed.res, text: s.unnamed.text})
		return s.emit(track.Request{Type: 'B'}, msg)
	}
	st := s.state.Stmt(string(name))
	if st == nil {
		if err := s.need(unknownStmt, unitStart, ""); err != nil {
			return err
		}
		s.setPortal(portal, portalInfo{res: unknownStmt})
		if isServerName(name) {
			return s.failHere('B', noStatement(string(name)))
		}
		return s.emit(track.Request{Type: 'B'}, msg) // the server says it does not exist
	}
	if err := s.need(st.Res, unitStart, st.Text); err != nil {
		return err
	}
	s.b.used = append(s.b.used, usedStmt{s.b.at, st})
	if err := s.prepareOn(st); err != nil {
		return err
	}
	s.setPortal(portal, portalInfo{res: st.Res, text: st.Text})
	s.dbs.counters.stats.Binds.Add(1)
	if st.SQL {
		return s.emit(track.Request{Type: 'B'}, msg)
	}
	return s.emitNamed(track.Request{Type: 'B'}, msg, off, len(name), st.Server)
}

// emitNamed sends msg with the statement name at [off, off+n) replaced.
func (s *Session) emitNamed(r track.Request, msg []byte, off, n int, name string) error {
	if err := s.cur.Claim(s.client, r.Type); err != nil {
		return err
	}
	s.curT.Push(r)
	if s.b.out == nil {
		s.b.out = outBufs.Get().(*[]byte)
	}
	*s.b.out = appendNamed(*s.b.out, msg, off, n, name)
	return nil
}

func (s *Session) setPortal(name []byte, p portalInfo) {
	if len(name) == 0 {
		s.portal = p
		return
	}
	if s.portals == nil {
		s.portals = map[string]portalInfo{}
	}
	s.portals[string(name)] = p
}

func (s *Session) portalOf(name []byte) portalInfo {
	if len(name) == 0 {
		return s.portal
	}
	return s.portals[string(name)]
}

// describe sends a Describe.
func (s *Session) describe(m span, unitStart bool) error {
	msg := s.msg(m)
	kind, name, off := targetName(msg)
	if kind != 'S' {
		p := s.portalOf(name)
		if err := s.need(p.res, unitStart, p.text); err != nil {
			return err
		}
		return s.emit(track.Request{Type: 'D'}, msg)
	}
	if len(name) == 0 {
		if err := s.needUnnamed(unitStart); err != nil {
			return err
		}
		return s.emit(track.Request{Type: 'D'}, msg)
	}
	st := s.state.Stmt(string(name))
	if st == nil {
		if err := s.need(unknownStmt, unitStart, ""); err != nil {
			return err
		}
		if isServerName(name) {
			return s.failHere('D', noStatement(string(name)))
		}
		return s.emit(track.Request{Type: 'D'}, msg)
	}
	if err := s.need(st.Res, unitStart, st.Text); err != nil {
		return err
	}
	s.b.used = append(s.b.used, usedStmt{s.b.at, st})
	s.b.retry.describes = true
	if err := s.prepareOn(st); err != nil {
		return err
	}
	if st.SQL {
		return s.emit(track.Request{Type: 'D'}, msg)
	}
	return s.emitNamed(track.Request{Type: 'D'}, msg, off, len(name), st.Server)
}

// execute sends an Execute: what its portal runs decides its effects.
func (s *Session) execute(m span, unitStart bool) error {
	msg := s.msg(m)
	portal, _ := splitCString(msg[wire.HeaderSize:])
	p := s.portalOf(portal)
	if err := s.need(p.res, unitStart, p.text); err != nil {
		return err
	}
	effects := track.Effects(p.res, p.text)
	s.pinFor(p.res)
	s.noteRun(p.res)
	if err := s.emit(track.Request{Type: 'E', Effects: effects}, msg); err != nil {
		return err
	}
	s.noteAfter(p.res, effects)
	return nil
}

// closeMsg sends (or answers) a Close. A client's protocol-level statement
// stays prepared on servers, shared: the client only forgets it.
func (s *Session) closeMsg(m span, unitStart bool) error {
	msg := s.msg(m)
	kind, name, _ := targetName(msg)
	var st *track.Stmt
	if kind == 'S' && len(name) > 0 {
		st = s.state.Stmt(string(name))
	}
	if st != nil {
		s.state.DropStmt(string(name))
	}
	if st == nil || !st.SQL {
		if s.cur == nil {
			s.b.local = wire.AppendCloseComplete(s.b.local)
			return nil
		}
		if err := s.need(unknownStmt, unitStart, ""); err != nil {
			return err
		}
		if st != nil || isServerName(name) {
			msg = closeNone // CloseComplete, and nothing closed
		}
		return s.emit(track.Request{Type: 'C'}, msg)
	}
	// A SQL-level statement is the client's own on the server.
	if err := s.need(unknownStmt, unitStart, ""); err != nil {
		return err
	}
	s.curT.DropSQL(string(name))
	return s.emit(track.Request{Type: 'C'}, msg)
}

// sync sends a Sync, or answers it when no server is linked.
func (s *Session) sync(m span) error {
	if s.cur == nil {
		s.b.local = wire.AppendReadyForQuery(s.b.local, 'I')
		return nil
	}
	if err := s.emit(track.Request{Type: 'S'}, s.msg(m)); err != nil {
		return err
	}
	return s.sendAfter()
}

// flushMsg sends a Flush; with no server linked the batch's answers go out
// at its end anyway.
func (s *Session) flushMsg(m span) error {
	if s.cur == nil {
		return nil
	}
	s.b.retry.streamed = true
	return s.emit(track.Request{Type: 'H'}, s.msg(m))
}

// functionCall sends a FunctionCall (fastpath): it may write.
func (s *Session) functionCall(m span) error {
	if err := s.need(unknownStmt, true, ""); err != nil {
		return err
	}
	s.unnamed.msg = s.unnamed.msg[:0]
	return s.emit(track.Request{Type: 'F'}, s.msg(m))
}

// pinFor pins the client to cur when what res runs leaves state there that
// cannot be replayed elsewhere.
func (s *Session) pinFor(res classify.Result) {
	why := track.Pins(res)
	if why == "" {
		return
	}
	s.b.retry.pinned = true
	if s.state.Pin(why) {
		s.r.log.Debug("client pinned to its server connection", "user", s.user.Name, "database", s.db.Name,
			"server", s.cur.Addr(), "pid", s.cur.PID(), "because", why)
	}
	s.cur.SetKeep(true)
}

// cstring views a NUL-terminated string in a message without copying: the
// view lives as long as the batch. The classifier keeps no reference to
// the text it is given; whatever keeps text longer copies it.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func splitCString(b []byte) (s, rest []byte) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i+1:]
}

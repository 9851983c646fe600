package router

import (
	"bytes"
	"errors"
	"strings"
	"time"
	"unsafe"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/wire"
)

// errAnswered means the session answered the message itself: no server needed.
var errAnswered = errors.New("answered by pgswitch")

func extended(typ byte) bool {
	switch typ {
	case 'P', 'B', 'D', 'E', 'C', 'H':
		return true
	}
	return false
}

// claim makes sure a server connection is linked for the message at
// (*s.out)[start:] and accounts for it there. At the start of a unit of work
// with no server linked, it classifies the unit and picks its server.
func (s *Session) claim(typ byte, start int) error {
	unitStart := typ == 'Q' || typ == 'F' || (extended(typ) && !s.extOpen)
	switch {
	case extended(typ):
		s.extOpen = true
	case typ == 'S':
		s.extOpen = false
	}
	if (s.guardable || s.staleable) && (unitStart || (typ != 'S' && !extended(typ))) {
		// A second unit, or Flush/COPY data, in the same batch: the answer
		// is no longer one unit's, so it cannot be retried.
		s.guardable, s.staleable = false, false
	}
	var def *stmtDef
	var res classify.Result
	if s.mode == config.PoolModeTransaction {
		// Named statements live under server-side names (state.go).
		def = s.renameStatement(typ, start)
		if def != nil {
			s.unitDefs = append(s.unitDefs, def)
			res = def.res
		} else if typ == 'Q' || typ == 'P' {
			res = s.classifyMessage(typ, (*s.out)[start:])
		}
		if typ == 'Q' {
			if err := s.sessionCommand(&res, start); err != nil {
				return err
			}
		}
		s.noteUnnamed(typ, start, def, res)
	}
	if s.cur != nil {
		if unitStart && s.curRead && s.mode == config.PoolModeTransaction && !s.pinned.Load() {
			if def == nil && typ != 'Q' && typ != 'P' {
				res = s.classifyMessage(typ, (*s.out)[start:])
			}
			if w, _ := wantFor(res, s.db.Route); w != wantReplica {
				// Linked to a replica by units still in flight; this one
				// needs the primary. Let the replica finish, then see.
				s.flushPrefix(start)
				start = 0
				s.cur.WaitIdle(s.client)
			}
		}
		if s.sendOn(s.cur, typ, start, def, res, unitStart) == nil {
			if typ == 'H' {
				// Answers pgswitch owes (a Parse of a statement already
				// prepared there) go out now if nothing is owed before them.
				s.cur.AnswerFakes(s.client)
			}
			if unitStart {
				s.count(s.cur.Addr(), s.curRead)
			}
			return nil
		}
		// The server finished the last unit and went back to its pool.
		s.cur = nil
		s.server.Store(nil)
	}
	switch typ {
	case 'd', 'c', 'f':
		// Late COPY data after a failed COPY: PostgreSQL ignores it too.
		return errAnswered
	case 'H', 'S':
		// Nothing is pending on a server: answer the Parses held here (a
		// Sync alone the server would only answer with "idle").
		if s.heldParse > 0 {
			s.client.Write(appendParseCompletes(nil, s.heldParse))
			s.heldParse = 0
		}
		return errAnswered
	case 'P':
		if def != nil {
			// A named Parse needs no server: the statement is prepared
			// where a Bind or Describe needs it. Answering here also spares
			// a client that prepares synchronously (pgbench -M prepared)
			// from waiting for a server connection another of its
			// connections holds.
			*s.out = (*s.out)[:start]
			s.heldParse++
			return nil
		}
	}
	if def == nil && typ != 'Q' && typ != 'P' || s.mode != config.PoolModeTransaction {
		res = s.classifyMessage(typ, (*s.out)[start:])
	}
	if err := s.beginUnit(); err != nil {
		return err
	}
	if s.forcePri {
		res = classify.Result{Route: classify.Write, Hint: classify.HintPrimary, Reason: "write: a replica refused it as read-only (25006)"}
	}
	d, err := s.decideWaiting(res)
	if err != nil {
		return err
	}
	c, d, err := s.acquire(d)
	if err != nil {
		return err
	}
	c.Link(s.client, s.mode == config.PoolModeSession)
	s.cur = c
	s.server.Store(c)
	s.curRead = d.read && d.server != nil && s.r.topology().Get(d.server.Addr()).Role == config.RoleReplica
	// An autocommit read on a replica may be refused (25006) if the
	// classifier was wrong; keep it retryable while it is alone in the batch
	// and pgswitch added nothing to it.
	alone := start == 0 && s.mode == config.PoolModeTransaction && !s.rerunning &&
		!res.Kind.Has(classify.KindBegin) && !res.Kind.Has(classify.KindBeginReadOnly)
	s.guardable = alone && s.curRead
	// A named statement's plan may have gone stale after a schema change
	// (0A000): outside a transaction, prepare it afresh and run it again.
	s.staleable = alone && def != nil
	s.routed(c, d, typ, start, def)
	return s.sendOn(c, typ, start, def, res, true)
}

// sendOn sends the message at (*s.out)[start:] on c and notes what it does
// to the session's state there.
func (s *Session) sendOn(c *pool.Conn, typ byte, start int, def *stmtDef, res classify.Result, unitStart bool) error {
	if s.mode != config.PoolModeTransaction {
		if unitStart && !c.InTransaction() {
			// The session's own connection: bring the client's startup
			// settings to it (once; they stay there).
			return s.send(c, typ, start, nil, res, true)
		}
		return c.Claim(s.client, typ)
	}
	// A SET inside a transaction block takes effect only if it commits.
	txStatus := byte('I')
	if (typ == 'Q' || typ == 'P') && res.Kind&(classify.KindSet|classify.KindCommit|classify.KindRollback) != 0 {
		txStatus = c.TxStatus()
	}
	if err := s.send(c, typ, start, def, res, unitStart); err != nil {
		return err
	}
	if typ == 'Q' || typ == 'P' {
		if res.Kind.Has(classify.KindSet) {
			text := s.unitText(typ, (*s.out)[min(start, len(*s.out)):])
			if txStatus == 'I' {
				s.recordSet(c, res, text)
			} else {
				s.txSets = append(s.txSets, txSet{res, text})
			}
		}
		switch {
		case res.Kind.Has(classify.KindCommit) && txStatus == 'T':
			for _, ts := range s.txSets {
				s.recordSet(c, ts.res, ts.text)
			}
			s.txSets = s.txSets[:0]
		case res.Kind.Has(classify.KindCommit), res.Kind.Has(classify.KindRollback):
			s.txSets = s.txSets[:0] // rolled back: the server reverts them
		}
		if res.Kind.Has(classify.KindDiscardAll) {
			c.ForgetReset("DISCARD ALL")
		} else if res.Kind.Has(classify.KindDeallocate) {
			c.ForgetReset("DEALLOCATE ALL")
		}
		if pins(res) {
			s.pin(c, res)
		}
	}
	return nil
}

// sessionCommand handles a simple query that changes the client's session
// state as pgswitch keeps it: DISCARD ALL, PREPARE, DEALLOCATE. It may
// change *res: an EXECUTE routes as the statement it runs.
func (s *Session) sessionCommand(res *classify.Result, start int) error {
	const kinds = classify.KindDiscardAll | classify.KindPrepare | classify.KindExecute | classify.KindDeallocate
	if res.Kind&kinds == 0 {
		return nil
	}
	text := s.unitText('Q', (*s.out)[start:])
	switch {
	case res.Kind.Has(classify.KindDiscardAll):
		clear(s.prepared)
		clear(s.sqlPrep)
		s.sets = startupSets(s.startup)
	case res.Kind.Has(classify.KindPrepare) && firstWord(text) == "PREPARE":
		if name, ok := sqlName(text, "PREPARE"); ok {
			if s.sqlPrep == nil {
				s.sqlPrep = map[string]sqlStmt{}
			}
			s.sqlPrep[name] = sqlStmt{text: strings.TrimRight(strings.TrimSpace(text), "; \t\r\n"), res: *res}
		}
	case res.Kind.Has(classify.KindExecute) && firstWord(text) == "EXECUTE":
		if name, ok := sqlName(text, "EXECUTE"); ok {
			if st, ok := s.sqlPrep[name]; ok {
				*res = st.res
			}
		}
	case res.Kind.Has(classify.KindDeallocate):
		// The client's statements live under other names (or other
		// connections) on the servers: forget them here; a server
		// connection in use drops every statement, which pgswitch prepares
		// again on demand.
		name, _ := sqlName(text, "DEALLOCATE")
		if name == "" || name == "all" {
			clear(s.prepared)
			clear(s.sqlPrep)
		}
		delete(s.prepared, name)
		delete(s.sqlPrep, name)
		if s.cur == nil {
			tag := "DEALLOCATE"
			if name == "all" {
				tag = "DEALLOCATE ALL"
			}
			buf := wire.AppendHeader(nil, 'C', len(tag)+1)
			buf = append(append(buf, tag...), 0)
			s.client.Write(wire.AppendReadyForQuery(buf, idleStatus))
			*s.out = (*s.out)[:start]
			return errAnswered
		}
		s.replaceTail(start, wire.AppendQuery(nil, "DEALLOCATE ALL"))
	}
	return nil
}

// decide routes a unit. Session-mode clients keep one server for their whole
// session, so they follow the database's route alone (auto: the primary).
func (s *Session) decide(res classify.Result) decision {
	if s.mode == config.PoolModeSession && s.db.Route != config.RouteReplica {
		return decision{server: primaryOf(s.db, s.r.topology()), why: "session mode: the primary"}
	}
	return decide(res, s.db, s.r.topology(), s.dbs.lb, s.loadFn, s.cands)
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
	s.waiting.Store(true)
	defer s.waiting.Store(false)
	p := s.poolFor(d.server)
	c, err := p.Acquire(s.r.ctx, s.cfg.Timeouts.QueryWait)
	if err == nil {
		return c, d, nil
	}
	primary := primaryOf(s.db, s.r.topology())
	if d.read && primary != nil && d.server != primary && !errors.Is(err, pool.ErrWaitTimeout) {
		s.r.log.Info("replica unreachable, reading from the primary", "server", d.server.Addr(), "err", err)
		d = decision{server: primary, read: true, why: d.why + "; replica unreachable"}
		p = s.poolFor(primary)
		if c, err = p.Acquire(s.r.ctx, s.cfg.Timeouts.QueryWait); err == nil {
			return c, d, nil
		}
	}
	return nil, d, pool.AcquireError(p.Key(), s.cfg.Timeouts.QueryWait, err)
}

// classifyMessage classifies the unit of work that msg starts.
func (s *Session) classifyMessage(typ byte, msg []byte) classify.Result {
	body := msg[wire.HeaderSize:]
	switch typ {
	case 'Q':
		return s.dbs.classifier.Classify(cstring(body))
	case 'P':
		_, rest := splitCString(body)
		return s.dbs.classifier.Classify(cstring(rest))
	case 'B', 'D':
		if refersUnnamed(typ, msg) && len(s.unnamedMsg) > 0 {
			return s.unnamedRes // classified at its Parse
		}
	}
	return classify.Result{Route: classify.Write, Reason: "write: not a statement pgswitch has seen"}
}

// cstring views a NUL-terminated string in a message without copying. The
// classifier keeps no reference to the text it is given.
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

// unitComplete reports whether buf ends a unit: the server will answer it
// in full without waiting for more from the client.
func unitComplete(buf []byte) bool {
	last := byte(0)
	for len(buf) >= wire.HeaderSize {
		h, err := wire.ParseHeader(buf, len(buf))
		if err != nil || wire.HeaderSize+h.Len > len(buf) {
			return false
		}
		last = h.Type
		buf = buf[wire.HeaderSize+h.Len:]
	}
	return last == 'Q' || last == 'S'
}

// flushPrefix writes the first n bytes of out (claimed for cur) and keeps
// the rest, so that cur can finish before the rest is routed.
func (s *Session) flushPrefix(n int) {
	if n == 0 || s.cur == nil {
		return
	}
	s.cur.Write((*s.out)[:n])
	rest := copy(*s.out, (*s.out)[n:])
	*s.out = (*s.out)[:rest]
}

// retryOnPrimary runs a unit a replica refused as read-only on the primary
// and remembers its text as a write. Nothing of the replica's answer reached
// the client, so the client sees only the primary's.
func (s *Session) retryOnPrimary(buf []byte) {
	h, _ := wire.ParseHeader(buf, len(buf))
	sql := s.unitText(h.Type, buf)
	s.dbs.classifier.Remember(sql, classify.Result{Route: classify.Write, Reason: "write: a replica refused it as read-only (25006)"})
	s.r.log.Info("replica refused a read as read-only; retrying on the primary", "database", s.db.Name)
	s.cur = nil
	s.server.Store(nil)
	d, err := s.decideWaiting(classify.Result{Route: classify.Write, Hint: classify.HintPrimary})
	var c *pool.Conn
	if err == nil {
		c, _, err = s.acquire(d)
	}
	if err != nil {
		buf := wire.AsError(err).AppendResponse(nil)
		s.client.Write(wire.AppendReadyForQuery(buf, idleStatus))
		return
	}
	c.Link(s.client, false)
	s.cur = c
	s.server.Store(c)
	s.curRead = false
	s.count(c.Addr(), false)
	for rest := buf; len(rest) >= wire.HeaderSize; {
		h, err := wire.ParseHeader(rest, len(rest))
		if err != nil {
			break
		}
		c.Claim(s.client, h.Type)
		rest = rest[wire.HeaderSize+h.Len:]
	}
	c.Write(buf)
}

// unitText returns the SQL text of the unit in buf, copied.
func (s *Session) unitText(typ byte, buf []byte) string {
	body := buf[wire.HeaderSize:]
	switch typ {
	case 'Q':
		return strings.Clone(cstring(body))
	case 'P':
		_, rest := splitCString(body)
		return strings.Clone(cstring(rest))
	}
	return ""
}

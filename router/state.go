package router

import (
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/wire"
)

// stmtDef is a named statement a client prepared. Server connections know
// it under a name derived from its text and parameter types, so that two
// clients' "stmt1" never collide and identical texts share one statement.
type stmtDef struct {
	text   string
	types  []byte // the Parse message's parameter type section, as sent
	server string // name on server connections
	base   string // server name of the first generation
	gen    int    // renewals after stale plans
	res    classify.Result
}

func newStmtDef(text string, types []byte, res classify.Result) *stmtDef {
	h := fnv.New128a()
	h.Write([]byte(text))
	h.Write([]byte{0})
	h.Write(types)
	name := "pgswitch_" + hex.EncodeToString(h.Sum(nil))
	return &stmtDef{text: text, types: types, server: name, base: name, res: res}
}

// appendParse appends a Parse of def under its server name.
func (d *stmtDef) appendParse(dst []byte) []byte {
	n := 4 + len(d.server) + 1 + len(d.text) + 1 + len(d.types)
	dst = append(dst, 'P', byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	dst = append(dst, d.server...)
	dst = append(dst, 0)
	dst = append(dst, d.text...)
	dst = append(dst, 0)
	return append(dst, d.types...)
}

// replaceTail replaces the message at (*s.out)[start:] with msg.
func (s *Session) replaceTail(start int, msg []byte) {
	*s.out = append((*s.out)[:start], msg...)
}

// replaceName replaces the n bytes at off in the message at
// (*s.out)[start:], the tail of out, with name, and fixes its length.
func (s *Session) replaceName(start, off, n int, name string) {
	end := len(*s.out)
	delta := len(name) - n
	if delta > 0 {
		*s.out = slices.Grow(*s.out, delta)[:end+delta]
	}
	out := *s.out
	copy(out[off+len(name):], out[off+n:end])
	copy(out[off:], name)
	*s.out = out[:end+delta]
	binary.BigEndian.PutUint32((*s.out)[start+1:], uint32(end+delta-start-1))
}

// insertAt inserts b before the message at (*s.out)[start:].
func (s *Session) insertAt(start int, b []byte) {
	*s.out = slices.Insert(*s.out, start, b...)
}

// renameStatement rewrites a named Parse, Bind, Describe or Close of the
// message at (*s.out)[start:] to the statement's server name. It returns
// the statement, nil when the message names none pgswitch manages.
func (s *Session) renameStatement(typ byte, start int) *stmtDef {
	msg := (*s.out)[start:]
	body := msg[wire.HeaderSize:]
	switch typ {
	case 'P':
		name, rest := splitCString(body)
		if len(name) == 0 {
			return nil
		}
		text, types := splitCString(rest)
		// Classified once here; every Bind of it reuses the result.
		s.dbs.counters.stats.ClientParses.Add(1)
		def := newStmtDef(string(text), slices.Clone(types), s.dbs.classifier.Classify(cstring(text)))
		if g := s.renewed[def.base]; g > 0 {
			// Its plan went stale: never the old server-side statement again.
			def.gen = g - 1
			def.renew()
		}
		if s.prepared == nil {
			s.prepared = map[string]*stmtDef{}
		}
		s.prepared[string(name)] = def
		s.replaceTail(start, def.appendParse(nil))
		return def
	case 'B':
		portal, rest := splitCString(body)
		name, _ := splitCString(rest)
		def := s.prepared[string(name)]
		if len(name) == 0 || def == nil {
			return nil
		}
		// In place: every query of a caching driver is a Bind.
		s.replaceName(start, start+wire.HeaderSize+len(portal)+1, len(name), def.server)
		return def
	case 'D', 'C':
		if len(body) < 2 || body[0] != 'S' {
			return nil
		}
		name, _ := splitCString(body[1:])
		def := s.prepared[string(name)]
		if len(name) == 0 || def == nil {
			return nil
		}
		if typ == 'C' {
			delete(s.prepared, string(name))
		}
		var m []byte
		m = appendHeader(m, typ, 1+len(def.server)+1)
		m = append(m, 'S')
		m = append(m, def.server...)
		m = append(m, 0)
		s.replaceTail(start, m)
		return def
	}
	return nil
}

func appendHeader(dst []byte, typ byte, bodyLen int) []byte {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(bodyLen+4))
	return append(append(dst, typ), n[:]...)
}

// send hands the message at (*s.out)[start:] to c: named statements are
// prepared on demand or answered from what c already has, and at the start
// of a unit c is brought to the client's session state first. It fails with
// pool.ErrUnlinked, leaving out as it was, when c no longer serves the client.
func (s *Session) send(c *pool.Conn, typ byte, start int, def *stmtDef, res classify.Result, unitStart bool) error {
	if unitStart {
		// The connection's state is read below: it must stay ours meanwhile.
		if err := c.Hold(s.client); err != nil {
			return err
		}
		defer c.Unhold()
	}
	if unitStart {
		var err error
		if start, err = s.syncState(c, start); err != nil {
			return err
		}
	}
	for ; s.heldParse > 0; s.heldParse-- {
		// Their ParseCompletes go out in turn, before this message's answer.
		if err := c.Send(s.client, 'P', pool.Fake, ""); err != nil {
			return err
		}
	}
	if typ == 'Q' && res.Kind&(classify.KindPrepare|classify.KindExecute) != 0 {
		var err error
		if start, err = s.prepareSQL(c, start); err != nil {
			return err
		}
	}
	if def == nil {
		return s.sendUnnamed(c, typ, start)
	}
	st := &s.dbs.counters.stats
	switch typ {
	case 'P':
		if c.HasStmt(def.server) {
			if err := c.Send(s.client, 'P', pool.Fake, ""); err != nil {
				return err
			}
			*s.out = (*s.out)[:start]
			return nil
		}
		st.ServerParses.Add(1)
		return c.Send(s.client, 'P', pool.Pass, def.server)
	case 'C':
		if err := c.Send(s.client, 'C', pool.Fake, ""); err != nil {
			return err
		}
		*s.out = (*s.out)[:start]
		return nil
	}
	// Bind or Describe of a statement c may not have yet.
	if !c.HasStmt(def.server) {
		if err := c.Send(s.client, 'P', pool.Swallow, def.server); err != nil {
			return err
		}
		s.insertAt(start, def.appendParse(nil))
		st.ServerParses.Add(1)
	}
	if typ == 'B' {
		st.Binds.Add(1)
	}
	return c.Send(s.client, typ, pool.Pass, "")
}

// syncState brings c to the client's session state before the unit whose
// first message is at (*s.out)[start:]: statements beyond the per-connection
// bound are closed, and the client's settings replayed where c's differ. It
// returns where that message starts now.
func (s *Session) syncState(c *pool.Conn, start int) (int, error) {
	var pre []byte
	if evict := c.EvictCandidates(s.cfg.Pool.MaxPreparedStatements); len(evict) > 0 {
		for _, name := range evict {
			if err := c.Send(s.client, 'C', pool.Swallow, ""); err != nil {
				return start, err
			}
			pre = appendHeader(pre, 'C', 1+len(name)+1)
			pre = append(append(append(pre, 'S'), name...), 0)
		}
		c.Forget(evict)
		c.Send(s.client, 'S', pool.Swallow, "")
		pre = appendHeader(pre, 'S', 0)
	}
	if q := setsDiff(s.sets, c.Sets()); q != "" {
		if err := c.Send(s.client, 'Q', pool.Swallow, ""); err != nil {
			if len(pre) > 0 {
				// Closes were counted: they must go out.
				s.insertAt(start, pre)
				start += len(pre)
			}
			return start, err
		}
		pre = appendHeader(pre, 'Q', len(q)+1)
		pre = append(append(pre, q...), 0)
		c.SetUnnamed(nil, 0) // a simple Query destroys the unnamed statement
		sets := c.Sets()
		clear(sets)
		maps.Copy(sets, s.sets)
	}
	if len(pre) > 0 {
		s.insertAt(start, pre)
		start += len(pre)
	}
	return start, nil
}

// setsDiff returns the statements that turn a connection with settings
// have into one with want ("" when they agree).
func setsDiff(want, have map[string]string) string {
	if len(want) == len(have) {
		same := true
		for k, v := range want {
			if hv, ok := have[k]; !ok || hv != v {
				same = false
				break
			}
		}
		if same {
			return "" // the usual case: no allocation
		}
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(have)) {
		if _, ok := want[name]; !ok {
			b.WriteString("RESET " + quoteIdent(name) + ";")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if have[name] != want[name] {
			b.WriteString(want[name] + ";")
		}
	}
	return b.String()
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// startupSets returns the settings a client asked for at login, as
// statements to replay: parameters other than the ones the protocol itself
// uses, and -c name=value in options.
func startupSets(startup map[string]string) map[string]string {
	sets := map[string]string{}
	add := func(name, value string) {
		name = strings.ToLower(name)
		sets[name] = "SELECT pg_catalog.set_config(" + quoteLiteral(name) + ", " + quoteLiteral(value) + ", false)"
	}
	for k, v := range startup {
		switch k {
		case "user", "database", "options", "replication", "client_encoding":
			continue
		case "application_name":
			if v == "" {
				continue
			}
		}
		add(k, v)
	}
	f := strings.Fields(startup["options"])
	for i := 0; i < len(f); i++ {
		opt := f[i]
		switch {
		case opt == "-c" && i+1 < len(f):
			i++
			opt = f[i]
		case strings.HasPrefix(opt, "-c"):
			opt = opt[2:]
		case strings.HasPrefix(opt, "--"):
			opt = opt[2:]
		default:
			continue
		}
		if name, value, ok := strings.Cut(opt, "="); ok {
			add(strings.ReplaceAll(name, "-", "_"), value)
		}
	}
	return sets
}

// recordSet remembers a session-level SET or RESET the client sends, so
// that its later units see it on any server connection, and notes it as
// applied on c.
func (s *Session) recordSet(c *pool.Conn, res classify.Result, text string) {
	if !res.Kind.Has(classify.KindSet) || res.Route != classify.Read {
		return
	}
	if strings.Contains(strings.TrimRight(text, "; \t\r\n"), ";") {
		// Several statements ("SET a = 1; SET b = 2"): each SET on its own,
		// so that a replay runs nothing else.
		for _, stmt := range classify.Split(text) {
			if r := s.dbs.classifier.Classify(stmt); r.Kind.Has(classify.KindSet) && r.Route == classify.Read &&
				!strings.Contains(strings.TrimRight(stmt, "; \t\r\n"), ";") {
				s.recordSet(c, r, stmt)
			}
		}
		return
	}
	if len(res.Params) != 1 || res.Kind.Has(classify.KindSetLocal) {
		return
	}
	name := strings.ToLower(res.Params[0])
	if s.sets == nil {
		s.sets = map[string]string{}
	}
	have := c.Sets()
	switch {
	case name == "all":
		clear(s.sets)
		clear(have)
	case firstWord(text) == "RESET":
		delete(s.sets, name)
		delete(have, name)
	default:
		stmt := strings.TrimRight(strings.TrimSpace(text), "; \t\n")
		s.sets[name] = stmt
		have[name] = stmt
	}
}

// firstWord returns the first keyword of SQL text, upper-cased, after
// leading blanks and comments.
func firstWord(text string) string {
	for {
		text = strings.TrimLeft(text, " \t\r\n;(")
		switch {
		case strings.HasPrefix(text, "--"):
			if i := strings.IndexByte(text, '\n'); i >= 0 {
				text = text[i+1:]
				continue
			}
			return ""
		case strings.HasPrefix(text, "/*"):
			if i := strings.Index(text, "*/"); i >= 0 {
				text = text[i+2:]
				continue
			}
			return ""
		}
		end := strings.IndexFunc(text, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_')
		})
		if end < 0 {
			end = len(text)
		}
		return strings.ToUpper(text[:end])
	}
}

// pins reports whether a unit leaves state on its server connection that
// cannot be replayed elsewhere.
func pins(res classify.Result) bool {
	return res.Kind&(classify.KindListen|classify.KindAdvisoryLock|classify.KindTempTable|classify.KindDeclareWithHold) != 0
}

// pin keeps the client on c for the rest of its session.
func (s *Session) pin(c *pool.Conn, res classify.Result) {
	if s.pinned.Swap(true) {
		return
	}
	c.SetKeep(true)
	s.r.log.Debug("client pinned to its server connection", "user", s.user.Name, "database", s.db.Name,
		"server", c.Addr(), "pid", c.PID(), "because", res.Kind.String())
}

// appendParseCompletes appends n ParseComplete messages.
func appendParseCompletes(dst []byte, n int) []byte {
	for range n {
		dst = append(dst, '1', 0, 0, 0, 4)
	}
	return dst
}

// origMax bounds the client messages kept for a retry.
const origMax = 64 << 10

// record keeps a copy of a client message until the next flush, so that a
// unit refused before any answer reached the client can run again.
func (s *Session) record(typ byte, msg []byte) {
	if s.rerunning || !s.origOK {
		return
	}
	switch {
	case typ == 'd' || typ == 'c' || typ == 'f', len(s.orig)+len(msg) > origMax:
		s.origOK = false
		s.orig = s.orig[:0]
	default:
		s.orig = append(s.orig, msg...)
	}
}

// retry runs the unit just answered with a refusal again: on the primary
// after a replica refused it as read-only, or with its statements prepared
// afresh after the server found their plans stale. Nothing of the refused
// answer reached the client.
func (s *Session) retry(outcome pool.Outcome, buf []byte) {
	s.cur = nil // the pump gave it back to its pool, or closed it
	s.server.Store(nil)
	if !s.origOK || len(s.orig) == 0 {
		if outcome == pool.Refused {
			s.retryOnPrimary(buf)
			return
		}
		e := wire.Errorf(wire.CodeFeatureNotSupported, "cached plan must not change result type")
		s.client.Write(wire.AppendReadyForQuery(e.AppendResponse(nil), idleStatus))
		return
	}
	if outcome == pool.Stale {
		for _, d := range s.unitDefs {
			d.renew()
			if s.renewed == nil {
				s.renewed = map[string]int{}
			}
			s.renewed[d.base] = d.gen
		}
		if !describesResult(s.orig) {
			// The client decodes rows with a description it cached: rows of
			// the new shape would break it. Tell it, as PostgreSQL would; its
			// next Parse prepares the statement afresh.
			e := wire.Errorf(wire.CodeFeatureNotSupported, "cached plan must not change result type").
				WithHint("The table changed; prepare the statement again.")
			s.client.Write(wire.AppendReadyForQuery(e.AppendResponse(nil), idleStatus))
			return
		}
		s.r.log.Info("statement plan stale after a schema change; preparing it again", "database", s.db.Name)
	} else {
		write := classify.Result{Route: classify.Write, Reason: "write: a replica refused it as read-only (25006)"}
		for _, d := range s.unitDefs {
			d.res = write
		}
		if h, err := wire.ParseHeader(buf, len(buf)); err == nil {
			if sql := s.unitText(h.Type, buf); sql != "" {
				s.dbs.classifier.Remember(sql, write)
			}
		}
		s.r.log.Info("replica refused a read as read-only; retrying on the primary", "database", s.db.Name)
	}
	orig := s.orig
	s.orig = nil
	s.rerunning, s.forcePri = true, outcome == pool.Refused
	defer func() { s.rerunning, s.forcePri = false, false }()
	s.extOpen = false
	for len(orig) >= wire.HeaderSize {
		h, err := wire.ParseHeader(orig, len(orig))
		if err != nil || wire.HeaderSize+h.Len > len(orig) {
			break
		}
		msg := orig[:wire.HeaderSize+h.Len]
		orig = orig[len(msg):]
		if s.out == nil {
			s.out = outBufs.Get().(*[]byte)
		}
		start := len(*s.out)
		*s.out = append(*s.out, msg...)
		if err := s.claim(h.Type, start); err != nil {
			*s.out = (*s.out)[:start]
			s.unitFailed(h.Type, err)
		}
	}
	s.flush()
}

// renew gives the statement a new server-side name, so that it is prepared
// afresh on every server connection.
func (d *stmtDef) renew() {
	d.gen++
	d.server = d.base + "_" + strconv.Itoa(d.gen)
}

// describesResult reports whether a unit asks for its rows' description
// (Describe) and leaves result formats to one code for all columns, so that
// rows of a new shape after a schema change are what the client expects.
func describesResult(msgs []byte) bool {
	described := false
	for len(msgs) >= wire.HeaderSize {
		h, err := wire.ParseHeader(msgs, len(msgs))
		if err != nil || wire.HeaderSize+h.Len > len(msgs) {
			return false
		}
		body := msgs[wire.HeaderSize : wire.HeaderSize+h.Len]
		msgs = msgs[wire.HeaderSize+h.Len:]
		switch h.Type {
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

// sqlStmt is a statement the client prepared with SQL PREPARE.
type sqlStmt struct {
	text string // the whole PREPARE statement
	res  classify.Result
}

// prepareSQL makes c ready for the client's PREPARE or EXECUTE at
// (*s.out)[start:]: SQL-level names are the client's own on the server, so
// another client's statement of that name is dropped first, and a statement
// the client prepared on another connection is prepared here. It returns
// where the message starts now.
func (s *Session) prepareSQL(c *pool.Conn, start int) (int, error) {
	text := s.unitText('Q', (*s.out)[start:])
	kw := firstWord(text) // an EXECUTE carries its PREPARE's classification
	name, ok := sqlName(text, kw)
	st, known := s.sqlPrep[name]
	if !ok || !known {
		return start, nil
	}
	have := c.SQLNames()
	had, exists := have[name]
	var q string
	switch {
	case kw == "PREPARE" && exists:
		q = "DEALLOCATE " + quoteIdent(name)
	case kw == "EXECUTE" && had != st.text:
		if exists {
			q = "DEALLOCATE " + quoteIdent(name) + ";"
		}
		q += st.text
	}
	if q != "" {
		if err := c.Send(s.client, 'Q', pool.Swallow, ""); err != nil {
			return start, err
		}
		pre := appendHeader(nil, 'Q', len(q)+1)
		pre = append(append(pre, q...), 0)
		s.insertAt(start, pre)
		start += len(pre)
		c.SetUnnamed(nil, 0)
	}
	have[name] = st.text
	return start, nil
}

// sqlName returns the statement name that follows keyword in text (after
// an optional PREPARE in DEALLOCATE PREPARE name), folded as PostgreSQL
// folds identifiers; "all" for DEALLOCATE ALL.
func sqlName(text, keyword string) (string, bool) {
	text = strings.TrimLeft(text, " \t\r\n")
	for strings.HasPrefix(text, "/*") || strings.HasPrefix(text, "--") {
		end := "\n"
		if text[1] == '*' {
			end = "*/"
		}
		i := strings.Index(text, end)
		if i < 0 {
			return "", false
		}
		text = strings.TrimLeft(text[i+len(end):], " \t\r\n")
	}
	if len(text) < len(keyword) || !strings.EqualFold(text[:len(keyword)], keyword) {
		return "", false
	}
	text = strings.TrimLeft(text[len(keyword):], " \t\r\n")
	if keyword == "DEALLOCATE" && len(text) > 7 && strings.EqualFold(text[:7], "PREPARE") && strings.ContainsAny(text[7:8], " \t\r\n") {
		text = strings.TrimLeft(text[7:], " \t\r\n")
	}
	if strings.HasPrefix(text, `"`) {
		var b strings.Builder
		for i := 1; i < len(text); i++ {
			if text[i] == '"' {
				if i+1 < len(text) && text[i+1] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				return b.String(), b.Len() > 0
			}
			b.WriteByte(text[i])
		}
		return "", false
	}
	end := strings.IndexFunc(text, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '$')
	})
	if end < 0 {
		end = len(text)
	}
	return strings.ToLower(text[:end]), end > 0
}

// startupValue returns the value a client gave parameter name (lower case)
// at startup, directly or in options ("" if none).
func startupValue(startup map[string]string, name string) string {
	for k, v := range startup {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	f := strings.Fields(startup["options"])
	for i := 0; i < len(f); i++ {
		opt := strings.TrimPrefix(strings.TrimPrefix(f[i], "--"), "-c")
		if opt == "" && i+1 < len(f) {
			i++
			opt = f[i]
		}
		if n, v, ok := strings.Cut(opt, "="); ok && strings.EqualFold(strings.ReplaceAll(n, "-", "_"), name) {
			return v
		}
	}
	return ""
}

// refersUnnamed reports whether a Bind or Describe names the unnamed
// statement.
func refersUnnamed(typ byte, msg []byte) bool {
	body := msg[wire.HeaderSize:]
	switch typ {
	case 'B':
		_, rest := splitCString(body)
		return len(rest) > 0 && rest[0] == 0
	case 'D':
		return len(body) >= 2 && body[0] == 'S' && body[1] == 0
	}
	return false
}

// noteUnnamed keeps the client's unnamed statement, which PostgreSQL keeps
// until the next unnamed Parse or simple Query: a driver that describes in
// one round trip and executes in the next (pgx's describe-exec mode) may get
// another server connection in between.
func (s *Session) noteUnnamed(typ byte, start int, def *stmtDef, res classify.Result) {
	switch {
	case typ == 'P' && def == nil:
		msg := (*s.out)[start:]
		if name, _ := splitCString(msg[wire.HeaderSize:]); len(name) == 0 {
			s.unnamedSeq++
			s.unnamedMsg = append(s.unnamedMsg[:0], msg...) // reused: no allocation once grown
			s.unnamedRes = res
		}
	case typ == 'Q':
		s.unnamedMsg = s.unnamedMsg[:0]
	}
}

// sendUnnamed sends a message that names no statement pgswitch renames; a
// Bind or Describe of the client's unnamed statement gets it prepared first
// where c does not have it.
func (s *Session) sendUnnamed(c *pool.Conn, typ byte, start int) error {
	switch typ {
	case 'P':
		if err := c.Send(s.client, typ, pool.Pass, ""); err != nil {
			return err
		}
		if len(s.unnamedMsg) > 0 && refersUnnamedParse((*s.out)[start:]) {
			c.SetUnnamed(s.client, s.unnamedSeq)
		}
		return nil
	case 'Q':
		if err := c.Send(s.client, typ, pool.Pass, ""); err != nil {
			return err
		}
		c.SetUnnamed(nil, 0) // a simple Query destroys the unnamed statement
		return nil
	case 'B', 'D':
		if len(s.unnamedMsg) > 0 && refersUnnamed(typ, (*s.out)[start:]) && !c.HasUnnamed(s.client, s.unnamedSeq) {
			if err := c.Send(s.client, 'P', pool.Swallow, ""); err != nil {
				return err
			}
			s.insertAt(start, s.unnamedMsg)
			c.SetUnnamed(s.client, s.unnamedSeq)
		}
	}
	return c.Send(s.client, typ, pool.Pass, "")
}

func refersUnnamedParse(msg []byte) bool {
	name, _ := splitCString(msg[wire.HeaderSize:])
	return len(name) == 0
}

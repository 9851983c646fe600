// Named statements under transaction pooling: a client's statements live
// on server connections under pgswitch's names and are prepared wherever a
// unit lands.

package router

import (
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"slices"
	"strconv"

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
		m = wire.AppendHeader(m, typ, 1+len(def.server)+1)
		m = append(m, 'S')
		m = append(m, def.server...)
		m = append(m, 0)
		s.replaceTail(start, m)
		return def
	}
	return nil
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

// appendParseCompletes appends n ParseComplete messages.
func appendParseCompletes(dst []byte, n int) []byte {
	for range n {
		dst = append(dst, '1', 0, 0, 0, 4)
	}
	return dst
}

// renew gives the statement a new server-side name, so that it is prepared
// afresh on every server connection.
func (d *stmtDef) renew() {
	d.gen++
	d.server = d.base + "_" + strconv.Itoa(d.gen)
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

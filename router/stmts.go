// Prepared statements under transaction pooling: a client's named
// statements live on server connections under pgswitch's names and are
// prepared wherever its units land; its unnamed statement follows it too.

package router

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"strconv"

	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/track"
	"github.com/pgswitch/pgswitch/wire"
)

// serverPrefix starts the server-side names of clients' protocol-level
// statements; a client cannot name another client's statement by it.
const serverPrefix = "pgswitch_"

// newStmt returns the statement a client's Parse of text with types makes.
// Its server name derives from the text, the types, the client's settings
// (which change what the text means: search_path, DateStyle, …) and the
// database's catalog epoch: clients share a server statement only when it
// means the same to them, and never across a schema change pgswitch saw.
func (s *Session) newStmt(text string, types []byte, res classify.Result) *track.Stmt {
	h := fnv.New128a()
	h.Write([]byte(text))
	h.Write([]byte{0})
	h.Write(types)
	var k [16]byte
	binary.BigEndian.PutUint64(k[:8], s.state.ContextKey())
	binary.BigEndian.PutUint64(k[8:], s.dbs.epoch.Load())
	h.Write(k[:])
	base := serverPrefix + hex.EncodeToString(h.Sum(nil))
	st := &track.Stmt{Server: base, Base: base, Text: text, Types: types, Res: res}
	if g := s.renewed[base]; g > 0 {
		// Its plan went stale: never the old server-side statement again.
		st.Gen = g
		st.Server = base + "_" + strconv.Itoa(g)
	}
	return st
}

// renewed returns st under a new server name, prepared afresh everywhere.
func (s *Session) renew(st *track.Stmt) *track.Stmt {
	n := *st
	n.Gen++
	n.Server = n.Base + "_" + strconv.Itoa(n.Gen)
	if s.renewed == nil {
		s.renewed = map[string]int{}
	}
	s.renewed[n.Base] = n.Gen
	return &n
}

// appendParse appends a Parse of st under its server name.
func appendParse(dst []byte, st *track.Stmt) []byte {
	return wire.AppendParse(dst, st.Server, st.Text, st.Types)
}

// appendNamed appends msg (a Bind, or a Describe or Close of a statement)
// with the statement name at [off, off+n) of msg replaced by name.
func appendNamed(dst, msg []byte, off, n int, name string) []byte {
	if off < wire.HeaderSize || off+n > len(msg) {
		return append(dst, msg...) // not where a name can be: as it is
	}
	start := len(dst)
	dst = append(dst, msg[:off]...)
	dst = append(dst, name...)
	dst = append(dst, msg[off+n:]...)
	wire.SetLength(dst[start:])
	return dst
}

// Messages pgswitch sends only for the answer they get, in their turn.
var (
	// closeNone closes a statement that never exists: the server answers
	// CloseComplete, whatever state it is in.
	closeNone = wire.AppendClose(nil, 'S', "pgswitch.none")
	// describeNone fails: the server skips to Sync, and in a transaction
	// block the transaction fails, exactly as after the client's own error.
	describeNone = wire.AppendDescribe(nil, 'S', "pgswitch.none")
	syncMsg      = wire.AppendSync(nil)
	// parseOK answers a Parse whose statement a server already has.
	parseOK = wire.AppendParseComplete(nil)
)

// unnamedStmt is the client's unnamed statement, which PostgreSQL keeps
// until the next unnamed Parse or simple Query: a driver that describes in
// one round trip and binds in the next (pgx's describe-exec mode) may land
// on another server connection in between.
type unnamedStmt struct {
	msg  []byte // its Parse, as sent; nil when there is none
	res  classify.Result
	text string
	n    uint64 // counts unnamed Parses: which one a server connection has
}

// portalInfo is what a bound portal runs: its Execute's effects and pins
// follow from it.
type portalInfo struct {
	res  classify.Result
	text string
}

// usedStmt is a named statement a batch runs: the Bind or Describe that
// names it (its index in the batch's msgs, where the client's name for it
// stays) and the statement.
type usedStmt struct {
	at int
	st *track.Stmt
}

// usedName is the client's name for the statement u runs.
func (s *Session) usedName(u usedStmt) string {
	m := s.b.msgs[u.at]
	var name []byte
	if m.typ == 'B' {
		_, name, _ = bindNames(s.msg(m))
	} else {
		_, name, _ = targetName(s.msg(m))
	}
	return string(name)
}

// parseBody splits a Parse message into its statement name, query text
// (a view of msg) and parameter type section.
func parseBody(msg []byte) (name []byte, text string, types []byte) {
	body := msg[wire.HeaderSize:]
	name, rest := splitCString(body)
	t, types := splitCString(rest)
	return name, cstring(t), types
}

// wellFormedParse reports whether a Parse message reads as PostgreSQL
// reads it: name and query NUL-terminated, a parameter count and that many
// type OIDs, nothing more. pgswitch rebuilds a Parse under its own name
// only when it is: a malformed one goes to the server as sent, which
// refuses it as it would refuse it from the client directly.
func wellFormedParse(msg []byte) bool {
	body := msg[wire.HeaderSize:]
	for range 2 {
		i := bytes.IndexByte(body, 0)
		if i < 0 {
			return false
		}
		body = body[i+1:]
	}
	if len(body) < 2 {
		return false
	}
	n := int(binary.BigEndian.Uint16(body))
	return len(body) == 2+4*n
}

// bindNames returns a Bind's portal and statement names, and where the
// statement name lies in msg.
func bindNames(msg []byte) (portal, stmt []byte, off int) {
	body := msg[wire.HeaderSize:]
	portal, rest := splitCString(body)
	stmt, _ = splitCString(rest)
	return portal, stmt, wire.HeaderSize + len(portal) + 1
}

// targetName returns the kind ('S' or 'P') and name a Describe or Close
// names, and where the name lies in msg.
func targetName(msg []byte) (kind byte, name []byte, off int) {
	body := msg[wire.HeaderSize:]
	if len(body) < 1 {
		return 0, nil, 0
	}
	name, _ = splitCString(body[1:])
	return body[0], name, wire.HeaderSize + 1
}

// noStatement is PostgreSQL's error for a statement name that does not exist.
func noStatement(name string) *wire.Error {
	return wire.Errorf(wire.CodeInvalidSQLStatementName, "prepared statement %q does not exist", name)
}

// duplicateStatement is PostgreSQL's error for a name already in use.
func duplicateStatement(name string) *wire.Error {
	return wire.Errorf(wire.CodeDuplicatePreparedStatement, "prepared statement %q already exists", name)
}

// isServerName reports whether name looks like one of pgswitch's server
// statement names, which no client may use directly.
func isServerName(name []byte) bool {
	return bytes.HasPrefix(name, []byte(serverPrefix))
}

// stmtRoom checks that the client may keep one more statement, name, of
// about size bytes (limits.max_client_statements and
// max_client_statement_bytes): pgswitch keeps every statement a client
// prepared, to prepare it on whichever server runs it.
func (s *Session) stmtRoom(name string, size int) *wire.Error {
	n, used := s.state.StmtUse()
	lim := s.cfg.Limits
	switch {
	case n >= lim.MaxClientStatements:
		return wire.Errorf(wire.CodeConfigurationLimitExceeded,
			"cannot prepare statement %q: this client has %d prepared statements, the most pgswitch keeps for one (limits.max_client_statements)", name, n).
			WithHint("Close or DEALLOCATE statements the client no longer uses.")
	case used+track.StmtBytes(name, &track.Stmt{})+size > lim.MaxClientStatementBytes:
		return wire.Errorf(wire.CodeConfigurationLimitExceeded,
			"cannot prepare statement %q: this client's prepared statements would hold more than %d bytes (limits.max_client_statement_bytes)", name, lim.MaxClientStatementBytes).
			WithHint("Close or DEALLOCATE statements the client no longer uses.")
	}
	return nil
}

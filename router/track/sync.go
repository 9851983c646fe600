package track

import (
	"maps"
	"slices"
	"strings"
	"unsafe"

	"github.com/pgswitch/pgswitch/router/classify"
)

// Sync returns the statements that bring the server to what client c has,
// with their (replay) effects: settings the server has and c has not are
// RESET, those that differ set as c set them; SQL-level statements the
// server has and c has not (or has with another text) are deallocated, and
// c's missing ones prepared. "" when they agree, which allocates nothing.
func (s *Server) Sync(c *Client) (string, []Effect) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.settingsEqualLocked(c) && s.sqlInSyncLocked(c) {
		return "", nil
	}
	var b strings.Builder
	var eff []Effect
	add := func(sql string, e Effect) {
		b.WriteString(sql)
		b.WriteByte(';')
		eff = append(eff, e)
	}
	for _, name := range sortedKeys(s.sqlNames) {
		if st := c.stmts[name]; st == nil || !st.SQL || st.Text != s.sqlNames[name] {
			add("DEALLOCATE "+QuoteIdent(name), Effect{Kind: classify.KindDeallocate, Name: name})
		}
	}
	for _, name := range sortedKeys(s.settings) {
		if _, ok := c.settings[name]; !ok {
			add("RESET "+QuoteIdent(name), Effect{Kind: classify.KindReset, Name: name})
		}
	}
	for _, name := range sortedKeys(c.settings) {
		if sql := c.settings[name]; s.settings[name] != sql {
			add(sql, Effect{Kind: classify.KindSet, Name: name, SQL: sql})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.stmts)) {
		if st := c.stmts[name]; st.SQL && s.sqlNames[name] != st.Text {
			add(st.Text, Effect{Kind: classify.KindPrepare, Route: st.Res.Route, Name: name, SQL: st.Text})
		}
	}
	return b.String(), eff
}

// settingsEqualLocked reports whether the server's settings are c's; both
// locks are held. Most clients share their startup's map, unchanged: once
// found equal to one, the server knows it without comparing again, until
// its own settings change.
func (s *Server) settingsEqualLocked(c *Client) bool {
	var id unsafe.Pointer
	if c.shared {
		id = *(*unsafe.Pointer)(unsafe.Pointer(&c.settings)) // a map is a pointer
		if id != nil && id == s.sameAs {
			return true
		}
	}
	if !maps.Equal(s.settings, c.settings) {
		return false
	}
	s.sameAs = id
	return true
}

// sqlInSyncLocked reports whether the server's SQL-level statements are
// exactly c's; both locks are held. It runs for every unit of work, so
// the usual case (neither has any) does not look at c's protocol-level
// statements, of which a driver may keep hundreds.
func (s *Server) sqlInSyncLocked(c *Client) bool {
	if c.sqlStmts != len(s.sqlNames) {
		return false
	}
	if c.sqlStmts == 0 {
		return true
	}
	n := 0
	for name, st := range c.stmts {
		if !st.SQL {
			continue
		}
		n++
		if s.sqlNames[name] != st.Text {
			return false
		}
	}
	return n == len(s.sqlNames)
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// QuoteIdent quotes an identifier for SQL.
func QuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// QuoteLiteral quotes a string literal for SQL, whatever the server's
// standard_conforming_strings.
func QuoteLiteral(s string) string {
	return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
}

// SetConfig returns the statement that sets parameter name to value for
// the session, as a replay or a startup parameter needs it.
func SetConfig(name, value string) string {
	return "SELECT pg_catalog.set_config(" + QuoteLiteral(name) + ", " + QuoteLiteral(value) + ", false)"
}

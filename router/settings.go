// Session settings under transaction pooling: SETs and startup parameters
// follow the client to every server connection; some state pins it.

package router

import (
	"github.com/pgswitch/pgswitch/wire"
	"maps"
	"slices"
	"strings"

	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
)

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
			pre = wire.AppendHeader(pre, 'C', 1+len(name)+1)
			pre = append(append(append(pre, 'S'), name...), 0)
		}
		c.Forget(evict)
		c.Send(s.client, 'S', pool.Swallow, "")
		pre = wire.AppendHeader(pre, 'S', 0)
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
		pre = wire.AppendQuery(pre, q)
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
		case "user", "database", "options", "replication":
			continue
		case "client_encoding":
			if strings.EqualFold(strings.ReplaceAll(v, "-", ""), "UTF8") {
				continue // what server connections use already
			}
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

// txSet is a SET sent inside a transaction block: it lasts only if the
// transaction commits.
type txSet struct {
	res  classify.Result
	text string
}

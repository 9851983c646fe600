// Package rules applies routing.rules: an ordered list of conditions on the
// client (database, user, application_name, address) and on the unit's
// statements (fingerprint, text, tables), each with where the unit goes or
// the error it gets. The first rule that matches decides.
package rules

import (
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgswitch/pgswitch/config"
)

// Kind is what a rule does with the units it matches.
type Kind uint8

const (
	ToPrimary Kind = iota + 1
	ToReplica
	ToServers // a named server or a group: Action.Has says which servers
	Reject
)

// Action is a matched rule's verdict.
type Action struct {
	Kind Kind
	Name string // the rule's, for SHOW ROUTES and logs
	// Code and Message of a Reject.
	Code, Message string
	server, group string
}

// Has reports whether srv is one of the servers a ToServers action sends
// reads to.
func (a *Action) Has(srv *config.Server) bool {
	if a.server != "" {
		return srv.Name == a.server
	}
	return a.group != "" && srv.Group == a.group
}

// Why says what the rule decided, for SHOW ROUTES and classify.
func (a *Action) Why() string {
	switch a.Kind {
	case ToPrimary:
		return "rule " + a.Name + ": primary"
	case ToReplica:
		return "rule " + a.Name + ": replica"
	case ToServers:
		if a.server != "" {
			return "rule " + a.Name + ": server " + a.server
		}
		return "rule " + a.Name + ": group " + a.group
	default:
		return "rule " + a.Name + ": rejected"
	}
}

// Client is what the rules know of the client.
type Client struct {
	Database, User, ApplicationName string
	Addr                            netip.Addr // invalid for a unix socket
}

// Stmt is one statement text of a unit, with its classification's shape
// (texts of one shape differ only in literals: they name the same tables
// and have the same fingerprint).
type Stmt struct {
	Text  string
	Shape uint64
}

// Set is routing.rules, compiled. The zero Set and a nil one match nothing.
type Set struct {
	rules []rule
	facts factCache
}

type rule struct {
	act                    Action
	db, user, app          []string
	addrs                  []netip.Prefix
	fingerprints           []uint64
	query                  *regexp.Regexp
	tables                 []string
	needTables, needFinger bool
	hasStmtConds           bool
}

// Compile compiles rules (validated by config.Load: errors there are
// skipped here).
func Compile(list []*config.Rule) *Set {
	s := &Set{}
	for i, r := range list {
		if r == nil {
			continue
		}
		c := rule{
			act:  Action{Name: r.RuleName(i), server: r.Server, group: r.Group},
			db:   r.Match.Database,
			user: r.Match.User,
			app:  r.Match.ApplicationName,
		}
		switch {
		case r.Reject != nil:
			c.act.Kind, c.act.Code, c.act.Message = Reject, r.Reject.Code, r.Reject.Message
		case r.Route == config.RoutePrimary:
			c.act.Kind = ToPrimary
		case r.Route == config.RouteReplica:
			c.act.Kind = ToReplica
		default:
			c.act.Kind = ToServers
		}
		for _, a := range r.Match.ClientAddress {
			if p, err := config.ParsePrefix(a); err == nil {
				c.addrs = append(c.addrs, p)
			}
		}
		for _, f := range r.Match.Fingerprint {
			if v, err := strconv.ParseUint(strings.TrimPrefix(f, "0x"), 16, 64); err == nil {
				c.fingerprints = append(c.fingerprints, v)
			}
		}
		if r.Match.Query != "" {
			c.query, _ = regexp.Compile(r.Match.Query)
		}
		c.tables = r.Match.Tables
		c.needTables, c.needFinger = len(c.tables) > 0, len(c.fingerprints) > 0
		c.hasStmtConds = c.needTables || c.needFinger || c.query != nil
		s.rules = append(s.rules, c)
	}
	return s
}

// Empty reports whether there is no rule.
func (s *Set) Empty() bool { return s == nil || len(s.rules) == 0 }

// Match returns the first rule that matches a unit of client's whose
// statements stmts yields (called only when a rule needs them), or nil.
func (s *Set) Match(c Client, stmts func(yield func(Stmt) bool)) *Action {
	if s.Empty() {
		return nil
	}
	for i := range s.rules {
		r := &s.rules[i]
		if !globs(r.db, c.Database) || !globs(r.user, c.User) || !globs(r.app, c.ApplicationName) || !r.fromAddr(c.Addr) {
			continue
		}
		if !r.hasStmtConds {
			return &r.act
		}
		matched := false
		stmts(func(st Stmt) bool {
			matched = s.stmtMatches(r, st)
			return !matched
		})
		if matched {
			return &r.act
		}
	}
	return nil
}

func globs(patterns []string, v string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, v); ok {
			return true
		}
	}
	return false
}

func (r *rule) fromAddr(a netip.Addr) bool {
	if len(r.addrs) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range r.addrs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// stmtMatches reports whether st satisfies every statement condition of r.
func (s *Set) stmtMatches(r *rule, st Stmt) bool {
	if r.query != nil && !r.query.MatchString(st.Text) {
		return false
	}
	if !r.needTables && !r.needFinger {
		return true
	}
	f := s.facts.get(st)
	if r.needFinger && !containsUint(r.fingerprints, f.fingerprint) {
		return false
	}
	if r.needTables && !tablesMatch(r.tables, f.tables) {
		return false
	}
	return true
}

func containsUint(list []uint64, v uint64) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// tablesMatch reports whether any table matches any pattern: a pattern
// with a dot against "schema.table" (a table named without its schema has
// none), one without against the table's name.
func tablesMatch(patterns, tables []string) bool {
	for _, t := range tables {
		name := t
		if i := strings.LastIndexByte(t, '.'); i >= 0 {
			name = t[i+1:]
		}
		for _, p := range patterns {
			target := name
			if strings.Contains(p, ".") {
				target = t
			}
			if ok, _ := path.Match(p, target); ok {
				return true
			}
		}
	}
	return false
}

// facts are what parsing a statement tells the rules: the same for every
// text of one shape.
type facts struct {
	fingerprint uint64
	tables      []string // "schema.table", or "table" when unqualified
}

// factCache keeps facts by shape, so that a text is parsed again only when
// its shape is new. It starts over when full.
type factCache struct {
	mu sync.Mutex
	m  map[uint64]facts
}

const maxFacts = 10000

func (c *factCache) get(st Stmt) facts {
	c.mu.Lock()
	f, ok := c.m[st.Shape]
	c.mu.Unlock()
	if ok && st.Shape != 0 {
		return f
	}
	f = parseFacts(st.Text)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxFacts {
		c.m = map[uint64]facts{}
	}
	c.m[st.Shape] = f
	c.mu.Unlock()
	return f
}

// parseFacts parses text. Text pg_query cannot parse names no table and
// has fingerprint 0.
func parseFacts(text string) facts {
	var f facts
	f.fingerprint, _ = pg_query.FingerprintToUInt64(text)
	tree, err := pg_query.Parse(text)
	if err != nil {
		return f
	}
	// A CTE's name read in FROM is a RangeVar too, but no table.
	seen, ctes := map[string]bool{}, map[string]bool{}
	var names []string
	for _, raw := range tree.Stmts {
		walk(raw.ProtoReflect(), func(n any) {
			switch n := n.(type) {
			case *pg_query.RangeVar:
				name := n.Relname
				if n.Schemaname != "" {
					name = n.Schemaname + "." + name
				}
				if !seen[name] {
					seen[name] = true
					names = append(names, name)
				}
			case *pg_query.CommonTableExpr:
				ctes[n.Ctename] = true
			}
		})
	}
	for _, name := range names {
		if !ctes[name] {
			f.tables = append(f.tables, name)
		}
	}
	return f
}

// walk calls fn for every node under m, m included.
func walk(m protoreflect.Message, fn func(any)) {
	fn(m.Interface())
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), fn)
			}
		case !fd.IsMap():
			walk(v.Message(), fn)
		}
		return true
	})
}

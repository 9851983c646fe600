package config

import (
	"fmt"
	"net/netip"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// Rule is one of routing.rules: the units of work it matches go where it
// says, or are refused. Rules are tried in order; the first that matches
// decides. Exactly one of Route, Server, Group and Reject is set.
type Rule struct {
	// Name appears in SHOW ROUTES, logs and classify (default "rules[i]").
	Name  string    `yaml:"name"`
	Match RuleMatch `yaml:"match"`
	// Route sends the unit to the primary or to a replica. A replica
	// takes only reads: a unit that writes goes to the primary whatever a
	// rule says (a standby would refuse it).
	Route Route `yaml:"route"`
	// Server sends reads to the server of that name; Group to the servers
	// of that group. Writes still go to the primary. When none of them is
	// fit, the unit is routed as if no rule matched.
	Server string `yaml:"server"`
	Group  string `yaml:"group"`
	// Reject refuses the unit with an ErrorResponse, as a server would.
	Reject *RuleReject `yaml:"reject"`
}

// RuleMatch says which units a rule applies to. Every condition given must
// hold; one left out holds for all. A list holds when any of its entries
// does. Names are glob patterns (path.Match: *, ?, [a-z]).
type RuleMatch struct {
	Database Patterns `yaml:"database"`
	User     Patterns `yaml:"user"`
	// ApplicationName is the one the client gave at login.
	ApplicationName Patterns `yaml:"application_name"`
	// ClientAddress: IP addresses or CIDR prefixes (10.0.0.0/8).
	ClientAddress Patterns `yaml:"client_address"`
	// The conditions below hold for a unit when one of its statements
	// satisfies all of them.
	//
	// Fingerprint: pg_query fingerprints in hex, as `pgswitch classify`
	// prints them (equal for texts that differ only in literals).
	Fingerprint Patterns `yaml:"fingerprint"`
	// Query is a regular expression (RE2 syntax) searched in the text.
	Query string `yaml:"query"`
	// Tables the statement names, as "schema.table" patterns when the
	// pattern has a dot (billing.*), else matched on the table name alone.
	// A table the query does not qualify has no schema: pgswitch cannot
	// know which one search_path resolves it to, so "billing.*" does not
	// match it, while "invoices" does.
	Tables Patterns `yaml:"tables"`
}

// RuleReject is the error a rejecting rule answers with.
type RuleReject struct {
	// Code is the SQLSTATE (default 42501, insufficient_privilege).
	Code string `yaml:"code"`
	// Message is the error's text (default: the rule refused the query).
	Message string `yaml:"message"`
}

// Patterns is a list of strings written as one string or a YAML list.
type Patterns []string

var patternsType = reflect.TypeFor[Patterns]()

// RuleName is how rule i of the list is known.
func (r *Rule) RuleName(i int) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("rules[%d]", i)
}

var sqlstate = regexp.MustCompile(`^[0-9A-Z]{5}$`)

// validateRules checks routing.rules and the server names and groups they
// refer to, and fills in defaults.
func (c *Config) validateRules(bad func(key, format string, args ...any)) {
	names, groups := map[string]bool{}, map[string]bool{}
	for dbName, db := range c.Databases {
		if db == nil {
			continue
		}
		seen := map[string]bool{}
		for i, s := range db.Servers {
			if s == nil {
				continue
			}
			if s.Name != "" {
				if seen[s.Name] {
					bad(fmt.Sprintf("databases.%s.servers[%d].name", dbName, i), "%q names another server of the database too", s.Name)
				}
				seen[s.Name] = true
				names[s.Name] = true
			}
			if s.Group != "" {
				groups[s.Group] = true
			}
		}
	}
	ruleNames := map[string]bool{}
	for i, r := range c.Routing.Rules {
		key := fmt.Sprintf("routing.rules[%d]", i)
		if r == nil {
			bad(key, "is empty")
			continue
		}
		if r.Name != "" {
			if ruleNames[r.Name] {
				bad(key+".name", "%q names an earlier rule too", r.Name)
			}
			ruleNames[r.Name] = true
		}
		actions := 0
		for _, set := range []bool{r.Route != "", r.Server != "", r.Group != "", r.Reject != nil} {
			if set {
				actions++
			}
		}
		if actions != 1 {
			bad(key, "needs exactly one of route, server, group and reject, got %d", actions)
		}
		if r.Route != "" && r.Route != RoutePrimary && r.Route != RouteReplica {
			bad(key+".route", `must be one of "primary", "replica", got %q`, r.Route)
		}
		if r.Server != "" && !names[r.Server] {
			bad(key+".server", "no server is named %q (give one a name: databases.<db>.servers[i].name)", r.Server)
		}
		if r.Group != "" && !groups[r.Group] {
			bad(key+".group", "no server is in group %q (databases.<db>.servers[i].group)", r.Group)
		}
		if r.Reject != nil {
			if r.Reject.Code == "" {
				r.Reject.Code = "42501"
			}
			if !sqlstate.MatchString(r.Reject.Code) {
				bad(key+".reject.code", "must be a SQLSTATE of five digits or capital letters, got %q", r.Reject.Code)
			}
			if r.Reject.Message == "" {
				r.Reject.Message = "query refused by pgswitch rule " + strconv.Quote(r.RuleName(i))
			}
		}
		m := &r.Match
		for field, list := range map[string]Patterns{"database": m.Database, "user": m.User,
			"application_name": m.ApplicationName, "tables": m.Tables} {
			for _, p := range list {
				if _, err := path.Match(p, ""); err != nil {
					bad(key+".match."+field, "bad pattern %q: %v", p, err)
				}
			}
		}
		for _, a := range m.ClientAddress {
			if _, err := ParsePrefix(a); err != nil {
				bad(key+".match.client_address", "%v", err)
			}
		}
		for _, f := range m.Fingerprint {
			if _, err := strconv.ParseUint(strings.TrimPrefix(f, "0x"), 16, 64); err != nil {
				bad(key+".match.fingerprint", "%q is not a fingerprint in hex (pgswitch classify prints them)", f)
			}
		}
		if m.Query != "" {
			if _, err := regexp.Compile(m.Query); err != nil {
				bad(key+".match.query", "%v", err)
			}
		}
	}
}

// ParsePrefix reads an IP address or a CIDR prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither an IP address nor a CIDR prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither an IP address nor a CIDR prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

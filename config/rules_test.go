package config

import (
	"strings"
	"testing"
)

// servers names a server and a group that rules can refer to.
const servers = `databases:
  app:
    servers:
      - {host: 127.0.0.1, port: 5432}
      - {host: 127.0.0.1, port: 5433, name: analytics, group: reporting}
users:
  app: {password: secret}
`

func TestRuleErrors(t *testing.T) {
	for _, tc := range []struct {
		name, rules string
		want        []string
	}{
		{"no action", "- match: {user: app}\n", []string{`routing.rules[0]: needs exactly one of route, server, group and reject, got 0`}},
		{"two actions", "- route: primary\n  server: analytics\n", []string{`routing.rules[0]: needs exactly one of route, server, group and reject, got 2`}},
		{"route auto", "- route: auto\n", []string{`routing.rules[0].route: must be one of "primary", "replica", got "auto"`}},
		{"unknown server", "- server: reports\n", []string{`routing.rules[0].server: no server is named "reports"`}},
		{"unknown group", "- group: bi\n", []string{`routing.rules[0].group: no server is in group "bi"`}},
		{"bad SQLSTATE", "- reject: {code: 4250}\n", []string{`routing.rules[0].reject.code: must be a SQLSTATE of five digits or capital letters, got "4250"`}},
		{"bad regex", "- match: {query: 'select ('}\n  route: primary\n", []string{`routing.rules[0].match.query: error parsing regexp`}},
		{"bad glob", "- match: {user: 'a['}\n  route: primary\n", []string{`routing.rules[0].match.user: bad pattern "a["`}},
		{"bad address", "- match: {client_address: [10.0.0.0/33]}\n  route: primary\n", []string{`routing.rules[0].match.client_address: "10.0.0.0/33" is neither`}},
		{"bad fingerprint", "- match: {fingerprint: xyz}\n  route: primary\n", []string{`routing.rules[0].match.fingerprint: "xyz" is not a fingerprint in hex`}},
		{"unknown key", "- {route: primary, match: {usr: app}}\n", []string{`routing.rules[0].match.usr: unknown key; did you mean user?`}},
		{"duplicate names", "- {name: a, route: primary}\n- {name: a, route: replica}\n", []string{`routing.rules[1].name: "a" names an earlier rule too`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErrorLines(t, mustFail(t, servers+"routing:\n  rules:\n"+indentLines(tc.rules, "    ")), tc.want)
		})
	}
}

func TestRuleDefaults(t *testing.T) {
	cfg, err := Parse([]byte(servers + "routing:\n  rules:\n    - match: {application_name: [metabase, 'superset*'], database: app}\n      server: analytics\n    - reject: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Routing.Rules
	if got := r[0].Match.ApplicationName; len(got) != 2 || got[1] != "superset*" {
		t.Errorf("application_name list: %q", got)
	}
	if got := r[0].Match.Database; len(got) != 1 || got[0] != "app" {
		t.Errorf("a single database reads as a list of one: %q", got)
	}
	if r[1].Reject.Code != "42501" || r[1].Reject.Message != `query refused by pgswitch rule "rules[1]"` {
		t.Errorf("reject defaults: %+v", r[1].Reject)
	}
}

func TestServerNamesUnique(t *testing.T) {
	checkErrorLines(t, mustFail(t, `databases:
  app:
    servers:
      - {host: 127.0.0.1, port: 5432, name: a}
      - {host: 127.0.0.1, port: 5433, name: a}
users:
  app: {password: secret}
`), []string{`databases.app.servers[1].name: "a" names another server of the database too`})
}

func indentLines(s, by string) string {
	return by + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+by) + "\n"
}

package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/router/classify"
)

// ruleSet is the rules every case of TestMatch runs against, in this order.
const ruleSet = `
- name: no-drop
  match: {query: '(?i)^\s*drop\s'}
  reject: {code: "42501", message: "no DROP here"}
- name: billing
  match: {tables: "billing.*"}
  route: primary
- name: audit-table
  match: {tables: [audit_log, "ops.audit_*"], user: [app]}
  reject: {code: "P0001", message: "audit is append-only"}
- name: metabase
  match: {application_name: "metabase*", database: app}
  server: analytics
- name: office
  match: {client_address: [10.1.0.0/16, "192.0.2.7"]}
  group: reporting
- name: hot-query
  match: {fingerprint: FINGERPRINT}
  route: replica
`

func TestMatch(t *testing.T) {
	hot := "SELECT * FROM hot WHERE id = 1"
	fp, err := classify.Fingerprint(hot)
	if err != nil {
		t.Fatal(err)
	}
	set := compileYAML(t, ruleSetWith(fp))
	app := Client{Database: "app", User: "app"}
	office := Client{Database: "app", User: "bob", Addr: netip.MustParseAddr("10.1.2.3")}
	tests := []struct {
		name   string
		client Client
		stmts  []string
		want   string // the rule's name; "" for none
	}{
		{"reject by regex", app, []string{"  DROP TABLE t"}, "no-drop"},
		{"regex must match", app, []string{"SELECT 'drop table'"}, ""},
		{"qualified table", app, []string{"SELECT * FROM billing.invoices"}, "billing"},
		{"table in a join", app, []string{"SELECT * FROM orders o JOIN billing.payments p USING (id)"}, "billing"},
		{"table in a subquery", app, []string{"SELECT (SELECT max(x) FROM billing.ledger)"}, "billing"},
		{"table written by an INSERT", app, []string{"INSERT INTO billing.ledger VALUES (1)"}, "billing"},
		{"unqualified table has no schema", app, []string{"SELECT * FROM invoices"}, ""},
		{"a CTE is no table", app, []string{"WITH audit_log AS (SELECT 1) SELECT * FROM audit_log"}, ""},
		{"pattern without a dot matches the name", app, []string{"DELETE FROM public.audit_log"}, "audit-table"},
		{"pattern with a glob", app, []string{"UPDATE ops.audit_2026 SET x = 1"}, "audit-table"},
		{"user condition", Client{Database: "app", User: "admin"}, []string{"DELETE FROM audit_log"}, ""},
		{"any statement of a batch", app, []string{"SELECT 1", "SELECT * FROM billing.x"}, "billing"},
		{"application_name glob", Client{Database: "app", ApplicationName: "metabase v50"}, []string{"SELECT 1"}, "metabase"},
		{"database condition", Client{Database: "other", ApplicationName: "metabase"}, []string{"SELECT 1"}, ""},
		{"first match wins", Client{Database: "app", ApplicationName: "metabase"}, []string{"SELECT * FROM billing.x"}, "billing"},
		{"client prefix", office, []string{"SELECT 1"}, "office"},
		{"client address", Client{Addr: netip.MustParseAddr("192.0.2.7")}, []string{"SELECT 1"}, "office"},
		{"IPv4-mapped address", Client{Addr: netip.MustParseAddr("::ffff:10.1.9.9")}, []string{"SELECT 1"}, "office"},
		{"other address", Client{Addr: netip.MustParseAddr("10.2.0.1")}, []string{"SELECT 1"}, ""},
		{"unix socket has no address", Client{}, []string{"SELECT 1"}, ""},
		{"fingerprint ignores literals", app, []string{"SELECT * FROM hot WHERE id = 42"}, "hot-query"},
		{"fingerprint of another shape", app, []string{"SELECT * FROM hot WHERE id > 42"}, ""},
		{"unparsable text", app, []string{"SELEKT * FROM billing.x"}, ""},
	}
	c := classify.New(classify.Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Twice: the second time facts come from the cache.
			for range 2 {
				act := set.Match(tt.client, stmtsOf(c, tt.stmts))
				got := ""
				if act != nil {
					got = act.Name
				}
				if got != tt.want {
					t.Fatalf("matched %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestActions(t *testing.T) {
	set := compileYAML(t, ruleSetWith(1))
	byName := map[string]*Action{}
	for i := range set.rules {
		byName[set.rules[i].act.Name] = &set.rules[i].act
	}
	if a := byName["no-drop"]; a.Kind != Reject || a.Code != "42501" || a.Message != "no DROP here" {
		t.Errorf("no-drop: %+v", a)
	}
	if a := byName["billing"]; a.Kind != ToPrimary || a.Why() != "rule billing: primary" {
		t.Errorf("billing: %+v %q", a, a.Why())
	}
	if a := byName["hot-query"]; a.Kind != ToReplica {
		t.Errorf("hot-query: %+v", a)
	}
	analytics := &config.Server{Name: "analytics"}
	reporting := &config.Server{Group: "reporting"}
	other := &config.Server{Name: "other", Group: "other"}
	if a := byName["metabase"]; a.Kind != ToServers || !a.Has(analytics) || a.Has(reporting) || a.Has(other) {
		t.Errorf("metabase: %+v", a)
	}
	if a := byName["office"]; a.Kind != ToServers || !a.Has(reporting) || a.Has(analytics) || a.Why() != "rule office: group reporting" {
		t.Errorf("office: %+v", a)
	}
}

// TestStmtsOnlyWhenNeeded: rules that look at the client alone never ask
// for the unit's statements.
func TestStmtsOnlyWhenNeeded(t *testing.T) {
	set := compileYAML(t, `
- match: {user: app}
  route: primary
`)
	asked := false
	act := set.Match(Client{User: "app"}, func(func(Stmt) bool) { asked = true })
	if act == nil || act.Name != "rules[0]" || asked {
		t.Fatalf("matched %+v, statements asked for: %v", act, asked)
	}
	if (*Set)(nil).Match(Client{}, nil) != nil || !(*Set)(nil).Empty() {
		t.Fatal("a nil set matched")
	}
}

func ruleSetWith(fp uint64) string {
	return strings.ReplaceAll(ruleSet, "FINGERPRINT", fmt.Sprintf("%016x", fp))
}

// compileYAML loads rules through a whole configuration, as pgswitch does.
func compileYAML(t *testing.T, list string) *Set {
	t.Helper()
	cfg := "databases:\n  app:\n    servers:\n" +
		"      - {host: 127.0.0.1, port: 5432}\n" +
		"      - {host: 127.0.0.1, port: 5433, name: analytics, group: reporting}\n" +
		"users:\n  app: {password: x}\nrouting:\n  rules:\n" + indent(list, "    ")
	c, err := config.Parse([]byte(cfg))
	if err != nil {
		t.Fatalf("rules refused: %v", err)
	}
	return Compile(c.Routing.Rules)
}

func indent(s, by string) string {
	return by + strings.ReplaceAll(strings.TrimLeft(s, "\n"), "\n", "\n"+by)
}

func stmtsOf(c *classify.Classifier, texts []string) func(func(Stmt) bool) {
	return func(yield func(Stmt) bool) {
		for _, text := range texts {
			if !yield(Stmt{Text: text, Shape: c.Classify(text).Shape}) {
				return
			}
		}
	}
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgswitch/pgswitch/router/classify"
)

// TestClassifyShowsRule: with --config, classify names the routing rule
// that matches the client described by the flags, and prints each text's
// fingerprint, which a rule can then name.
func TestClassifyShowsRule(t *testing.T) {
	hot := "SELECT * FROM hot WHERE id = 7"
	fp, err := classify.Fingerprint(hot)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "pgswitch.yaml")
	text := `auth_type: trust
databases:
  app:
    servers:
      - {host: 127.0.0.1, port: 5432}
      - {host: 127.0.0.1, port: 5433, name: analytics}
users:
  app: {password: x}
routing:
  rules:
    - name: no-drop
      match: {query: '(?i)^\s*drop\s'}
      reject: {code: "42501", message: no DROP}
    - name: metabase
      match: {application_name: metabase, database: app}
      server: analytics
    - name: hot
      match: {fingerprint: ` + hex16(fp) + `}
      route: primary
`
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--database", "app", "--application-name", "metabase", "SELECT 1"}, "rule\tmetabase: server analytics\n"},
		{[]string{"--database", "other", "--application-name", "metabase", "SELECT 1"}, "rule\tnone matched\n"},
		{[]string{"DROP TABLE t"}, "rule\tno-drop: rejected with 42501 \"no DROP\"\n"},
		{[]string{"SELECT * FROM hot WHERE id = 99"}, "rule\thot: primary\nfingerprint\t1\t" + hex16(fp) + "\n"},
	} {
		out, err := runCLI(t, append([]string{"classify", "--config", conf}, c.args...)...)
		if err != nil {
			t.Fatalf("%q: %v\n%s", c.args, err, out)
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("%q: got %q, want it to contain %q", c.args, out, c.want)
		}
	}
}

func hex16(v uint64) string { return fmt.Sprintf("%016x", v) }

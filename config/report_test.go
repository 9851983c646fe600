package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every error names the file, the line of the value it is about and the
// key's path, in words, once: a broken file as check-config shows it.
func TestErrorPositions(t *testing.T) {
	t.Setenv("PGSWITCH_TEST_SET", "secret")
	t.Setenv("PGSWITCH_TEST_UNSET", "")
	os.Unsetenv("PGSWITCH_TEST_UNSET")
	for _, tc := range []struct {
		name, yaml string
		want       []string // whole error lines, after "pgswitch.yaml:"
	}{
		{"the issue's two", `listen: 127.0.0.1:6432
pool_mode: transaction

pool:
  min_idle: 0
  max_client_conn: 100
  sise: 10
  reset_query: DISCARD ALL
  max_prepared_statements: 200
  max_startup_conn: 1000
  size: lots
` + minimal, []string{
			`7: pool.sise: unknown key; did you mean size?`,
			`11: pool.size: "lots" is not a number`,
		}},
		{"not a number", `pool:
  max_client_conn: 100
  size: lots
` + minimal, []string{`3: pool.size: "lots" is not a number`}},
		{"not a whole number", "pool:\n  size: 2.5\n" + minimal, []string{`2: pool.size: 2.5 is not a whole number`}},
		{"not a duration", "timeouts:\n  client_login: 15s\n  query_wait: 30 seconds\n" + minimal,
			[]string{`3: timeouts.query_wait: "30 seconds" is not a duration: give a unit (500ms, 30s, 1m30s) or a whole number of seconds`}},
		{"not a boolean", `databases:
  app:
    servers:
      - host: 127.0.0.1
      - host: 127.0.0.1
        backup: maybe
users:
  app:
    password: secret
`, []string{`6: databases.app.servers[1].backup: "maybe" is not true or false`}},
		{"unknown key in the second server", `databases:
  app:
    servers:
      - host: 127.0.0.1
      - host: 127.0.0.1
        prot: 5433
users:
  app:
    password: secret
`, []string{`6: databases.app.servers[1].prot: unknown key; did you mean port?`}},
		{"validation at the value's line", `databases:
  app:
    route: sideways
    servers:
      - host: 127.0.0.1
        port: 70000
users:
  app:
    password: secret
`, []string{
			`3: databases.app.route: must be one of "auto", "primary", "replica", got "sideways"`,
			`6: databases.app.servers[0].port: must be between 1 and 65535, got 70000`,
		}},
		{"a key that is missing, at the line of what lacks it", `databases:
  app:
    servers:
      - port: 5433
users:
  app:
    password: secret
`, []string{`4: databases.app.servers[0].host: is required`}},
		{"unset variable, and no second error for the empty password", `databases:
  app:
    servers: [{host: 127.0.0.1}]
users:
  app:
    password: ${PGSWITCH_TEST_UNSET}
`, []string{`6: users.app.password: environment variable PGSWITCH_TEST_UNSET is not set`}},
		{"a set variable expands without error, the next user's does not", `databases:
  app:
    servers: [{host: 127.0.0.1}]
users:
  app:
    password: ${PGSWITCH_TEST_SET}
  ops:
    password: "${PGSWITCH_TEST_UNSET}"
    pool_size: -1
`, []string{
			`8: users.ops.password: environment variable PGSWITCH_TEST_UNSET is not set`,
			`9: users.ops.pool_size: must not be negative, got -1`,
		}},
		{"a value read through aliases is reported once", `databases:
  app:
    servers: &servers
      - host: 127.0.0.1
        port: many
  app_rw:
    route: primary
    servers: *servers
users:
  app:
    password: secret
`, []string{`5: databases.app.servers[0].port: "many" is not a number`}},
		{"and checked once", `databases:
  app:
    servers: &servers
      - host: 127.0.0.1
        weight: -2
  app_rw:
    route: primary
    servers: *servers
users:
  app:
    password: secret
`, []string{`5: databases.app.servers[0].weight: must be at least 1, got -2`}},
		{"a block of anchors is a key like any other", "x-defaults: &defaults\n  size: 5\n" + minimal,
			[]string{`1: x-defaults: unknown key`}},
		{"set twice", "listen: 127.0.0.1:6432\npool:\n  size: 5\n  size: 6\n" + minimal,
			[]string{`4: pool.size: is set twice (first on line 3)`}},
		{"a list where settings belong", "pool:\n  - size: 5\n" + minimal,
			[]string{`2: pool: must be a set of keys (key: value), not a list`}},
		{"settings where a list belongs", "routing:\n  write_functions: audit\n" + minimal,
			[]string{`2: routing.write_functions: must be a list (- item, or [a, b]), not "audit"`}},
		{"a database that is a string, and nothing said of what it lacks", "databases:\n  app: primary\nusers:\n  app:\n    password: x\n",
			[]string{`2: databases.app: must be a set of keys (key: value), not "primary"`}},
		// yaml.v3 names the line where the block it was reading starts.
		{"YAML syntax", "pool:\n  size: 5\n servers: [\n", []string{`2: not valid YAML: did not find expected key`}},
		{"tab indentation", "pool:\n\tsize: 5\n", []string{`2: not valid YAML: found character that cannot start any token`}},
		{"missing sections have no line", "listen: 127.0.0.1:6432\n", []string{
			`databases: at least one database is required`,
			`users: at least one user is required`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pgswitch.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load accepted:\n%s", tc.yaml)
			}
			got := strings.Split(err.Error(), "\n")
			for i, w := range tc.want {
				if w[0] >= '0' && w[0] <= '9' {
					tc.want[i] = path + ":" + w
				} else {
					tc.want[i] = path + ": " + w
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != path {
				t.Errorf("got %T, want *Error with File %s", err, path)
			}
		})
	}
}

// << merges keys in, the mapping's own keys winning, and an error in a
// merged key is reported at its own line.
func TestMergeKeys(t *testing.T) {
	cfg := mustParse(t, `databases:
  app:
    servers:
      - &server {host: 127.0.0.1, port: 5433, weight: 2}
      - {<<: *server, port: 5434}
users:
  app:
    password: secret
`)
	s := cfg.Databases["app"].Servers
	if got, want := s[1].Addr(), "127.0.0.1:5434"; got != want {
		t.Errorf("servers[1]: got %s, want %s", got, want)
	}
	if s[1].Weight != 2 {
		t.Errorf("servers[1].weight: got %d, want 2 from the merged server", s[1].Weight)
	}
	msg := mustFail(t, "databases:\n  app:\n    servers:\n      - &s {host: h, fall: x}\n      - {<<: *s}\nusers:\n  app: {password: x}\n")
	if want := `line 4: databases.app.servers[0].fall: "x" is not a number`; msg != want {
		t.Errorf("got %q, want %q", msg, want)
	}
}

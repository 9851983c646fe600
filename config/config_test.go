package config

import (
	"fmt"
	"strings"
	"testing"
)

// minimal is the smallest valid configuration; tests append top-level keys to it.
const minimal = `databases:
  app:
    servers: [{host: 127.0.0.1}]
users:
  app:
    password: secret
`

// withServer is minimal with extra fields (flow style) on its only server.
func withServer(fields string) string {
	return "databases:\n  app:\n    servers: [{host: 127.0.0.1, " + fields + "}]\nusers:\n  app:\n    password: secret\n"
}

// withDatabase is minimal with extra fields (flow style) on database app.
func withDatabase(fields string) string {
	return "databases:\n  app: {servers: [{host: 127.0.0.1}], " + fields + "}\nusers:\n  app:\n    password: secret\n"
}

// withUser is minimal with extra fields (flow style) on user app.
func withUser(fields string) string {
	return "databases:\n  app:\n    servers: [{host: 127.0.0.1}]\nusers:\n  app: {" + fields + "}\n"
}

func mustParse(t *testing.T, yaml string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("Parse: %v\ninput:\n%s", err, yaml)
	}
	return cfg
}

// mustFail parses yaml, which must be rejected, and returns the error text.
func mustFail(t *testing.T, yaml string) string {
	t.Helper()
	cfg, err := Parse([]byte(yaml))
	if err == nil {
		t.Fatalf("Parse accepted invalid input:\n%s", yaml)
	}
	if cfg != nil {
		t.Fatalf("Parse returned a config together with error %v", err)
	}
	return err.Error()
}

func TestServerAddr(t *testing.T) {
	for _, tc := range []struct {
		host string
		port int
		want string
	}{
		{"127.0.0.1", 5432, "127.0.0.1:5432"},
		{"db.internal", 6543, "db.internal:6543"},
		{"::1", 5433, "[::1]:5433"},
	} {
		s := &Server{Host: tc.host, Port: tc.port}
		if got := s.Addr(); got != tc.want {
			t.Errorf("Server{%q, %d}.Addr(): got %q, want %q", tc.host, tc.port, got, tc.want)
		}
	}
}

// PoolModeFor: database > user > global.
func TestPoolModeFor(t *testing.T) {
	for _, tc := range []struct {
		name             string
		global, user, db PoolMode
		nilUser, nilDB   bool
		want             PoolMode
	}{
		{name: "global only", global: PoolModeTransaction, want: PoolModeTransaction},
		{name: "user overrides global", global: PoolModeTransaction, user: PoolModeSession, want: PoolModeSession},
		{name: "database overrides global", global: PoolModeTransaction, db: PoolModeSession, want: PoolModeSession},
		{name: "database overrides user", global: PoolModeSession, user: PoolModeSession, db: PoolModeTransaction, want: PoolModeTransaction},
		{name: "database overrides user the other way", global: PoolModeTransaction, user: PoolModeTransaction, db: PoolModeSession, want: PoolModeSession},
		{name: "nil database and user", global: PoolModeSession, nilUser: true, nilDB: true, want: PoolModeSession},
		{name: "nil database, user set", global: PoolModeTransaction, user: PoolModeSession, nilDB: true, want: PoolModeSession},
		{name: "nil user, database set", global: PoolModeTransaction, db: PoolModeSession, nilUser: true, want: PoolModeSession},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{PoolMode: tc.global}
			u, db := &User{PoolMode: tc.user}, &Database{PoolMode: tc.db}
			if tc.nilUser {
				u = nil
			}
			if tc.nilDB {
				db = nil
			}
			if got := c.PoolModeFor(db, u); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// PoolSizeFor: user > database > pool.size (the other way round from pool mode).
func TestPoolSizeFor(t *testing.T) {
	for _, tc := range []struct {
		name             string
		global, user, db int
		nilUser, nilDB   bool
		want             int
	}{
		{name: "global only", global: 20, want: 20},
		{name: "database overrides global", global: 20, db: 7, want: 7},
		{name: "user overrides global", global: 20, user: 5, want: 5},
		{name: "user overrides database", global: 20, user: 5, db: 7, want: 5},
		{name: "larger user size still wins", global: 20, user: 50, db: 7, want: 50},
		{name: "nil database and user", global: 20, nilUser: true, nilDB: true, want: 20},
		{name: "nil user, database set", global: 20, db: 7, nilUser: true, want: 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{Pool: PoolSettings{Size: tc.global}}
			u, db := &User{PoolSize: tc.user}, &Database{PoolSize: tc.db}
			if tc.nilUser {
				u = nil
			}
			if tc.nilDB {
				db = nil
			}
			if got := c.PoolSizeFor(db, u); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

// AuthFor: user > auth_type.
func TestAuthFor(t *testing.T) {
	for _, tc := range []struct {
		name         string
		global, user AuthType
		nilUser      bool
		want         AuthType
	}{
		{name: "global", global: AuthSCRAM, want: AuthSCRAM},
		{name: "user trust over global scram", global: AuthSCRAM, user: AuthTrust, want: AuthTrust},
		{name: "user md5 over global trust", global: AuthTrust, user: AuthMD5, want: AuthMD5},
		{name: "user scram over global md5", global: AuthMD5, user: AuthSCRAM, want: AuthSCRAM},
		{name: "nil user", global: AuthMD5, nilUser: true, want: AuthMD5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{AuthType: tc.global}
			u := &User{Auth: tc.user}
			if tc.nilUser {
				u = nil
			}
			if got := c.AuthFor(u); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// The overrides reach the helpers through Parse, with the same precedence.
func TestPrecedenceThroughParse(t *testing.T) {
	cfg := mustParse(t, `pool_mode: transaction
auth_type: md5
pool:
  size: 30
databases:
  plain:
    servers: [{host: 127.0.0.1}]
  sized:
    pool_size: 8
    pool_mode: transaction
    servers: [{host: 127.0.0.1}]
users:
  alice:
    password: a
  bob:
    password: b
    auth: scram-sha-256
    pool_mode: session
    pool_size: 3
`)
	plain, sized := cfg.Databases["plain"], cfg.Databases["sized"]
	alice, bob := cfg.Users["alice"], cfg.Users["bob"]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"mode plain/alice", cfg.PoolModeFor(plain, alice), PoolModeTransaction},
		{"mode plain/bob", cfg.PoolModeFor(plain, bob), PoolModeSession},
		{"mode sized/bob", cfg.PoolModeFor(sized, bob), PoolModeTransaction},
		{"size plain/alice", cfg.PoolSizeFor(plain, alice), 30},
		{"size sized/alice", cfg.PoolSizeFor(sized, alice), 8},
		{"size sized/bob", cfg.PoolSizeFor(sized, bob), 3},
		{"auth alice", cfg.AuthFor(alice), AuthMD5},
		{"auth bob", cfg.AuthFor(bob), AuthSCRAM},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestRedacted(t *testing.T) {
	const (
		alicePW  = "alice-plain-Zq81"
		bobPW    = "bob-server-Xk42"
		healthPW = "health-only-Wv93"
		bobSCRAM = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVka2V5:c2VydmVya2V5"
	)
	t.Setenv("PGSWITCH_TEST_HEALTH_PW", healthPW)
	cfg := mustParse(t, `routing:
  write_functions: [audit_log]
admin:
  admin_users: [alice]
  stats_users: [bob]
health:
  user: alice
  password: ${PGSWITCH_TEST_HEALTH_PW}
databases:
  app:
    servers: [{host: 127.0.0.1, role: primary}, {host: 127.0.0.1, port: 5433}]
users:
  alice:
    password: `+alicePW+`
  bob:
    password: `+bobSCRAM+`
    server_password: `+bobPW+`
  carol:
    auth: trust
`)
	r := cfg.Redacted()

	secrets := []string{alicePW, bobPW, healthPW, bobSCRAM}
	shown := fmt.Sprintf("%+v", r.Health)
	for name, u := range r.Users {
		shown += fmt.Sprintf("\n%s: %+v", name, *u)
	}
	for _, s := range secrets {
		if strings.Contains(shown, s) {
			t.Errorf("redacted copy shows secret %q:\n%s", s, shown)
		}
	}
	for _, name := range []string{"alice", "bob", "carol"} {
		if r.Users[name] == cfg.Users[name] {
			t.Errorf("users.%s: redacted copy shares the original *User", name)
		}
		if r.Users[name].Name != name {
			t.Errorf("users.%s: redacted name got %q, want %q", name, r.Users[name].Name, name)
		}
	}
	if got := r.Users["alice"].Password; got != redacted {
		t.Errorf("alice password: got %q, want %q", got, redacted)
	}
	if got := r.Users["bob"].ServerPassword; got != redacted {
		t.Errorf("bob server_password: got %q, want %q", got, redacted)
	}
	// An empty password stays empty: redaction must not invent one.
	if got := r.Users["carol"].Password; got != "" {
		t.Errorf("carol (trust, no password): got %q, want empty", got)
	}
	if r.Health.User != "alice" {
		t.Errorf("health.user: got %q, want alice (not a secret)", r.Health.User)
	}

	// The original keeps its secrets.
	for _, tc := range []struct{ name, got, want string }{
		{"alice password", cfg.Users["alice"].Password, alicePW},
		{"bob password", cfg.Users["bob"].Password, bobSCRAM},
		{"bob server_password", cfg.Users["bob"].ServerPassword, bobPW},
		{"health password", cfg.Health.Password, healthPW},
	} {
		if tc.got != tc.want {
			t.Errorf("original %s after Redacted: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}

	// It is a deep copy: changing it leaves the original alone.
	r.Databases["app"].Servers[0].Host = "changed"
	r.Databases["app"].Route = RouteReplica
	r.Routing.WriteFunctions[0] = "changed"
	r.Admin.Users[0] = "changed"
	r.Admin.StatsUsers[0] = "changed"
	if got := cfg.Databases["app"].Servers[0].Host; got != "127.0.0.1" {
		t.Errorf("original server host: got %q, want 127.0.0.1", got)
	}
	if got := cfg.Databases["app"].Route; got != RouteAuto {
		t.Errorf("original route: got %q, want auto", got)
	}
	if got := cfg.Routing.WriteFunctions[0]; got != "audit_log" {
		t.Errorf("original write_functions: got %q, want audit_log", got)
	}
	if got := cfg.Admin.Users[0]; got != "alice" {
		t.Errorf("original admin_users: got %q, want alice", got)
	}
	if got := cfg.Admin.StatsUsers[0]; got != "bob" {
		t.Errorf("original stats_users: got %q, want bob", got)
	}
	if got, want := len(r.Databases["app"].Servers), 2; got != want {
		t.Errorf("redacted servers: got %d, want %d", got, want)
	}
}

func TestRedactedTLS(t *testing.T) {
	c := &Config{TLS: &TLS{CertFile: "a.crt", KeyFile: "a.key"}}
	r := c.Redacted()
	if r.TLS == c.TLS {
		t.Fatal("redacted copy shares the original *TLS")
	}
	if *r.TLS != *c.TLS {
		t.Errorf("TLS paths: got %+v, want %+v (file names are not secrets)", *r.TLS, *c.TLS)
	}
}

package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var errorLinePrefix = regexp.MustCompile(`^line [0-9]+: `)

const (
	scramVerifier = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVka2V5c3RvcmVka2V5:c2VydmVya2V5c2VydmVya2V5"
	md5Verifier32 = "md5" + "5f4dcc3b5aa765d61d8327deb882cf99"
)

// checkErrorLines asserts that every line of msg starts with one of want and
// every want starts some line: the right keys, and no others. The "line N: "
// in front of each is left out (TestErrorPositions checks them).
func checkErrorLines(t *testing.T, msg string, want []string) {
	t.Helper()
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		lines[i] = errorLinePrefix.ReplaceAllString(l, "")
	}
	for _, l := range lines {
		found := false
		for _, w := range want {
			if strings.HasPrefix(l, w) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("unexpected error line %q", l)
		}
	}
	for _, w := range want {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, w) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("missing error line starting %q; got:\n%s", w, msg)
		}
	}
}

func TestValidationErrors(t *testing.T) {
	const usersOnly = "users:\n  app:\n    password: secret\n"
	const dbOnly = "databases:\n  app:\n    servers: [{host: 127.0.0.1}]\n"
	type tcase struct {
		name, yaml string
		want       []string
	}
	cases := []tcase{
		// Top level.
		{"listen without port", minimal + "listen: localhost\n", []string{`listen: must be host:port, got "localhost"`}},
		{"listen port out of range", minimal + "listen: 127.0.0.1:70000\n", []string{`listen: invalid port in "127.0.0.1:70000"`}},
		{"listen port not a number", minimal + "listen: 127.0.0.1:pg\n", []string{`listen: invalid port in "127.0.0.1:pg"`}},
		{"metrics_listen without host", minimal + "metrics_listen: 9187\n", []string{`metrics_listen: must be host:port, got "9187"`}},
		{"pool_mode", minimal + "pool_mode: statement\n", []string{`pool_mode: must be one of "session", "transaction", got "statement"`}},
		{"pool_mode is case sensitive", minimal + "pool_mode: Session\n", []string{`pool_mode: must be one of`}},
		{"auth_type", minimal + "auth_type: ldap\n", []string{`auth_type: must be one of "scram-sha-256", "md5", "password", "trust", "cert", "peer", got "ldap"`}},
		{"server_tls_mode", minimal + "server_tls_mode: on\n", []string{`server_tls_mode: must be one of "disable", "allow", "prefer", "require", "verify-ca", "verify-full", got "on"`}},

		// pool
		// One error, not a second about min_idle against a size that is wrong.
		{"pool.size negative", minimal + "pool: {size: -1}\n", []string{"pool.size: must be at least 1, got -1"}},
		{"pool.min_idle above size", minimal + "pool: {size: 5, min_idle: 6}\n", []string{"pool.min_idle: must not exceed pool.size (5), got 6"}},
		{"pool.min_idle negative", minimal + "pool: {min_idle: -1}\n", []string{"pool.min_idle: must not be negative, got -1"}},
		{"pool.max_client_conn negative", minimal + "pool: {max_client_conn: -1}\n", []string{"pool.max_client_conn: must not be negative, got -1"}},
		{"pool.max_startup_conn negative", minimal + "pool: {max_startup_conn: -1}\n", []string{"pool.max_startup_conn: must not be negative, got -1"}},
		{"pool.max_prepared_statements negative", minimal + "pool: {max_prepared_statements: -5}\n", []string{"pool.max_prepared_statements: must not be negative, got -5"}},

		// limits, routing
		{"limits.max_message_size too small", minimal + "limits: {max_message_size: 1023}\n", []string{"limits.max_message_size: must be at least 1024 bytes, got 1023"}},
		{"limits.max_concurrent_auth negative", minimal + "limits: {max_concurrent_auth: -1}\n", []string{"limits.max_concurrent_auth: must be at least 1, got -1"}},
		{"workers negative", minimal + "workers: -1\n", []string{"workers: must be 0 (the CPUs) or more, got -1"}},
		{"routing.load_balance", minimal + "routing: {load_balance: weighted}\n", []string{`routing.load_balance: must be one of "round_robin", "least_connections", "random", got "weighted"`}},
		{"routing.max_replica_lag_bytes negative", minimal + "routing: {max_replica_lag_bytes: -1}\n", []string{"routing.max_replica_lag_bytes: must not be negative, got -1"}},
		{"routing.cache_size negative", minimal + "routing: {cache_size: -1}\n", []string{"routing.cache_size: must not be negative, got -1"}},

		// health: what the servers (and downinter) take over from it is
		// reported once, where it is written.
		{"health.user unknown", minimal + "health: {user: monitor}\n", []string{
			`health.user: "monitor" is not a configured user: give health.password too`,
		}},
		{"health.fall", minimal + "health: {fall: -1}\n", []string{"health.fall: must be at least 1, got -1"}},
		{"health.rise", minimal + "health: {rise: -2}\n", []string{"health.rise: must be at least 1, got -2"}},
		{"health.inter negative, downinter follows", minimal + "health: {inter: -1s}\n", []string{"health.inter: must not be negative, got -1s"}},
		{"health.downinter negative", minimal + "health: {downinter: -500ms}\n", []string{"health.downinter: must not be negative, got -500ms"}},
		{"health and a server both wrong", withServer("fall: -3") + "health: {fall: -1}\n", []string{
			"health.fall: must be at least 1, got -1",
			"databases.app.servers[0].fall: must be at least 1, got -3",
		}},
		{"negative bare integer duration", minimal + "timeouts: {query_wait: -5}\n", []string{"timeouts.query_wait: must not be negative, got -5s"}},

		// databases
		{"no databases", usersOnly, []string{"databases: at least one database is required"}},
		{"database is empty", "databases:\n  app:\n" + usersOnly, []string{"databases.app: is empty"}},
		{"database without servers", "databases:\n  app: {dbname: app}\n" + usersOnly, []string{"databases.app.servers: at least one server is required"}},
		{"database with empty server list", "databases:\n  app: {servers: []}\n" + usersOnly, []string{"databases.app.servers: at least one server is required"}},
		{"reserved name pgswitch", "databases:\n  pgswitch: {servers: [{host: h}]}\n" + usersOnly, []string{`databases.pgswitch: the name "pgswitch" is reserved for the admin console`}},
		{"reserved name pgbouncer", "databases:\n  pgbouncer: {servers: [{host: h}]}\n" + usersOnly, []string{`databases.pgbouncer: the name "pgbouncer" is reserved for the admin console`}},
		{"route", withDatabase("route: both"), []string{`databases.app.route: must be one of "auto", "primary", "replica", got "both"`}},
		{"route is case sensitive", withDatabase("route: Primary"), []string{`databases.app.route: must be one of`}},
		{"database pool_mode", withDatabase("pool_mode: statement"), []string{`databases.app.pool_mode: must be one of "session", "transaction", got "statement"`}},
		{"database pool_size", withDatabase("pool_size: -1"), []string{"databases.app.pool_size: must not be negative, got -1"}},

		// servers
		{"server is empty", "databases:\n  app: {servers: [~]}\n" + usersOnly, []string{"databases.app.servers[0]: is empty"}},
		{"server without host", "databases:\n  app: {servers: [{port: 5433}]}\n" + usersOnly, []string{"databases.app.servers[0].host: is required"}},
		{"server port too large", withServer("port: 70000"), []string{"databases.app.servers[0].port: must be between 1 and 65535, got 70000"}},
		{"server port negative", withServer("port: -1"), []string{"databases.app.servers[0].port: must be between 1 and 65535, got -1"}},
		{"second server's role", "databases:\n  app: {servers: [{host: a}, {host: b, role: standby}]}\n" + usersOnly,
			[]string{`databases.app.servers[1].role: must be one of "primary", "replica", got "standby"`}},
		{"server maxconn", withServer("maxconn: -1"), []string{"databases.app.servers[0].maxconn: must not be negative, got -1"}},
		{"server weight", withServer("weight: -1"), []string{"databases.app.servers[0].weight: must be at least 1, got -1"}},
		{"server fall", withServer("fall: -1"), []string{"databases.app.servers[0].fall: must be at least 1, got -1"}},
		{"server rise", withServer("rise: -1"), []string{"databases.app.servers[0].rise: must be at least 1, got -1"}},
		{"server inter", withServer("inter: -2s"), []string{"databases.app.servers[0].inter: must not be negative, got -2s"}},
		{"server downinter as bare integer", withServer("downinter: -3"), []string{"databases.app.servers[0].downinter: must not be negative, got -3s"}},
		{"second database's server", dbOnly + "  other: {servers: [{host: h, port: 99999}]}\n" + usersOnly,
			[]string{"databases.other.servers[0].port: must be between 1 and 65535, got 99999"}},

		// users
		{"no users", dbOnly, []string{"users: at least one user is required"}},
		{"user is empty", dbOnly + "users:\n  app:\n", []string{"users.app: is empty"}},
		{"user auth", withUser("password: x, auth: ldap"), []string{`users.app.auth: must be one of "scram-sha-256", "md5", "password", "trust", "cert", "peer", got "ldap"`}},
		{"user pool_mode", withUser("password: x, pool_mode: statement"), []string{`users.app.pool_mode: must be one of "session", "transaction", got "statement"`}},
		{"user pool_size", withUser("password: x, pool_size: -1"), []string{"users.app.pool_size: must not be negative, got -1"}},
		{"password missing under scram", withUser("auth: scram-sha-256"), []string{"users.app.password: is required unless auth is trust"}},
		{"password missing under global md5", "auth_type: md5\n" + withUser("pool_size: 1"), []string{"users.app.password: is required unless auth is trust"}},
		{"password missing, user md5 over global trust", "auth_type: trust\n" + withUser("auth: md5"), []string{"users.app.password: is required unless auth is trust"}},
		// Pass-through users log in to servers with what clients prove;
		// health checks need a password all the same.
		{"only verifiers, no health user", withUser("password: '" + scramVerifier + "'"),
			[]string{"health.user: is required: no configured user has a password to log in with"}},
		{"health user with only a verifier", withUser("password: "+md5Verifier32) + "health: {user: app}\n",
			[]string{`health.password: is required: user "app" has only a verifier`}},
		{"auth_user not configured", minimal + "auth_user: lookup\n", []string{`auth_user: "lookup" is not a configured user`}},
		{"auth_user with only a verifier", withUser("password: "+md5Verifier32) + "health: {user: app, password: x}\nauth_user: app\n",
			[]string{`auth_user: user "app" has only a verifier: give it server_password`}},
		{"auth_query empty", minimal + "auth_user: app\nauth_query: ' '\n", []string{"auth_query: must not be empty"}},
		{"auth_dbname unknown", minimal + "auth_user: app\nauth_dbname: postgres\n", []string{`auth_dbname: "postgres" is not a configured database`}},
		{"auth_dbname without auth_user", minimal + "auth_dbname: app\n", []string{"auth_dbname: is used only with auth_user"}},
		{"auth_cache_time negative", minimal + "auth_user: app\nauth_cache_time: -1s\n", []string{"auth_cache_time: must not be negative, got -1s"}},
		{"admin user not configured", minimal + "admin: {admin_users: [root]}\n", []string{`admin.admin_users: "root" is not a configured user`}},
		{"stats user not configured", minimal + "admin: {stats_users: [app, grafana]}\n", []string{`admin.stats_users: "grafana" is not a configured user`}},

		// All errors come back together.
		{"errors from every section", "pool_mode: sometimes\nrouting: {load_balance: sticky}\n" +
			"databases:\n  app: {route: any, servers: [{host: h, port: 70000}]}\n  b: {servers: []}\n" +
			"users:\n  app: {password: x, auth: ldap}\n  c: {auth: scram-sha-256}\n",
			[]string{
				"pool_mode: ", "routing.load_balance: ", "databases.app.route: ",
				"databases.app.servers[0].port: ", "databases.b.servers: ", "users.app.auth: ", "users.c.password: ",
			}},
	}
	// Every duration that must not be negative.
	for _, key := range []string{
		"timeouts.client_login", "timeouts.query_wait", "timeouts.server_connect", "timeouts.server_idle",
		"timeouts.server_lifetime", "timeouts.client_idle", "timeouts.primary_wait", "timeouts.shutdown",
		"timeouts.pause", "timeouts.upgrade_drain", "routing.max_replica_lag", "routing.volatile_refresh", "health.timeout",
	} {
		section, field, _ := strings.Cut(key, ".")
		cases = append(cases, tcase{key + " negative", minimal + section + ": {" + field + ": -300ms}\n",
			[]string{key + ": must not be negative, got -300ms"}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkErrorLines(t, mustFail(t, tc.yaml), tc.want)
		})
	}
}

func TestValidConfigurations(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"minimal", minimal},
		{"trust everywhere, no password", "auth_type: trust\n" + withUser("")},
		{"one trust user, no password", withUser("auth: trust")},
		{"session pooling", minimal + "pool_mode: session\n"},
		{"md5", minimal + "auth_type: md5\n"},
		{"listen on every address", minimal + "listen: ':6432'\n"},
		{"listen on IPv6 loopback", minimal + "listen: '[::1]:6432'\n"},
		{"listen on port 0", minimal + "listen: 127.0.0.1:0\n"},
		{"metrics", minimal + "metrics_listen: 127.0.0.1:9187\n"},
		{"load_balance least_connections", minimal + "routing: {load_balance: least_connections}\n"},
		{"load_balance random", minimal + "routing: {load_balance: random}\n"},
		{"server_tls_mode allow", minimal + "server_tls_mode: allow\n"},
		{"server_tls_mode prefer", minimal + "server_tls_mode: prefer\n"},
		{"server_tls_mode require", minimal + "server_tls_mode: require\n"},
		{"server_tls_mode verify-ca", minimal + "server_tls_mode: verify-ca\n"},
		{"server_tls_mode verify-full", minimal + "server_tls_mode: verify-full\n"},
		{"route primary", withDatabase("route: primary")},
		{"route replica", withDatabase("route: replica")},
		{"route auto", withDatabase("route: auto")},
		{"database pool mode and size", withDatabase("pool_mode: session, pool_size: 3")},
		{"database named like the console", "databases:\n  pgswitch_app: {servers: [{host: h}]}\nusers:\n  app: {password: x}\n"},
		{"roles, backup, maxconn, weight", "databases:\n  app:\n    servers:\n" +
			"      - {host: 127.0.0.1, role: primary}\n" +
			"      - {host: 127.0.0.1, port: 5433, role: replica, maxconn: 10, weight: 3}\n" +
			"      - {host: 127.0.0.1, port: 5434, role: replica, backup: true}\n" +
			"users:\n  app: {password: x}\n"},
		{"port bounds", "databases:\n  app: {servers: [{host: a, port: 1}, {host: b, port: 65535}]}\nusers:\n  app: {password: x}\n"},
		{"min_idle equal to size", minimal + "pool: {size: 4, min_idle: 4}\n"},
		{"smallest max_message_size", minimal + "limits: {max_message_size: 1024}\n"},
		{"SCRAM verifier with server_password", withUser("password: '" + scramVerifier + "', server_password: s")},
		{"md5 verifier with server_password", withUser("password: " + md5Verifier32 + ", server_password: s")},
		{"admin and stats users", minimal + "admin: {admin_users: [app], stats_users: [app]}\n"},
		{"SCRAM verifier without server_password: pass-through", withUser("password: '"+scramVerifier+"'") + "health: {user: app, password: x}\n"},
		{"md5 verifier without server_password: pass-through", withUser("password: "+md5Verifier32) + "health: {user: app, password: x}\n"},
		{"auth_user, auth_query, auth_dbname, auth_cache_time", minimal + "auth_user: app\nauth_query: SELECT * FROM pgswitch.lookup($1)\nauth_dbname: app\nauth_cache_time: 5s\n"},
		{"cleartext password", minimal + "auth_type: password\nallow_cleartext_without_tls: true\n"},
		{"PgBouncer's plain", withUser("password: x, auth: plain")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustParse(t, tc.yaml)
		})
	}
}

func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "server.crt")
	if err := os.WriteFile(cert, []byte("not checked here"), 0o600); err != nil {
		t.Fatal(err)
	}
	missingKey := filepath.Join(dir, "server.key")

	cfg := mustParse(t, minimal+"tls: {cert_file: '"+cert+"', key_file: '"+cert+"'}\n")
	if cfg.TLS == nil || cfg.TLS.CertFile != cert {
		t.Errorf("tls: got %+v, want cert_file %s", cfg.TLS, cert)
	}

	msg := mustFail(t, minimal+"tls: {cert_file: '"+cert+"', key_file: '"+missingKey+"'}\n")
	checkErrorLines(t, msg, []string{"tls.key_file: "})
	if !strings.Contains(msg, missingKey) {
		t.Errorf("got %q, want it to name %s", msg, missingKey)
	}

	msg = mustFail(t, minimal+"tls: {key_file: '"+cert+"'}\n")
	checkErrorLines(t, msg, []string{"tls.cert_file: is required when tls is set"})
}

func TestPasswordKind(t *testing.T) {
	for _, tc := range []struct {
		password string
		want     PasswordKind
	}{
		{"", PasswordPlain},
		{"secret", PasswordPlain},
		{"pa$$word", PasswordPlain},
		{scramVerifier, PasswordSCRAM},
		{"SCRAM-SHA-256$", PasswordSCRAM},
		{"scram-sha-256$4096:abc$def:ghi", PasswordPlain}, // the prefix is case sensitive, as in PostgreSQL
		{md5Verifier32, PasswordMD5},
		{"md5" + strings.Repeat("0", 32), PasswordMD5},
		{"md5" + strings.Repeat("a", 31), PasswordPlain},  // too short
		{"md5" + strings.Repeat("a", 33), PasswordPlain},  // too long
		{"md5" + strings.Repeat("A", 32), PasswordPlain},  // PostgreSQL writes lower-case hex
		{"md5" + strings.Repeat("g", 32), PasswordPlain},  // not hex
		{"MD5" + strings.Repeat("a", 32), PasswordPlain},  // prefix is lower case
		{"xmd5" + strings.Repeat("a", 32), PasswordPlain}, // anchored
	} {
		u := &User{Password: tc.password}
		if got := u.PasswordKind(); got != tc.want {
			t.Errorf("PasswordKind(%q): got %d, want %d", tc.password, got, tc.want)
		}
	}
}

func TestServerPasswordValue(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"plain password", withUser("password: plain-pw"), "plain-pw"},
		{"SCRAM verifier", withUser("password: '" + scramVerifier + "', server_password: clear-pw"), "clear-pw"},
		{"md5 verifier", withUser("password: " + md5Verifier32 + ", server_password: clear-pw"), "clear-pw"},
		{"plain password with a different server password", withUser("password: client-pw, server_password: server-pw"), "server-pw"},
		// As libpq sends it for SCRAM: PostgreSQL hashed the SASLprep form.
		{"password SASLprep maps", withUser(`password: "\u2168-pw"`), "IX-pw"},
		{"server password SASLprep maps", withUser(`password: client-pw, server_password: "\uff50\u00adw"`), "pw"},
		{"password SASLprep refuses: the raw bytes", withUser(`password: "\u2168\u05d0"`), "\u2168\u05d0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, tc.yaml)
			if got := cfg.Users["app"].ServerPasswordValue(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			// Health checks default to the same server password.
			if got := cfg.Health.Password; got != tc.want {
				t.Errorf("health.password: got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHealthPasswordPrepared(t *testing.T) {
	cfg := mustParse(t, withUser("password: pw")+"health: {user: monitor, password: \"mon-\u2168\"}\n")
	if got, want := cfg.Health.Password, "mon-IX"; got != want {
		t.Errorf("health.password: got %q, want %q", got, want)
	}
}

func TestAuthDefaults(t *testing.T) {
	cfg := mustParse(t, minimal)
	if cfg.AuthQuery != DefaultAuthQuery || cfg.AuthCacheTime != time.Minute || cfg.AllowCleartextWithoutTLS {
		t.Errorf("got auth_query %q, auth_cache_time %s, allow_cleartext_without_tls %v; want %q, 1m0s, false",
			cfg.AuthQuery, cfg.AuthCacheTime, cfg.AllowCleartextWithoutTLS, DefaultAuthQuery)
	}
	// PgBouncer's name for the cleartext method reads as PostgreSQL's.
	cfg = mustParse(t, "auth_type: plain\n"+withUser("password: x, auth: plain"))
	if cfg.AuthType != AuthPassword || cfg.Users["app"].Auth != AuthPassword {
		t.Errorf("plain: got auth_type %q, users.app.auth %q, want password", cfg.AuthType, cfg.Users["app"].Auth)
	}
	// The health user is the first with a password to log in with.
	cfg = mustParse(t, "databases:\n  app:\n    servers: [{host: h}]\nusers:\n  a: {password: '"+scramVerifier+"'}\n  b: {password: pw}\n")
	if cfg.Health.User != "b" || cfg.Health.Password != "pw" {
		t.Errorf("health: got user %q password %q, want b and pw", cfg.Health.User, cfg.Health.Password)
	}
}

package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/internal/threads"
)

// The defaults documented in config.go are what Parse fills in.
func TestParseDefaults(t *testing.T) {
	cfg := mustParse(t, minimal)
	db := cfg.Databases["app"]
	s := db.Servers[0]
	u := cfg.Users["app"]
	for _, tc := range []struct {
		key       string
		got, want any
	}{
		{"listen", cfg.Listen, "127.0.0.1:6432"},
		{"pool_mode", cfg.PoolMode, PoolModeTransaction},
		{"auth_type", cfg.AuthType, AuthSCRAM},
		{"server_tls_mode", cfg.ServerTLSMode, "disable"},
		{"metrics_listen", cfg.MetricsListen, ""},
		{"pool.size", cfg.Pool.Size, 20},
		{"pool.min_idle", cfg.Pool.MinIdle, 0},
		{"pool.max_client_conn", cfg.Pool.MaxClientConn, 10000},
		{"pool.max_startup_conn", cfg.Pool.MaxStartupConn, 1000},
		{"pool.reset_query", cfg.Pool.ResetQuery, "DISCARD ALL"},
		{"pool.max_prepared_statements", cfg.Pool.MaxPreparedStatements, 200},
		{"timeouts.client_login", cfg.Timeouts.ClientLogin, 15 * time.Second},
		{"timeouts.query_wait", cfg.Timeouts.QueryWait, 30 * time.Second},
		{"timeouts.server_connect", cfg.Timeouts.ServerConnect, 5 * time.Second},
		{"timeouts.server_idle", cfg.Timeouts.ServerIdle, 10 * time.Minute},
		{"timeouts.server_lifetime", cfg.Timeouts.ServerLifetime, time.Hour},
		{"timeouts.client_idle", cfg.Timeouts.ClientIdle, time.Duration(0)},
		{"timeouts.idle_transaction", cfg.Timeouts.IdleTransaction, time.Duration(0)},
		{"timeouts.primary_wait", cfg.Timeouts.PrimaryWait, 30 * time.Second},
		{"timeouts.shutdown", cfg.Timeouts.Shutdown, 30 * time.Second},
		{"timeouts.pause", cfg.Timeouts.Pause, 60 * time.Second},
		{"timeouts.upgrade_drain", cfg.Timeouts.UpgradeDrain, 10 * time.Minute},
		{"limits.max_message_size", cfg.Limits.MaxMessageSize, 64 << 20},
		{"limits.max_client_statements", cfg.Limits.MaxClientStatements, 10000},
		{"limits.max_client_statement_bytes", cfg.Limits.MaxClientStatementBytes, 16 << 20},
		{"limits.max_concurrent_auth", cfg.Limits.MaxConcurrentAuth, max(1, runtime.GOMAXPROCS(0)/2)},
		{"workers", cfg.Workers, 0},
		{"routing.load_balance", cfg.Routing.LoadBalance, "round_robin"},
		{"routing.max_replica_lag_bytes", cfg.Routing.MaxReplicaLagBytes, int64(0)},
		{"routing.max_replica_lag", cfg.Routing.MaxReplicaLag, time.Duration(0)},
		{"routing.write_functions", len(cfg.Routing.WriteFunctions), 0},
		{"routing.cache_size", cfg.Routing.CacheSize, 10000},
		{"routing.volatile_refresh", cfg.Routing.VolatileRefresh, time.Minute},
		{"health.inter", cfg.Health.Inter, time.Second},
		{"health.downinter", cfg.Health.DownInter, time.Second},
		{"health.fall", cfg.Health.Fall, 3},
		{"health.rise", cfg.Health.Rise, 2},
		{"health.timeout", cfg.Health.Timeout, 2 * time.Second},
		{"health.user", cfg.Health.User, "app"},
		{"health.password", cfg.Health.Password, "secret"},
		{"tls", cfg.TLS == nil, true},
		{"databases.app name", db.Name, "app"},
		{"databases.app.dbname", db.DBName, "app"},
		{"databases.app.route", db.Route, RouteAuto},
		{"databases.app.pool_mode", db.PoolMode, PoolMode("")},
		{"databases.app.pool_size", db.PoolSize, 0},
		{"servers[0].port", s.Port, 5432},
		{"servers[0].weight", s.Weight, 1},
		{"servers[0].role", s.Role, RoleUnknown},
		{"servers[0].maxconn", s.MaxConn, 0},
		{"servers[0].backup", s.Backup, false},
		{"servers[0].inter", s.Inter, time.Second},
		{"servers[0].downinter", s.DownInter, time.Second},
		{"servers[0].fall", s.Fall, 3},
		{"servers[0].rise", s.Rise, 2},
		{"servers[0] addr", s.Addr(), "127.0.0.1:5432"},
		{"users.app name", u.Name, "app"},
		{"users.app.auth", u.Auth, AuthType("")},
		{"users.app.pool_mode", u.PoolMode, PoolMode("")},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v (%T), want %v (%T)", tc.key, tc.got, tc.got, tc.want, tc.want)
		}
	}
}

// Explicit values survive setDefaults.
// TestMaxConcurrentAuthFollowsWorkers: the default turns for logins are
// half the threads pgswitch runs on, as workers sets them.
func TestMaxConcurrentAuthFollowsWorkers(t *testing.T) {
	for workers, want := range map[int]int{1: 1, 2: 1, 8: 4} {
		cfg := mustParse(t, fmt.Sprintf("workers: %d\n", workers)+`databases:
  app:
    servers: [{host: db1}]
users:
  app:
    password: secret
`)
		if got := cfg.Limits.MaxConcurrentAuth; got != want {
			t.Errorf("workers %d: max_concurrent_auth %d, want %d", workers, got, want)
		}
	}
	// Workers 0 on 8 CPUs, read while the light load runs one thread: the
	// threads it may have count, not the one it has.
	defer func(n int) { threads.StartProcs = n; runtime.GOMAXPROCS(n) }(threads.StartProcs)
	threads.StartProcs = 8
	runtime.GOMAXPROCS(1)
	cfg := mustParse(t, `databases:
  app:
    servers: [{host: db1}]
users:
  app:
    password: secret
`)
	if got := cfg.Limits.MaxConcurrentAuth; got != 4 {
		t.Errorf("workers 0 on 8 CPUs, one thread running: max_concurrent_auth %d, want 4", got)
	}
}

func TestParseKeepsExplicitValues(t *testing.T) {
	cfg := mustParse(t, `listen: 0.0.0.0:7000
pool_mode: session
auth_type: md5
server_tls_mode: verify-full
metrics_listen: 127.0.0.1:9187
pool: {size: 4, min_idle: 2, max_client_conn: 50, max_startup_conn: 7, reset_query: "RESET ALL", max_prepared_statements: 10}
limits: {max_message_size: 4096, max_concurrent_auth: 3}
workers: 3
routing: {load_balance: least_connections, max_replica_lag_bytes: 1048576, write_functions: [audit_log, bump], cache_size: 5}
health: {fall: 5, rise: 4, user: monitor, password: mon}
databases:
  app:
    dbname: appdb
    route: primary
    servers: [{host: db1.internal, port: 6543, role: replica, maxconn: 9, backup: true, weight: 3}]
users:
  app:
    password: secret
`)
	s := cfg.Databases["app"].Servers[0]
	for _, tc := range []struct {
		key       string
		got, want any
	}{
		{"listen", cfg.Listen, "0.0.0.0:7000"},
		{"pool_mode", cfg.PoolMode, PoolModeSession},
		{"auth_type", cfg.AuthType, AuthMD5},
		{"server_tls_mode", cfg.ServerTLSMode, "verify-full"},
		{"metrics_listen", cfg.MetricsListen, "127.0.0.1:9187"},
		{"pool.size", cfg.Pool.Size, 4},
		{"pool.min_idle", cfg.Pool.MinIdle, 2},
		{"pool.max_client_conn", cfg.Pool.MaxClientConn, 50},
		{"pool.max_startup_conn", cfg.Pool.MaxStartupConn, 7},
		{"pool.reset_query", cfg.Pool.ResetQuery, "RESET ALL"},
		{"pool.max_prepared_statements", cfg.Pool.MaxPreparedStatements, 10},
		{"limits.max_message_size", cfg.Limits.MaxMessageSize, 4096},
		{"limits.max_concurrent_auth", cfg.Limits.MaxConcurrentAuth, 3},
		{"workers", cfg.Workers, 3},
		{"routing.load_balance", cfg.Routing.LoadBalance, "least_connections"},
		{"routing.max_replica_lag_bytes", cfg.Routing.MaxReplicaLagBytes, int64(1048576)},
		{"routing.write_functions", strings.Join(cfg.Routing.WriteFunctions, ","), "audit_log,bump"},
		{"routing.cache_size", cfg.Routing.CacheSize, 5},
		{"health.fall", cfg.Health.Fall, 5},
		{"health.rise", cfg.Health.Rise, 4},
		{"health.user", cfg.Health.User, "monitor"},
		{"health.password", cfg.Health.Password, "mon"},
		{"databases.app.dbname", cfg.Databases["app"].DBName, "appdb"},
		{"databases.app.route", cfg.Databases["app"].Route, RoutePrimary},
		{"server addr", s.Addr(), "db1.internal:6543"},
		{"server role", s.Role, RoleReplica},
		{"server maxconn", s.MaxConn, 9},
		{"server backup", s.Backup, true},
		{"server weight", s.Weight, 3},
		{"server fall (from health)", s.Fall, 5},
		{"server rise (from health)", s.Rise, 4},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v (%T), want %v (%T)", tc.key, tc.got, tc.got, tc.want, tc.want)
		}
	}
}

// A server's unset health fields take the global health values, each one on
// its own: a server that sets inter still takes an explicit health.downinter.
func TestServerHealthInheritsGlobal(t *testing.T) {
	cfg := mustParse(t, `health:
  inter: 2s
  downinter: 7s
  fall: 5
  rise: 4
databases:
  app:
    servers:
      - {host: 127.0.0.1}
      - {host: 127.0.0.1, port: 5433, inter: 300ms, fall: 1}
      - {host: 127.0.0.1, port: 5434, downinter: 10, rise: 6}
users:
  app:
    password: secret
`)
	type health struct {
		inter, downinter time.Duration
		fall, rise       int
	}
	want := []health{
		{2 * time.Second, 7 * time.Second, 5, 4},
		{300 * time.Millisecond, 7 * time.Second, 1, 4},
		{2 * time.Second, 10 * time.Second, 5, 6},
	}
	for i, s := range cfg.Databases["app"].Servers {
		got := health{s.Inter, s.DownInter, s.Fall, s.Rise}
		if got != want[i] {
			t.Errorf("servers[%d]: got %+v, want %+v", i, got, want[i])
		}
	}
}

// health.downinter defaults to health.inter, not to its own 1s default.
func TestHealthDownInterDefaultsToInter(t *testing.T) {
	cfg := mustParse(t, minimal+"health:\n  inter: 4s\n")
	if got, want := cfg.Health.DownInter, 4*time.Second; got != want {
		t.Errorf("health.downinter: got %s, want %s", got, want)
	}
	if got, want := cfg.Databases["app"].Servers[0].DownInter, 4*time.Second; got != want {
		t.Errorf("servers[0].downinter: got %s, want %s", got, want)
	}
}

// Health checks log in as the first user by name, with the password that
// user logs in to servers with, unless health says otherwise.
func TestHealthCredentialsDefault(t *testing.T) {
	const users = `databases:
  app:
    servers: [{host: 127.0.0.1}]
users:
  zed:
    password: zed-pw
  alice:
    password: md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    server_password: alice-server-pw
  bob:
    password: bob-pw
`
	for _, tc := range []struct {
		name, health         string
		wantUser, wantPasswd string
	}{
		{"first user by name, its server password", "", "alice", "alice-server-pw"},
		{"named user, its password", "health: {user: zed}\n", "zed", "zed-pw"},
		{"explicit password wins", "health: {user: bob, password: hc-pw}\n", "bob", "hc-pw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, users+tc.health)
			if cfg.Health.User != tc.wantUser || cfg.Health.Password != tc.wantPasswd {
				t.Errorf("got user %q password %q, want %q %q",
					cfg.Health.User, cfg.Health.Password, tc.wantUser, tc.wantPasswd)
			}
		})
	}
}

func TestParseDurations(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		get        func(*Config) time.Duration
		want       time.Duration
	}{
		{"milliseconds", minimal + "timeouts: {client_login: 300ms}\n", func(c *Config) time.Duration { return c.Timeouts.ClientLogin }, 300 * time.Millisecond},
		{"seconds string", minimal + "timeouts: {query_wait: 2s}\n", func(c *Config) time.Duration { return c.Timeouts.QueryWait }, 2 * time.Second},
		{"quoted string", minimal + "timeouts: {query_wait: \"2s\"}\n", func(c *Config) time.Duration { return c.Timeouts.QueryWait }, 2 * time.Second},
		{"compound", minimal + "timeouts: {server_idle: 1m30s}\n", func(c *Config) time.Duration { return c.Timeouts.ServerIdle }, 90 * time.Second},
		{"bare integer client_login", minimal + "timeouts: {client_login: 2}\n", func(c *Config) time.Duration { return c.Timeouts.ClientLogin }, 2 * time.Second},
		{"bare integer query_wait", minimal + "timeouts: {query_wait: 3}\n", func(c *Config) time.Duration { return c.Timeouts.QueryWait }, 3 * time.Second},
		{"bare integer server_connect", minimal + "timeouts: {server_connect: 4}\n", func(c *Config) time.Duration { return c.Timeouts.ServerConnect }, 4 * time.Second},
		{"bare integer server_idle", minimal + "timeouts: {server_idle: 600}\n", func(c *Config) time.Duration { return c.Timeouts.ServerIdle }, 10 * time.Minute},
		{"bare integer server_lifetime", minimal + "timeouts: {server_lifetime: 7200}\n", func(c *Config) time.Duration { return c.Timeouts.ServerLifetime }, 2 * time.Hour},
		{"bare integer client_idle", minimal + "timeouts: {client_idle: 5}\n", func(c *Config) time.Duration { return c.Timeouts.ClientIdle }, 5 * time.Second},
		{"bare integer idle_transaction", minimal + "timeouts: {idle_transaction: 9}\n", func(c *Config) time.Duration { return c.Timeouts.IdleTransaction }, 9 * time.Second},
		{"bare integer primary_wait", minimal + "timeouts: {primary_wait: 6}\n", func(c *Config) time.Duration { return c.Timeouts.PrimaryWait }, 6 * time.Second},
		{"bare integer shutdown", minimal + "timeouts: {shutdown: 7}\n", func(c *Config) time.Duration { return c.Timeouts.Shutdown }, 7 * time.Second},
		{"bare integer pause", minimal + "timeouts: {pause: 8}\n", func(c *Config) time.Duration { return c.Timeouts.Pause }, 8 * time.Second},
		{"bare integer max_replica_lag", minimal + "routing: {max_replica_lag: 9}\n", func(c *Config) time.Duration { return c.Routing.MaxReplicaLag }, 9 * time.Second},
		{"bare integer volatile_refresh", minimal + "routing: {volatile_refresh: 10}\n", func(c *Config) time.Duration { return c.Routing.VolatileRefresh }, 10 * time.Second},
		{"bare integer health.inter", minimal + "health: {inter: 11}\n", func(c *Config) time.Duration { return c.Health.Inter }, 11 * time.Second},
		{"bare integer health.downinter", minimal + "health: {downinter: 12}\n", func(c *Config) time.Duration { return c.Health.DownInter }, 12 * time.Second},
		{"bare integer health.timeout", minimal + "health: {timeout: 13}\n", func(c *Config) time.Duration { return c.Health.Timeout }, 13 * time.Second},
		{"bare integer server inter", withServer("inter: 14"), func(c *Config) time.Duration { return c.Databases["app"].Servers[0].Inter }, 14 * time.Second},
		{"bare integer server downinter", withServer("downinter: 15"), func(c *Config) time.Duration { return c.Databases["app"].Servers[0].DownInter }, 15 * time.Second},
		{"server inter string", withServer("inter: 250ms"), func(c *Config) time.Duration { return c.Databases["app"].Servers[0].Inter }, 250 * time.Millisecond},
		{"zero client_idle is no limit", minimal + "timeouts: {client_idle: 0}\n", func(c *Config) time.Duration { return c.Timeouts.ClientIdle }, 0},
		{"zero upgrade_drain is no limit", minimal + "timeouts: {upgrade_drain: 0}\n", func(c *Config) time.Duration { return c.Timeouts.UpgradeDrain }, 0},
		{"bare integer upgrade_drain", minimal + "timeouts: {upgrade_drain: 16}\n", func(c *Config) time.Duration { return c.Timeouts.UpgradeDrain }, 16 * time.Second},
		{"zero means default", minimal + "timeouts: {query_wait: 0}\n", func(c *Config) time.Duration { return c.Timeouts.QueryWait }, 30 * time.Second},
		{"largest bare integer", minimal + "timeouts: {server_lifetime: 9223372036}\n", func(c *Config) time.Duration { return c.Timeouts.ServerLifetime }, 9223372036 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.get(mustParse(t, tc.yaml)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseDurationErrors(t *testing.T) {
	const notDuration = ` is not a duration: give a unit (500ms, 30s, 1m30s) or a whole number of seconds`
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"fraction of a second as a number", minimal + "health: {inter: 1.5}\n", `line 7: health.inter: "1.5"` + notDuration},
		{"no unit in a string", minimal + "health: {inter: \"5\"}\n", `line 7: health.inter: "5"` + notDuration},
		{"words", minimal + "timeouts: {query_wait: soon}\n", `line 7: timeouts.query_wait: "soon"` + notDuration},
		{"space before unit", minimal + "timeouts: {query_wait: 2 s}\n", `line 7: timeouts.query_wait: "2 s"` + notDuration},
		{"a boolean", minimal + "timeouts: {query_wait: true}\n", `line 7: timeouts.query_wait: "true"` + notDuration},
		{"a list", minimal + "timeouts: {query_wait: [1]}\n", `line 7: timeouts.query_wait: must be a duration such as 500ms or 1m30s, not a list`},
		// Beyond what a time.Duration holds; used to wrap around silently.
		{"too many seconds", minimal + "timeouts: {server_lifetime: 9223372037}\n", "line 7: timeouts.server_lifetime: 9223372037 seconds is too long (at most 9223372036, some 292 years)"},
		{"far too many seconds", minimal + "health: {inter: 99999999999999999999}\n", "line 7: health.inter: 99999999999999999999 seconds is too long"},
		{"too many negative seconds", minimal + "health: {inter: -9223372037}\n", "line 7: health.inter: -9223372037 seconds is too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := mustFail(t, tc.yaml); !strings.HasPrefix(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("got %q, want the one error %q", msg, tc.want)
			}
		})
	}
}

// Only duration keys turn bare integers into seconds.
func TestIntegersElsewhereStayIntegers(t *testing.T) {
	cfg := mustParse(t, `pool: {size: 5}
routing: {max_replica_lag_bytes: 300, max_replica_lag: 300}
databases:
  app:
    servers: [{host: 127.0.0.1, port: 5433, weight: 2}]
users:
  app:
    password: 300
`)
	for _, tc := range []struct {
		key       string
		got, want any
	}{
		{"pool.size", cfg.Pool.Size, 5},
		{"routing.max_replica_lag_bytes", cfg.Routing.MaxReplicaLagBytes, int64(300)},
		{"routing.max_replica_lag", cfg.Routing.MaxReplicaLag, 300 * time.Second},
		{"servers[0].port", cfg.Databases["app"].Servers[0].Port, 5433},
		{"servers[0].weight", cfg.Databases["app"].Servers[0].Weight, 2},
		{"users.app.password", cfg.Users["app"].Password, "300"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.key, tc.got, tc.want)
		}
	}
}

func TestEnvExpansion(t *testing.T) {
	t.Setenv("PGSWITCH_TEST_PW", "s3cret")
	t.Setenv("PGSWITCH_TEST_A", "alpha")
	t.Setenv("PGSWITCH_TEST_B", "beta")
	t.Setenv("PGSWITCH_TEST_NESTED", "${PGSWITCH_TEST_PW}")
	for _, tc := range []struct {
		name, password, want string
	}{
		{"whole value", "${PGSWITCH_TEST_PW}", "s3cret"},
		{"several references", "pre-${PGSWITCH_TEST_A}-mid-${PGSWITCH_TEST_B}-post", "pre-alpha-mid-beta-post"},
		{"bare dollars are literal", "pa$$word$", "pa$$word$"},
		{"$NAME without braces is literal", "$PGSWITCH_TEST_PW", "$PGSWITCH_TEST_PW"},
		{"unclosed reference is literal", "x${PGSWITCH_TEST_PW", "x${PGSWITCH_TEST_PW"},
		{"values are not expanded again", "${PGSWITCH_TEST_NESTED}", "${PGSWITCH_TEST_PW}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, withUser("password: '"+tc.password+"'"))
			if got := cfg.Users["app"].Password; got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEnvExpansionOtherSecrets(t *testing.T) {
	t.Setenv("PGSWITCH_TEST_SERVER_PW", "server-pw")
	t.Setenv("PGSWITCH_TEST_HEALTH_PW", "health-pw")
	cfg := mustParse(t, `health:
  user: app
  password: ${PGSWITCH_TEST_HEALTH_PW}
databases:
  app:
    servers: [{host: 127.0.0.1}]
users:
  app:
    password: md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    server_password: ${PGSWITCH_TEST_SERVER_PW}
`)
	if got := cfg.Users["app"].ServerPassword; got != "server-pw" {
		t.Errorf("users.app.server_password: got %q, want server-pw", got)
	}
	if got := cfg.Health.Password; got != "health-pw" {
		t.Errorf("health.password: got %q, want health-pw", got)
	}
	// Only secrets are expanded.
	cfg = mustParse(t, "databases:\n  app: {servers: [{host: '${PGSWITCH_TEST_SERVER_PW}'}]}\nusers:\n  app: {password: x}\n")
	if got := cfg.Databases["app"].Servers[0].Host; got != "${PGSWITCH_TEST_SERVER_PW}" {
		t.Errorf("host: got %q, want it unexpanded", got)
	}
}

func TestEnvUnset(t *testing.T) {
	// Set, then unset: t.Setenv restores the variable after the test.
	for _, name := range []string{"PGSWITCH_TEST_UNSET", "PGSWITCH_TEST_UNSET2"} {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	t.Setenv("PGSWITCH_TEST_SET", "visible-secret-value")
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{
			"password",
			withUser("password: '${PGSWITCH_TEST_UNSET}'"),
			[]string{"users.app.password: environment variable PGSWITCH_TEST_UNSET is not set"},
		},
		{
			"part of a password next to a set one",
			withUser("password: '${PGSWITCH_TEST_SET}${PGSWITCH_TEST_UNSET}'"),
			[]string{"users.app.password: environment variable PGSWITCH_TEST_UNSET is not set"},
		},
		{
			"server_password",
			withUser("password: md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, server_password: '${PGSWITCH_TEST_UNSET}'"),
			[]string{"users.app.server_password: environment variable PGSWITCH_TEST_UNSET is not set"},
		},
		{
			"health.password",
			minimal + "health: {password: '${PGSWITCH_TEST_UNSET}'}\n",
			[]string{"health.password: environment variable PGSWITCH_TEST_UNSET is not set"},
		},
		{
			"every unset variable reported",
			withUser("password: '${PGSWITCH_TEST_UNSET}-${PGSWITCH_TEST_UNSET2}'"),
			[]string{"users.app.password: environment variables PGSWITCH_TEST_UNSET, PGSWITCH_TEST_UNSET2 are not set"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := mustFail(t, tc.yaml)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("got %q, want it to contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "visible-secret-value") {
				t.Errorf("error shows the value of a set variable: %q", msg)
			}
		})
	}
}

// A variable set to the empty string expands to an empty, missing password.
func TestEnvEmpty(t *testing.T) {
	t.Setenv("PGSWITCH_TEST_EMPTY", "")
	msg := mustFail(t, withUser("password: '${PGSWITCH_TEST_EMPTY}'"))
	if want := "line 5: users.app.password: is required unless auth is trust, cert or peer"; msg != want {
		t.Errorf("got %q, want %q", msg, want)
	}
}

// An unknown key is named with its path and line, alone: what the key it
// was meant to be lacks is not a second error.
func TestUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"top level", minimal + "listen_addr: 127.0.0.1:6432\n", "line 7: listen_addr: unknown key"},
		{"pool", minimal + "pool: {szie: 5}\n", "line 7: pool.szie: unknown key; did you mean size?"},
		{"timeouts", minimal + "timeouts: {query_timeout: 5}\n", "line 7: timeouts.query_timeout: unknown key"},
		{"routing", minimal + "routing: {lb: random}\n", "line 7: routing.lb: unknown key"},
		{"health", minimal + "health: {interval: 2s}\n", "line 7: health.interval: unknown key"},
		{"tls", minimal + "tls: {cert: a.crt, key_file: load_test.go}\n", "line 7: tls.cert: unknown key; did you mean cert_file?"},
		{"admin users are admin_users", minimal + "admin: {users: [app]}\n", "line 7: admin.users: unknown key; did you mean admin_users?"},
		{"database", withDatabase("replicas: []"), "line 2: databases.app.replicas: unknown key"},
		{"database name is the key, not a field", withDatabase("name: other"), "line 2: databases.app.name: unknown key"},
		{"server", withServer("prot: 5433"), "line 3: databases.app.servers[0].prot: unknown key; did you mean port?"},
		{"user", withUser("passwd: secret"), "line 5: users.app.passwd: unknown key; did you mean password?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := mustFail(t, tc.yaml); msg != tc.want {
				t.Errorf("got %q, want %q", msg, tc.want)
			}
		})
	}
}

func TestParseYAMLErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"syntax", "listen: [127.0.0.1\n", "line 1: not valid YAML: did not find expected ',' or ']'"},
		{"duplicate key", minimal + "listen: a:1\nlisten: b:2\n", "line 8: listen: is set twice (first on line 7)"},
		{"wrong type", minimal + "pool: {size: many}\n", `line 7: pool.size: "many" is not a number`},
		{"list where a map belongs", "databases: [app]\n" + "users:\n  app:\n    password: x\n", "line 1: databases: must be a set of names (name: settings), not a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := mustFail(t, tc.yaml); msg != tc.want {
				t.Errorf("got %q, want %q", msg, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(minimal+"listen: 127.0.0.1:7432\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(good)
	if err != nil {
		t.Fatalf("Load(good): %v", err)
	}
	if cfg.Listen != "127.0.0.1:7432" {
		t.Errorf("listen: got %q, want 127.0.0.1:7432", cfg.Listen)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(minimal+"pool_mode: statement\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if err == nil || !strings.HasPrefix(err.Error(), bad+":7: pool_mode: ") {
		t.Errorf("Load(bad): got %v, want an error starting %q", err, bad+":7: pool_mode: ")
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, err = Load(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing): got %v, want fs.ErrNotExist naming %s", err, missing)
	}
}

// Without health.downinter, a server that sets its own inter also checks at
// that pace while down, as HAProxy does.
func TestServerDownInterFollowsItsInter(t *testing.T) {
	cfg := mustParse(t, `health:
  inter: 2s
databases:
  app:
    servers:
      - {host: 127.0.0.1}
      - {host: 127.0.0.1, port: 5433, inter: 300ms}
users:
  app:
    password: secret
`)
	for i, want := range []time.Duration{2 * time.Second, 300 * time.Millisecond} {
		if got := cfg.Databases["app"].Servers[i].DownInter; got != want {
			t.Errorf("servers[%d].downinter: got %s, want %s", i, got, want)
		}
	}
}

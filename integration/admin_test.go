package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/admin"
	"github.com/pgswitch/pgswitch/config"
)

// Users of the admin console tests besides the cluster's (an admin user).
const adminUsers = `  watcher:
    password: watcher-pw
  nobody:
    password: nobody-pw
`

// startAdminProxy runs pgswitch with its admin console: the cluster's user
// is an admin user, "watcher" a stats user, "nobody" neither.
func startAdminProxy(t *testing.T, o proxyOptions) *proxy {
	t.Helper()
	o.YAML += "admin:\n  admin_users: [" + cl.User + "]\n  stats_users: [watcher]\n"
	o.YAML += "health:\n  user: " + cl.User + "\n"
	o.ExtraUsers += adminUsers
	p := startProxy(t, o)
	p.R.SetAdmin(admin.New(p.R, admin.Options{Version: "test", Log: quiet}))
	return p
}

// adminConn connects to the admin console; the console speaks only the
// simple query protocol, as PgBouncer's.
func adminConn(t *testing.T, p *proxy, user, password, db string) (*pgx.Conn, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(p.URLAs(user, password, db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { conn.Close(context.Background()) })
	}
	return conn, err
}

func mustAdmin(t *testing.T, p *proxy, db string) *pgx.Conn {
	t.Helper()
	conn, err := adminConn(t, p, cl.User, cl.Password, db)
	if err != nil {
		t.Fatalf("connect to the admin console %s: %v", db, err)
	}
	return conn
}

// result is a SHOW answer: column names and rows as text (NULL as "").
type result struct {
	cols []string
	rows [][]string
}

func show(t *testing.T, conn *pgx.Conn, sql string) result {
	t.Helper()
	rows, err := conn.Query(testCtx(t), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var res result
	for _, f := range rows.FieldDescriptions() {
		res.cols = append(res.cols, f.Name)
	}
	for rows.Next() {
		var row []string
		for _, v := range rows.RawValues() {
			row = append(row, string(v))
		}
		res.rows = append(res.rows, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return res
}

// get returns the value of column col in the first row whose column key is val.
func (r result) get(key, val, col string) (string, bool) {
	ki, ci := slices.Index(r.cols, key), slices.Index(r.cols, col)
	if ki < 0 || ci < 0 {
		return "", false
	}
	for _, row := range r.rows {
		if row[ki] == val {
			return row[ci], true
		}
	}
	return "", false
}

func (r result) column(col string) []string {
	i := slices.Index(r.cols, col)
	var out []string
	for _, row := range r.rows {
		if i >= 0 {
			out = append(out, row[i])
		}
	}
	return out
}

// PgBouncer's columns, in its order (doc/usage.md); pgswitch's come after.
var pgbouncerColumns = map[string][]string{
	"POOLS": {"database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req",
		"sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
		"maxwait", "maxwait_us", "pool_mode", "load_balance_hosts"},
	"STATS": {"database", "total_xact_count", "total_query_count", "total_server_assignment_count",
		"total_server_closed_count", "total_received", "total_sent", "total_xact_time", "total_query_time",
		"total_wait_time", "total_server_lifetime", "total_client_parse_count", "total_server_parse_count",
		"total_bind_count", "avg_xact_count", "avg_query_count", "avg_server_assignment_count", "avg_recv",
		"avg_sent", "avg_xact_time", "avg_query_time", "avg_wait_time", "avg_server_lifetime",
		"avg_client_parse_count", "avg_server_parse_count", "avg_bind_count"},
	"STATS_TOTALS": {"database", "xact_count", "query_count", "server_assignment_count", "bytes_received",
		"bytes_sent", "xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count"},
	"STATS_AVERAGES": {"database", "xact_count", "query_count", "server_assignment_count", "bytes_received",
		"bytes_sent", "xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count"},
	"LISTS": {"list", "items"},
	"SERVERS": {"type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port",
		"connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
		"application_name", "prepared_statements", "id"},
	"CLIENTS": {"type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port",
		"connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
		"application_name", "prepared_statements", "id"},
	"DATABASES": {"name", "host", "port", "database", "force_user", "pool_size", "min_pool_size",
		"reserve_pool_size", "server_lifetime", "pool_mode", "load_balance_hosts", "max_connections",
		"current_connections", "max_client_connections", "current_client_connections", "paused", "disabled"},
}

func TestAdminShowCommands(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startAdminProxy(t, proxyOptions{DBs: []string{db}, Consistency: config.ConsistencyEventual})
	app := p.Connect(t, db, pgx.QueryExecModeExec)
	ctx := testCtx(t)
	if _, err := app.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := app.Exec(ctx, "INSERT INTO t VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	replicated(t) // every replica has the table (the database reads eventually)
	eventually(t, time.Minute, "replica sees the table", func() error {
		var n int
		return app.QueryRow(ctx, "SELECT count(*) FROM t WHERE id > 41").Scan(&n)
	})
	for i := range 3 {
		var n int
		if err := app.QueryRow(ctx, "SELECT count(*) FROM t WHERE id > $1", i).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}

	// Named statements: pgx's statement cache prepares once, binds twice.
	cached := p.Connect(t, db, pgx.QueryExecModeCacheStatement)
	for range 2 {
		var n int
		if err := cached.QueryRow(ctx, "SELECT count(*) FROM t WHERE id < $1", 3).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}

	for _, name := range []string{"pgswitch", "pgbouncer"} {
		t.Run(name, func(t *testing.T) {
			conn := mustAdmin(t, p, name)
			for what, want := range pgbouncerColumns {
				res := show(t, conn, "SHOW "+what)
				if len(res.cols) < len(want) || !slices.Equal(res.cols[:len(want)], want) {
					t.Errorf("SHOW %s columns:\ngot  %q\nwant %q first", what, res.cols, want)
				}
			}
		})
	}
	conn := mustAdmin(t, p, "pgswitch")

	pools := show(t, conn, "show pools;")
	if v, ok := pools.get("database", db, "cl_active"); !ok || v != "2" {
		t.Errorf("SHOW POOLS cl_active of %s = %q (row %v), want 2 (app and cached): %v", db, v, ok, pools.rows)
	}
	if v, _ := pools.get("database", db, "pool_mode"); v != "transaction" {
		t.Errorf("SHOW POOLS pool_mode = %q, want transaction", v)
	}

	stats := show(t, conn, "Show Stats")
	for col, atLeast := range map[string]int{"total_query_count": 9, "total_xact_count": 9, "reads_routed": 3,
		"writes_routed": 6, "total_received": 100, "total_sent": 100, "total_xact_time": 1, "avg_xact_time": 1,
		"total_query_time": 1, "avg_query_time": 1, "total_client_parse_count": 1, "total_server_parse_count": 1,
		"total_bind_count": 2} {
		v, _ := stats.get("database", db, col)
		if n := atoi(v); n < atLeast {
			t.Errorf("SHOW STATS %s of %s = %q, want at least %d", col, db, v, atLeast)
		}
	}

	totals := show(t, conn, "SHOW STATS_TOTALS")
	if v, _ := totals.get("database", db, "query_count"); atoi(v) < 9 {
		t.Errorf("SHOW STATS_TOTALS query_count = %q, want at least 9", v)
	}
	lists := show(t, conn, "SHOW LISTS")
	if v, _ := lists.get("list", "used_clients", "items"); atoi(v) < 1 {
		t.Errorf("SHOW LISTS used_clients = %q, want at least 1", v)
	}
	if v, _ := lists.get("list", "databases", "items"); v != "1" {
		t.Errorf("SHOW LISTS databases = %q, want 1", v)
	}

	clients := show(t, conn, "SHOW CLIENTS")
	if v, ok := clients.get("database", db, "user"); !ok || v != cl.User {
		t.Errorf("SHOW CLIENTS has no client of %s as %s: %v", db, cl.User, clients.rows)
	}
	if v, _ := clients.get("database", db, "addr"); v != "127.0.0.1" {
		t.Errorf("SHOW CLIENTS addr = %q, want 127.0.0.1", v)
	}

	servers := show(t, conn, "SHOW SERVERS")
	roles := servers.column("role")
	if !slices.Contains(roles, "primary") || !slices.Contains(roles, "replica") {
		t.Errorf("SHOW SERVERS roles %q, want server connections to the primary and a replica", roles)
	}
	replicaReads := map[string]int{} // by server address: one row per connection
	for _, row := range servers.rows {
		m := map[string]string{}
		for i, c := range servers.cols {
			m[c] = row[i]
		}
		if m["role"] == "replica" {
			replicaReads[m["addr"]+":"+m["port"]] = atoi(m["reads_routed"])
		}
	}
	sum := 0
	for _, n := range replicaReads {
		sum += n
	}
	if sum < 3 {
		t.Errorf("SHOW SERVERS reads_routed of the replicas sum to %d, want at least 3", sum)
	}
	if v, _ := servers.get("database", db, "type"); v != "S" {
		t.Errorf("SHOW SERVERS type = %q, want S", v)
	}

	health := show(t, conn, "SHOW HEALTH")
	if len(health.rows) != 3 {
		t.Errorf("SHOW HEALTH has %d rows, want 3 servers: %v", len(health.rows), health.rows)
	}
	primaryAddr := net.JoinHostPort(cl.Primary.Host, strconv.Itoa(cl.Primary.Port))
	if v, _ := health.get("server", primaryAddr, "role"); v != "primary" {
		t.Errorf("SHOW HEALTH role of %s = %q, want primary", primaryAddr, v)
	}
	if v, _ := health.get("server", primaryAddr, "state"); v != "up" {
		t.Errorf("SHOW HEALTH state of %s = %q, want up", primaryAddr, v)
	}

	routes := show(t, conn, "SHOW ROUTES")
	found := false
	for _, row := range routes.rows {
		m := map[string]string{}
		for i, c := range routes.cols {
			m[c] = row[i]
		}
		if strings.Contains(m["query"], "41") {
			t.Errorf("SHOW ROUTES shows a literal: %q", m["query"])
		}
		if m["query"] == "SELECT count(*) FROM t WHERE id > $1" && m["route"] == "replica" {
			found = true
			if atoi(m["count"]) != 3 || len(m["fingerprint"]) != 16 || !strings.Contains(m["rule"], "read") {
				t.Errorf("SHOW ROUTES row %v: want count 3, a fingerprint and a read rule", m)
			}
		}
	}
	if !found {
		t.Errorf("SHOW ROUTES has no replica route for the SELECT: %v", routes.rows)
	}
	// Named statements (pgx's cache) show under their text too.
	if v, ok := routes.get("query", "SELECT count(*) FROM t WHERE id < $1", "count"); !ok || atoi(v) < 2 {
		t.Errorf("SHOW ROUTES count of the named statement = %q (found %v), want at least 2: %v", v, ok, routes.rows)
	}

	dbs := show(t, conn, "SHOW DATABASES")
	if v, _ := dbs.get("name", db, "paused"); v != "0" {
		t.Errorf("SHOW DATABASES paused = %q, want 0", v)
	}
	if v, _ := dbs.get("name", db, "host"); v != cl.Primary.Host {
		t.Errorf("SHOW DATABASES host = %q, want the primary's", v)
	}
	// Both say how the database's reads are spread over its replicas.
	lbPools, _ := pools.get("database", db, "load_balance_hosts")
	lbDatabases, _ := dbs.get("name", db, "load_balance_hosts")
	if lbPools != "round_robin" || lbDatabases != lbPools {
		t.Errorf("load_balance_hosts: SHOW POOLS %q, SHOW DATABASES %q, want round_robin in both", lbPools, lbDatabases)
	}

	cfg := show(t, conn, "SHOW CONFIG")
	if v, _ := cfg.get("key", "pool.size", "value"); v != "10" {
		t.Errorf("SHOW CONFIG pool.size = %q, want 10", v)
	}
	if v, _ := cfg.get("key", "pool.size", "default"); v != "20" {
		t.Errorf("SHOW CONFIG pool.size default = %q, want 20", v)
	}
	for _, row := range cfg.rows {
		if strings.Contains(strings.Join(row, " "), cl.Password) {
			t.Errorf("SHOW CONFIG shows a password: %v", row)
		}
	}

	ver := show(t, conn, "SHOW VERSION")
	if len(ver.rows) != 1 || ver.rows[0][0] != "pgswitch test" {
		t.Errorf("SHOW VERSION = %v, want pgswitch test", ver.rows)
	}

	var notice *pgconn.Notice
	hcfg := conn.Config().Config
	hcfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notice = n }
	hc, err := pgconn.ConnectConfig(ctx, &hcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close(ctx)
	if _, err := hc.Exec(ctx, "SHOW HELP").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if notice == nil || !strings.Contains(notice.Detail, "PAUSE [db]") {
		t.Errorf("SHOW HELP notice = %+v, want the list of commands", notice)
	}
}

func TestAdminErrors(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startAdminProxy(t, proxyOptions{DBs: []string{db}, Primary: true})
	ctx := testCtx(t)
	conn := mustAdmin(t, p, "pgswitch")
	for _, sql := range []string{"SHOW NONSENSE", "DROP TABLE x", "PAUSE a b", "KILL", "SELECT 1"} {
		_, err := conn.Exec(ctx, sql)
		if code := sqlstate(err); code != "42601" {
			t.Errorf("%q: got %v, want 42601", sql, err)
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && !strings.Contains(pe.Detail, "SHOW HELP") {
			t.Errorf("%q: detail %q does not list the commands", sql, pe.Detail)
		}
	}
	if _, err := conn.Exec(ctx, "PAUSE no_such_db"); sqlstate(err) != "3D000" {
		t.Errorf("PAUSE of an unknown database: got %v, want 3D000", err)
	}
	// The connection still works after errors.
	if res := show(t, conn, "SHOW VERSION"); len(res.rows) != 1 {
		t.Fatalf("SHOW VERSION after errors: %v", res.rows)
	}

	watcher, err := adminConn(t, p, "watcher", "watcher-pw", "pgbouncer")
	if err != nil {
		t.Fatalf("stats user cannot log in: %v", err)
	}
	if res := show(t, watcher, "SHOW POOLS"); len(res.cols) == 0 {
		t.Fatal("stats user: SHOW POOLS returned nothing")
	}
	for _, sql := range []string{"PAUSE", "RESUME " + db, "RELOAD", "SHUTDOWN", "KILL " + db, "DISABLE " + db} {
		if _, err := watcher.Exec(ctx, sql); sqlstate(err) != "42501" {
			t.Errorf("stats user %q: got %v, want 42501", sql, err)
		}
	}
	if p.R.Paused(db) {
		t.Fatal("a stats user's PAUSE paused the database")
	}

	if _, err := adminConn(t, p, "nobody", "nobody-pw", "pgswitch"); sqlstate(err) != "42501" {
		t.Errorf("user in neither list: got %v, want 42501", err)
	}
	if _, err := adminConn(t, p, "nobody", "wrong", "pgswitch"); sqlstate(err) != "28P01" {
		t.Errorf("bad password on the console: got %v, want 28P01", err)
	}
	// The console speaks only the simple query protocol; pgx's extended
	// protocol gets a clear error, not a hang.
	if err := conn.PgConn().ExecParams(ctx, "SHOW POOLS", nil, nil, nil, nil).Read().Err; sqlstate(err) != "0A000" {
		t.Errorf("extended protocol: got %v, want 0A000", err)
	}
}

func TestAdminPsqlTable(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startAdminProxy(t, proxyOptions{DBs: []string{db}, Primary: true})
	app := p.Connect(t, db, pgx.QueryExecModeExec)
	if _, err := app.Exec(testCtx(t), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	out := runTool(t, p, "pgswitch", time.Minute, "psql", "-X", "-v", "ON_ERROR_STOP=1",
		"-c", "SHOW POOLS", "-c", "show databases;")
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !regexp.MustCompile(`^\s*database\s+\|\s+user\s+\|\s+cl_active\s+\|`).MatchString(lines[0]) ||
		!strings.HasPrefix(lines[1], "---") {
		t.Fatalf("psql did not print a table:\n%s", out)
	}
	if !strings.Contains(out, " "+db+" ") || !strings.Contains(out, "cl_active") || !strings.Contains(out, "(1 row)") {
		t.Fatalf("psql table lacks the pool of %s:\n%s", db, out)
	}
	// Errors reach psql with their SQLSTATE.
	cmd := exec.Command(clientTool(t, "psql"), "-X", "-v", "VERBOSITY=verbose", "-c", "FROB")
	cmd.Env = append(toolEnv(p, "pgswitch"), "PGOPTIONS=")
	bad, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(bad), "42601") {
		t.Fatalf("psql FROB: %v\n%s", err, bad)
	}
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// quiet discards the admin console's logs.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestAdminClientStates: SHOW CLIENTS tells active, waiting and idle
// clients apart, and shows a pinned one.
func TestAdminClientStates(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startAdminProxy(t, proxyOptions{DBs: []string{db}, PoolSize: 1, Primary: true})
	ctx := testCtx(t)
	holder := p.Connect(t, db, pgx.QueryExecModeExec)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	waiter := p.Connect(t, db, pgx.QueryExecModeExec)
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(ctx, "SELECT 2")
		done <- err
	}()
	p.Connect(t, db, pgx.QueryExecModeExec) // idle
	conn := mustAdmin(t, p, "pgswitch")
	eventually(t, time.Minute, "one active, one waiting, one idle client", func() error {
		clients := show(t, conn, "SHOW CLIENTS")
		state := slices.Index(clients.cols, "state")
		count := map[string]int{}
		for _, r := range clients.rows {
			count[r[state]]++
		}
		if count["active"] != 1 || count["waiting"] != 1 || count["idle"] != 1 {
			return fmt.Errorf("states %v", count)
		}
		return nil
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the waiting client's query: %v", err)
	}
	// LISTEN pins the holder for good.
	if _, err := holder.Exec(ctx, "LISTEN ch"); err != nil {
		t.Fatal(err)
	}
	clients := show(t, conn, "SHOW CLIENTS")
	pinned := slices.Index(clients.cols, "pinned")
	n := 0
	for _, r := range clients.rows {
		if r[pinned] == "1" || r[pinned] == "true" || r[pinned] == "t" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d pinned clients in SHOW CLIENTS, want 1: %v", n, clients.rows)
	}
}

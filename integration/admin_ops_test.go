package integration

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgswitch/pgswitch/admin"
	"github.com/pgswitch/pgswitch/config"
)

// async runs f in the background; the returned channel yields its error.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func waitFor(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

// stillRunning fails the test if ch already has a result.
func stillRunning(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned early: %v", what, err)
	default:
	}
}

func showInt(t *testing.T, conn *pgx.Conn, sql, key, val, col string) int {
	t.Helper()
	v, ok := show(t, conn, sql).get(key, val, col)
	if !ok {
		return -1
	}
	return atoi(v)
}

func TestAdminPauseResume(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startAdminProxy(t, proxyOptions{DBs: []string{db}, Primary: true})
	ctx := testCtx(t)
	console := mustAdmin(t, p, "pgswitch")
	app := p.Connect(t, db, pgx.QueryExecModeExec)
	other := p.Connect(t, db, pgx.QueryExecModeExec)
	if _, err := app.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
		t.Fatal(err)
	}

	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	pause := async(func() error { _, err := console.Exec(ctx, "pause "+db+";"); return err })
	eventually(t, time.Minute, "database marked paused", func() error {
		if p.R.Paused(db) {
			return nil
		}
		return errors.New("not paused")
	})
	// The transaction in flight holds PAUSE and goes on undisturbed.
	stillRunning(t, pause, "PAUSE with a transaction in flight")
	if _, err := tx.Exec(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatalf("transaction in flight during PAUSE: %v", err)
	}
	stillRunning(t, pause, "PAUSE with a transaction in flight")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, pause, "PAUSE"); err != nil {
		t.Fatalf("PAUSE: %v", err)
	}
	watch := mustAdmin(t, p, "pgbouncer")
	if n := showInt(t, watch, "SHOW DATABASES", "name", db, "current_connections"); n != 0 {
		t.Fatalf("after PAUSE %d server connections of %s are open, want 0", n, db)
	}
	if n := showInt(t, watch, "SHOW DATABASES", "name", db, "paused"); n != 1 {
		t.Fatalf("SHOW DATABASES paused = %d, want 1", n)
	}

	// New work is held, not failed, until RESUME.
	var got int
	held := async(func() error { return other.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&got) })
	eventually(t, time.Minute, "query held while paused", func() error {
		if n := showInt(t, watch, "SHOW POOLS", "database", db, "cl_waiting"); n != 1 {
			return fmt.Errorf("cl_waiting %d", n)
		}
		return nil
	})
	stillRunning(t, held, "query while paused")
	if _, err := console.Exec(ctx, "RESUME"); err != nil {
		t.Fatalf("RESUME: %v", err)
	}
	if err := waitFor(t, held, "held query"); err != nil || got != 2 {
		t.Fatalf("held query after RESUME: %d, %v; want 2 rows", got, err)
	}
	if p.R.Paused(db) {
		t.Fatal("still paused after RESUME")
	}
}

func TestAdminPauseTimeout(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startAdminProxy(t, proxyOptions{DBs: []string{db}, Primary: true,
		YAML: "timeouts:\n  query_wait: 20s\n  pause: 1s\n"})
	ctx := testCtx(t)
	console := mustAdmin(t, p, "pgswitch")
	app := p.Connect(t, db, pgx.QueryExecModeExec)
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	_, err = console.Exec(ctx, "PAUSE")
	if sqlstate(err) != "57014" {
		t.Fatalf("PAUSE with a transaction that stays open: got %v, want 57014", err)
	}
	// Nothing stays paused half-way.
	if p.R.Paused(db) {
		t.Fatal("database still paused after PAUSE failed")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	other := p.Connect(t, db, pgx.QueryExecModeExec)
	if _, err := other.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("after a failed PAUSE: %v", err)
	}
}

func backendPID(t *testing.T, conn *pgx.Conn) uint32 {
	t.Helper()
	var pid uint32
	if err := conn.QueryRow(testCtx(t), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestAdminReconnectWaitClose(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startAdminProxy(t, proxyOptions{DBs: []string{db}, Primary: true, Mode: config.PoolModeSession})
	ctx := testCtx(t)
	console := mustAdmin(t, p, "pgswitch")
	app := p.Connect(t, db, pgx.QueryExecModeExec)
	before := backendPID(t, app)
	if _, err := console.Exec(ctx, "RECONNECT "+db); err != nil {
		t.Fatalf("RECONNECT: %v", err)
	}
	if n := showInt(t, console, "SHOW SERVERS", "database", db, "close_needed"); n != 1 {
		t.Fatalf("SHOW SERVERS close_needed = %d, want 1", n)
	}
	wait := async(func() error { _, err := console.Exec(ctx, "WAIT_CLOSE "+db); return err })
	// The session-mode client keeps its connection: WAIT_CLOSE waits for it.
	if got := backendPID(t, app); got != before {
		t.Fatalf("RECONNECT took the connection from a session-mode client: pid %d, then %d", before, got)
	}
	stillRunning(t, wait, "WAIT_CLOSE while the client holds its connection")
	app.Close(ctx)
	if err := waitFor(t, wait, "WAIT_CLOSE"); err != nil {
		t.Fatalf("WAIT_CLOSE: %v", err)
	}
	again := p.Connect(t, db, pgx.QueryExecModeExec)
	if got := backendPID(t, again); got == before {
		t.Fatalf("after RECONNECT the old server connection %d was reused", got)
	}
}

func TestAdminKill(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startAdminProxy(t, proxyOptions{DBs: []string{db}, Primary: true})
	ctx := testCtx(t)
	console := mustAdmin(t, p, "pgswitch")
	app := p.Connect(t, db, pgx.QueryExecModeExec)
	if _, err := app.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := console.Exec(ctx, "KILL "+db); err != nil {
		t.Fatalf("KILL: %v", err)
	}
	if _, err := app.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a killed client's query succeeded")
	} else if code := sqlstate(err); code != "57P01" && !app.IsClosed() {
		t.Fatalf("killed client got %v, want 57P01 or a closed connection", err)
	}
	if n := showInt(t, console, "SHOW DATABASES", "name", db, "current_client_connections"); n != 0 {
		t.Fatalf("%d clients of %s left after KILL", n, db)
	}
	// New clients may connect but their work waits for RESUME.
	late := p.Connect(t, db, pgx.QueryExecModeExec)
	held := async(func() error { _, err := late.Exec(ctx, "SELECT 1"); return err })
	eventually(t, time.Minute, "work held after KILL", func() error {
		if n := showInt(t, console, "SHOW POOLS", "database", db, "cl_waiting"); n != 1 {
			return fmt.Errorf("cl_waiting %d", n)
		}
		return nil
	})
	if _, err := console.Exec(ctx, "RESUME "+db); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, held, "query after RESUME"); err != nil {
		t.Fatalf("query after KILL and RESUME: %v", err)
	}
}

// TestAdminKillWhileQueued: KILL ends a client's wait for a server
// connection at once, with 57P01, not after query_wait.
func TestAdminKillWhileQueued(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startAdminProxy(t, proxyOptions{DBs: []string{db}, Primary: true, PoolSize: 1})
	ctx := testCtx(t)
	console := mustAdmin(t, p, "pgswitch")
	holder := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	if _, err := holder.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	waiter := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	queued := async(func() error { _, err := waiter.Exec(ctx, "SELECT 1"); return err })
	eventually(t, time.Minute, "the waiter queued", func() error {
		if n := showInt(t, console, "SHOW POOLS", "database", db, "cl_waiting"); n != 1 {
			return fmt.Errorf("cl_waiting %d", n)
		}
		return nil
	})
	start := time.Now()
	if _, err := console.Exec(ctx, "KILL "+db); err != nil {
		t.Fatalf("KILL: %v", err)
	}
	err := waitFor(t, queued, "the queued query")
	if code := sqlstate(err); code != "57P01" && !waiter.IsClosed() {
		t.Fatalf("queued client got %v, want 57P01", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("KILL ended the wait after %v (query_wait is 20s)", d)
	}
}

func TestAdminDisableEnable(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startAdminProxy(t, proxyOptions{DBs: []string{db}, Primary: true})
	ctx := testCtx(t)
	console := mustAdmin(t, p, "pgswitch")
	app := p.Connect(t, db, pgx.QueryExecModeExec)
	if _, err := console.Exec(ctx, "DISABLE "+db); err != nil {
		t.Fatalf("DISABLE: %v", err)
	}
	if n := showInt(t, console, "SHOW DATABASES", "name", db, "disabled"); n != 1 {
		t.Fatalf("SHOW DATABASES disabled = %d, want 1", n)
	}
	_, err := pgx.Connect(ctx, p.URL(db))
	if sqlstate(err) != "57P03" {
		t.Fatalf("new client of a disabled database: got %v, want 57P03", err)
	}
	if _, err := app.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("existing client of a disabled database: %v", err)
	}
	if _, err := console.Exec(ctx, "ENABLE "+db); err != nil {
		t.Fatalf("ENABLE: %v", err)
	}
	conn, err := pgx.Connect(ctx, p.URL(db))
	if err != nil {
		t.Fatalf("new client after ENABLE: %v", err)
	}
	conn.Close(ctx)
}

// configText is a configuration like testproxy's for db, with or without
// the replicas; broken adds an error.
func configText(db string, replicas, broken bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\npool:\n  size: 10\nhealth:\n  user: %s\n  inter: 200ms\n", cl.User)
	fmt.Fprintf(&b, "admin:\n  admin_users: [%s]\n", cl.User)
	if broken {
		b.WriteString("pool_mode: sometimes\n")
	}
	fmt.Fprintf(&b, "databases:\n  %s:\n    servers:\n      - {host: %q, port: %d, role: primary}\n", db, cl.Primary.Host, cl.Primary.Port)
	if replicas {
		for _, s := range cl.Replicas {
			fmt.Fprintf(&b, "      - {host: %q, port: %d, role: replica}\n", s.Host, s.Port)
		}
	}
	fmt.Fprintf(&b, "users:\n  %s:\n    password: %q\n", cl.User, cl.Password)
	return b.String()
}

func TestAdminReload(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	var mu sync.Mutex
	text := configText(db, false, false)
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true,
		YAML: "admin:\n  admin_users: [" + cl.User + "]\nhealth:\n  user: " + cl.User + "\n  inter: 200ms\n"})
	if err := p.R.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	p.R.SetAdmin(admin.New(p.R, admin.Options{Version: "test", Log: quiet, Load: func() (*config.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		return config.Parse([]byte(text))
	}}))
	setText := func(s string) { mu.Lock(); text = s; mu.Unlock() }
	ctx := testCtx(t)
	console := mustAdmin(t, p, "pgswitch")
	app := p.Connect(t, db, pgx.QueryExecModeExec)
	inRecovery := func() bool {
		var r bool
		if err := app.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	for range 5 {
		if inRecovery() {
			t.Fatal("a read reached a replica before the replicas were configured")
		}
	}

	// A broken configuration is refused whole; the running one stays.
	setText(configText(db, true, true))
	_, err = console.Exec(ctx, "RELOAD")
	if sqlstate(err) != "F0000" || !strings.Contains(err.Error(), "pool_mode") {
		t.Fatalf("RELOAD of a broken file: got %v, want F0000 naming pool_mode", err)
	}
	if n := len(show(t, console, "SHOW HEALTH").rows); n != 1 {
		t.Fatalf("after a refused RELOAD SHOW HEALTH lists %d servers, want 1", n)
	}
	if inRecovery() {
		t.Fatal("a refused RELOAD changed the routing")
	}

	// Adding the replicas: reads reach them on the same client connection.
	setText(configText(db, true, false))
	if _, err := console.Exec(ctx, "reload;"); err != nil {
		t.Fatalf("RELOAD: %v", err)
	}
	eventually(t, time.Minute, "a read on a replica after RELOAD", func() error {
		if inRecovery() {
			return nil
		}
		return errors.New("reads still on the primary")
	})
	if n := len(show(t, console, "SHOW HEALTH").rows); n != 3 {
		t.Fatalf("after RELOAD SHOW HEALTH lists %d servers, want 3", n)
	}
}

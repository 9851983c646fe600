package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/config"
)

// preparedWorkload runs 50 clients, each with its own connection, through
// pgswitch in transaction mode with the split on and 5 server connections
// per server: 40 units each, reads of known data and writes, using run to
// issue every statement. It checks every result and the data written.
func preparedWorkload(t *testing.T, mode pgx.QueryExecMode, prepare bool) {
	db := newDatabase(t)
	setup := primaryConn(t, db)
	ctx := testCtx(t)
	if _, err := setup.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY, val int);
		INSERT INTO items SELECT g, g * 7 FROM generate_series(1, 1000) g;
		CREATE TABLE log (client int, n int, PRIMARY KEY (client, n))`); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReplicated(ctx); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 5, DBs: []string{db}, Consistency: config.ConsistencyEventual})
	const clients, units = 50, 40
	var failures atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := p.Connect(t, db, mode)
			read, write := "SELECT val FROM items WHERE id = $1", "INSERT INTO log VALUES ($1, $2) RETURNING n"
			if prepare {
				// Names the client reuses across transactions, and that
				// every client uses for its own text.
				if _, err := conn.Prepare(ctx, "read", read); err != nil {
					fail(err)
					return
				}
				if _, err := conn.Prepare(ctx, "write", write); err != nil {
					fail(err)
					return
				}
				read, write = "read", "write"
			}
			for u := 0; u < units; u++ {
				if u%4 == 3 {
					var n int
					if err := conn.QueryRow(ctx, write, c, u).Scan(&n); err != nil || n != u {
						fail(fmt.Errorf("client %d write %d: got %d, %v", c, u, n, err))
					}
					continue
				}
				id := 1 + (c*units+u)%1000
				var val int
				if err := conn.QueryRow(ctx, read, id).Scan(&val); err != nil || val != id*7 {
					fail(fmt.Errorf("client %d read id %d: got %d, %v", c, id, val, err))
				}
			}
		}()
	}
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d failures, first: %v", f, firstErr.Load())
	}
	var rows, sum int
	if err := setup.QueryRow(ctx, "SELECT count(*), coalesce(sum(n), 0) FROM log").Scan(&rows, &sum); err != nil {
		t.Fatal(err)
	}
	wantRows, wantSum := 0, 0
	for u := 3; u < units; u += 4 {
		wantRows += clients
		wantSum += clients * u
	}
	if rows != wantRows || sum != wantSum {
		t.Fatalf("log has %d rows summing to %d, want %d rows summing to %d", rows, sum, wantRows, wantSum)
	}
	var reads uint64
	for _, s := range cl.Replicas {
		reads += p.R.Counters(fmt.Sprintf("%s:%d", s.Host, s.Port)).Reads.Load()
	}
	if reads == 0 {
		t.Fatal("no read reached a replica")
	}
}

func TestNamedStatementsAcrossServerConnections(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		mode    pgx.QueryExecMode
		prepare bool
	}{
		{"statement cache", pgx.QueryExecModeCacheStatement, false},
		{"describe cache", pgx.QueryExecModeCacheDescribe, false},
		{"explicit names", pgx.QueryExecModeCacheStatement, true},
	} {
		t.Run(tc.name, func(t *testing.T) { preparedWorkload(t, tc.mode, tc.prepare) })
	}
}

// TestSameStatementNameTwoClients: two clients share one server connection
// and both prepare "s" with different texts.
func TestSameStatementNameTwoClients(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 1, DBs: []string{db}, Primary: true})
	ctx := testCtx(t)
	a := p.Connect(t, db, pgx.QueryExecModeCacheStatement)
	b := p.Connect(t, db, pgx.QueryExecModeCacheStatement)
	if _, err := a.Prepare(ctx, "s", "SELECT 'a:' || $1::text"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Prepare(ctx, "s", "SELECT 'b:' || ($1::int * 2)::text"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		var ga, gb string
		if err := a.QueryRow(ctx, "s", fmt.Sprint(i)).Scan(&ga); err != nil {
			t.Fatal(err)
		}
		if err := b.QueryRow(ctx, "s", i).Scan(&gb); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("a:%d", i); ga != want {
			t.Fatalf("client a got %q, want %q", ga, want)
		}
		if want := fmt.Sprintf("b:%d", 2*i); gb != want {
			t.Fatalf("client b got %q, want %q", gb, want)
		}
	}
	// Close (Deallocate) and prepare the name again with another text.
	if err := a.Deallocate(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Prepare(ctx, "s", "SELECT 'again:' || $1::text"); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := a.QueryRow(ctx, "s", "x").Scan(&got); err != nil || got != "again:x" {
		t.Fatalf("after Deallocate and Prepare: got %q, %v", got, err)
	}
	// DEALLOCATE ALL forgets every statement of the client; pgx prepares again.
	if _, err := a.Exec(ctx, "DEALLOCATE ALL"); err != nil {
		t.Fatal(err)
	}
	if err := a.QueryRow(ctx, "SELECT $1::int + 1", 41).Scan(new(int)); err != nil {
		t.Fatalf("after DEALLOCATE ALL: %v", err)
	}
}

// TestStatementBoundEviction: with at most 3 statements per server
// connection, a client cycling through 12 keeps working.
func TestStatementBoundEviction(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 2, DBs: []string{db}, Primary: true,
		PoolExtra: "  max_prepared_statements: 3\n"})
	ctx := testCtx(t)
	conn := p.Connect(t, db, pgx.QueryExecModeCacheStatement)
	for round := 0; round < 3; round++ {
		for i := 0; i < 12; i++ {
			var got int
			if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT $1::int + %d", i), round).Scan(&got); err != nil {
				t.Fatalf("round %d statement %d: %v", round, i, err)
			}
			if got != round+i {
				t.Fatalf("round %d statement %d: got %d, want %d", round, i, got, round+i)
			}
		}
	}
	for _, pl := range p.R.Pools().Pools() {
		for _, c := range pl.Conns() {
			if n := c.Prepared; n > 3+1 {
				t.Fatalf("server connection %d keeps %d statements, want at most 3 (+1 within a unit)", c.PID, n)
			}
		}
	}
}

// TestSetPersistsAcrossServerConnections: SET search_path in one
// transaction is in force in the next, which runs on another server
// connection; a client that did not SET does not see it.
func TestSetPersistsAcrossServerConnections(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	ctx := testCtx(t)
	if _, err := setup.Exec(ctx, "CREATE SCHEMA s1; CREATE TABLE s1.only_in_s1 (x int); INSERT INTO s1.only_in_s1 VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 2, DBs: []string{db}, Primary: true})
	a := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	b := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	if _, err := a.Exec(ctx, "SET search_path TO s1, public"); err != nil {
		t.Fatal(err)
	}
	var pid1 int
	if err := a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	waitIdleConns(t, p, 1) // the lease ends just after the answer went out
	// b holds that server connection in a transaction: a must use another.
	tx, err := b.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var bpid int
	var bpath string
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid(), current_setting('search_path')").Scan(&bpid, &bpath); err != nil {
		t.Fatal(err)
	}
	if bpid != pid1 {
		t.Fatalf("client b got server connection %d, want the idle one %d", bpid, pid1)
	}
	if bpath == "s1, public" {
		t.Fatal("client b sees client a's search_path")
	}
	var pid2, x int
	var path string
	if err := a.QueryRow(ctx, "SELECT pg_backend_pid(), current_setting('search_path'), (SELECT x FROM only_in_s1)").Scan(&pid2, &path, &x); err != nil {
		t.Fatal(err)
	}
	if pid2 == pid1 {
		t.Fatalf("client a ran on the same server connection %d, want another", pid1)
	}
	if path != "s1, public" || x != 42 {
		t.Fatalf("client a on the other connection: search_path %q, x %d", path, x)
	}
	// RESET: the setting is gone on every connection.
	if _, err := a.Exec(ctx, "RESET search_path"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if err := a.QueryRow(ctx, "SELECT current_setting('search_path')").Scan(&path); err != nil {
			t.Fatal(err)
		}
		if path == "s1, public" {
			t.Fatalf("search_path still %q after RESET", path)
		}
	}

	// A SET in a transaction that rolls back is gone, as in PostgreSQL; one
	// that commits stays, on whichever server connection comes next.
	for _, end := range []string{"ROLLBACK", "COMMIT"} {
		for _, sql := range []string{"BEGIN", "SET statement_timeout = 4321", end} {
			if _, err := a.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		// b holds one connection now and then, so that a moves between them.
		tx, err := b.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			var timeout string
			var pid int
			if err := a.QueryRow(ctx, "SELECT current_setting('statement_timeout'), pg_backend_pid()").Scan(&timeout, &pid); err != nil {
				t.Fatal(err)
			}
			if want := map[string]bool{"ROLLBACK": false, "COMMIT": true}[end]; (timeout == "4321ms") != want {
				t.Fatalf("after BEGIN; SET; %s: statement_timeout %q on connection %d", end, timeout, pid)
			}
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPinnedSessionState: LISTEN, temp tables and advisory locks keep the
// client on its server connection in transaction mode.
func TestPinnedSessionState(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 3, DBs: []string{db}})
	ctx := testCtx(t)

	listener := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	if _, err := listener.Exec(ctx, "LISTEN news"); err != nil {
		t.Fatal(err)
	}
	other := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	// Keep the other clients busy on their own connections meanwhile.
	for i := 0; i < 5; i++ {
		if _, err := other.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.Exec(ctx, "NOTIFY news, 'hello'"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatalf("waiting for the notification: %v", err)
	}
	if n.Channel != "news" || n.Payload != "hello" {
		t.Fatalf("got %+v", n)
	}

	tmp := p.Connect(t, db, pgx.QueryExecModeCacheStatement)
	if _, err := tmp.Exec(ctx, "CREATE TEMP TABLE scratch (x int)"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := tmp.Exec(ctx, "INSERT INTO scratch VALUES ($1)", i); err != nil {
			t.Fatalf("insert %d into the temp table: %v", i, err)
		}
		// Another client's units in between must not take the connection.
		if _, err := other.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	var count int
	if err := tmp.QueryRow(ctx, "SELECT count(*) FROM scratch").Scan(&count); err != nil || count != 5 {
		t.Fatalf("temp table: %d rows, %v", count, err)
	}
	pinned := 0
	for _, ci := range p.R.Clients() {
		if ci.Pinned {
			pinned++
		}
	}
	if pinned != 2 {
		t.Fatalf("%d pinned clients, want 2 (the listener and the temp table user)", pinned)
	}
}

// TestPgbenchPreparedTransactionMode: pgbench -M prepared in transaction
// mode, split on (-S, reads to replicas) and writes (-N).
func TestPgbenchPreparedTransactionMode(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	init := startProxy(t, proxyOptions{Mode: config.PoolModeSession, DBs: []string{db}, Primary: true})
	runTool(t, init, db, 3*time.Minute, "pgbench", "-i", "-q", "-s", "2")
	if err := cl.WaitReplicated(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 8, DBs: []string{db}})
	for _, script := range []string{"-S", "-N"} {
		t.Run(script, func(t *testing.T) {
			out := pgbenchRun(t, p, db, "-c", "16", "-j", "2", "-T", "10", "-M", "prepared", script)
			t.Logf("%s", lastLines(out, 3))
		})
	}
}

// TestSchemaChangeReprepares: after ALTER TABLE … ADD COLUMN, a prepared
// SELECT * whose server-side plan is stale (0A000) works again through
// pgswitch without reconnecting. A unit that asks for the row description
// is retried transparently; pgx, which decodes with the description it
// cached, gets the 0A000 once, as from PostgreSQL itself, and its next
// execution succeeds (through PgBouncer it keeps failing until RECONNECT).
func TestSchemaChangeReprepares(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	ctx := testCtx(t)
	if _, err := setup.Exec(ctx, "CREATE TABLE wide (a int); INSERT INTO wide VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	addColumn := func(name string) {
		t.Helper()
		if _, err := setup.Exec(ctx, "ALTER TABLE wide ADD COLUMN "+name+" int DEFAULT 7"); err != nil {
			t.Fatal(err)
		}
		if err := cl.WaitReplicated(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, route := range []string{"primary", "auto"} {
		t.Run(route, func(t *testing.T) {
			p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 1, DBs: []string{db}, Primary: route == "primary"})

			// The protocol as pgconn.ExecPrepared speaks it: Bind, Describe
			// portal, Execute, Sync.
			raw := p.Connect(t, db, pgx.QueryExecModeCacheStatement).PgConn()
			if _, err := raw.Prepare(ctx, "all_raw", "SELECT * FROM wide", nil); err != nil {
				t.Fatal(err)
			}
			cols := func() int {
				t.Helper()
				res := raw.ExecPrepared(ctx, "all_raw", nil, nil, nil).Read()
				if res.Err != nil {
					t.Fatalf("execute after ADD COLUMN: %v", res.Err)
				}
				return len(res.FieldDescriptions)
			}
			before := cols()
			addColumn("raw_" + route)
			if got := cols(); got != before+1 {
				t.Fatalf("after ADD COLUMN: %d columns, want %d", got, before+1)
			}

			conn := p.Connect(t, db, pgx.QueryExecModeCacheStatement)
			query := func() (map[string]any, error) {
				rows, err := conn.Query(ctx, "SELECT * FROM wide")
				if err != nil {
					return nil, err
				}
				return pgx.CollectExactlyOneRow(rows, pgx.RowToMap)
			}
			if _, err := query(); err != nil {
				t.Fatal(err)
			}
			col := "pgx_" + route
			addColumn(col)
			row, err := query()
			if err != nil {
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "0A000" {
					t.Fatalf("first execution after ADD COLUMN: %v, want success or 0A000", err)
				}
				if row, err = query(); err != nil {
					t.Fatalf("second execution after ADD COLUMN: %v", err)
				}
			}
			if row[col] == nil {
				t.Fatalf("after ADD COLUMN: got %v, want the new column %s", row, col)
			}
			for i := 0; i < 3; i++ {
				if _, err := query(); err != nil {
					t.Fatalf("execution %d after the change: %v", i, err)
				}
			}
		})
	}
}

// TestSQLPrepareExecute: SQL-level PREPARE, EXECUTE and DEALLOCATE work in
// transaction mode across server connections and servers, and two clients
// using one name get their own statements.
func TestSQLPrepareExecute(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	ctx := testCtx(t)
	if _, err := setup.Exec(ctx, "CREATE TABLE notes (id serial PRIMARY KEY, body text)"); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReplicated(ctx); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 2, DBs: []string{db}})
	a := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	b := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	mustExec := func(c *pgx.Conn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	mustExec(a, "PREPARE q (int) AS SELECT $1 * 10")
	mustExec(b, "PREPARE q (int) AS SELECT $1 + 1000")
	mustExec(a, "PREPARE ins (text) AS INSERT INTO notes (body) VALUES ($1) RETURNING id")
	// Hold a server connection in a transaction now and then, so that the
	// EXECUTEs land on connections where the statement is not yet prepared.
	tx, err := b.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		var ga, gb, id int
		if err := a.QueryRow(ctx, fmt.Sprintf("EXECUTE q(%d)", i)).Scan(&ga); err != nil || ga != i*10 {
			t.Fatalf("client a EXECUTE q(%d): got %d, %v", i, ga, err)
		}
		if err := a.QueryRow(ctx, fmt.Sprintf("EXECUTE ins('note %d')", i)).Scan(&id); err != nil || id == 0 {
			t.Fatalf("client a EXECUTE ins: got %d, %v", id, err)
		}
		if i == 3 {
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if i > 3 {
			if err := b.QueryRow(ctx, fmt.Sprintf("EXECUTE q(%d)", i)).Scan(&gb); err != nil || gb != i+1000 {
				t.Fatalf("client b EXECUTE q(%d): got %d, %v", i, gb, err)
			}
		}
	}
	var n int
	if err := setup.QueryRow(ctx, "SELECT count(*) FROM notes").Scan(&n); err != nil || n != 6 {
		t.Fatalf("notes: %d rows, %v; want 6", n, err)
	}
	mustExec(a, "DEALLOCATE q")
	if _, err := a.Exec(ctx, "EXECUTE q(1)"); err == nil {
		t.Fatal("EXECUTE after DEALLOCATE succeeded")
	}
	if err := b.QueryRow(ctx, "EXECUTE q(5)").Scan(&n); err != nil || n != 1005 {
		t.Fatalf("client b after a's DEALLOCATE: got %d, %v", n, err)
	}
	mustExec(b, "DEALLOCATE ALL")
	if _, err := b.Exec(ctx, "EXECUTE q(1)"); err == nil {
		t.Fatal("EXECUTE after DEALLOCATE ALL succeeded")
	}
}

// TestStartupParameters: settings a client gives at startup (parameters
// and options -c) are in force on every server connection it uses, in
// both pool modes, and reported to it at login as PostgreSQL would.
func TestStartupParameters(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	for _, mode := range []config.PoolMode{config.PoolModeSession, config.PoolModeTransaction} {
		t.Run(string(mode), func(t *testing.T) {
			p := startProxy(t, proxyOptions{Mode: mode, PoolSize: 2, DBs: []string{db}, Primary: true})
			ctx := testCtx(t)
			connect := func() *pgx.Conn {
				cfg, err := pgx.ParseConfig(p.URL(db))
				if err != nil {
					t.Fatal(err)
				}
				cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
				cfg.RuntimeParams["DateStyle"] = "SQL, DMY"
				cfg.RuntimeParams["options"] = "-c search_path=pg_catalog,public -c statement_timeout=4321"
				conn, err := pgx.ConnectConfig(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close(context.Background()) })
				return conn
			}
			a := connect()
			if got := a.PgConn().ParameterStatus("DateStyle"); got != "SQL, DMY" {
				t.Errorf("DateStyle reported at login: %q, want %q", got, "SQL, DMY")
			}
			b := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol) // plain: defaults
			for i := 0; i < 4; i++ {
				var ds, path, timeout string
				if err := a.QueryRow(ctx, "SELECT current_setting('DateStyle'), current_setting('search_path'), current_setting('statement_timeout')").Scan(&ds, &path, &timeout); err != nil {
					t.Fatal(err)
				}
				if ds != "SQL, DMY" || strings.ReplaceAll(path, " ", "") != "pg_catalog,public" || timeout != "4321ms" {
					t.Fatalf("client with startup settings sees DateStyle %q, search_path %q, statement_timeout %q", ds, path, timeout)
				}
				if err := b.QueryRow(ctx, "SELECT current_setting('DateStyle'), current_setting('statement_timeout')").Scan(&ds, &timeout); err != nil {
					t.Fatal(err)
				}
				if ds == "SQL, DMY" || timeout == "4321ms" {
					t.Fatalf("a plain client sees another client's startup settings: DateStyle %q, statement_timeout %q", ds, timeout)
				}
			}
		})
	}
}

// TestUnnamedStatementAcrossUnits: pgx's describe-exec mode (Parse and
// Describe of the unnamed statement in one round trip, Bind in the next)
// under load: 20 clients over 2 server connections per server, every result
// checked. TestUnnamedStatementOnAnotherConnection forces the move.
func TestUnnamedStatementAcrossUnits(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	ctx := testCtx(t)
	if _, err := setup.Exec(ctx, "CREATE TABLE kv (k int PRIMARY KEY, v int); INSERT INTO kv SELECT g, g * 3 FROM generate_series(1, 100) g"); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReplicated(ctx); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 2, DBs: []string{db}})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for c := 0; c < 20; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := p.Connect(t, db, pgx.QueryExecModeDescribeExec)
			for i := 0; i < 30; i++ {
				k := 1 + (c*30+i)%100
				var v int
				if err := conn.QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", k).Scan(&v); err != nil || v != k*3 {
					errs <- fmt.Errorf("client %d: k %d: got %d, %v", c, k, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestUnnamedStatementOnAnotherConnection: the unnamed statement a client
// parsed in one unit is there for its Bind in the next, which runs on
// another server connection.
func TestUnnamedStatementOnAnotherConnection(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 2, DBs: []string{db}, Primary: true})
	ctx := testCtx(t)
	a := p.Connect(t, db, pgx.QueryExecModeDescribeExec).PgConn()
	b := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	sd, err := a.Prepare(ctx, "", "SELECT $1::int * 2, pg_backend_pid()", nil)
	if err != nil {
		t.Fatal(err)
	}
	res := a.ExecStatement(ctx, sd, [][]byte{[]byte("1")}, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	pid1 := string(res.Rows[0][1])
	// Parse again, then let b hold that server connection in a transaction.
	if sd, err = a.Prepare(ctx, "", "SELECT $1::int * 2, pg_backend_pid()", nil); err != nil {
		t.Fatal(err)
	}
	waitIdleConns(t, p, 1)
	tx, err := b.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var bpid string
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()::text").Scan(&bpid); err != nil {
		t.Fatal(err)
	}
	if bpid != pid1 {
		// The pool has one idle connection then, a's: b must get it.
		t.Fatalf("b got server connection %s, want a's idle %s", bpid, pid1)
	}
	res = a.ExecStatement(ctx, sd, [][]byte{[]byte("21")}, nil, nil).Read()
	if res.Err != nil {
		t.Fatalf("Bind of the unnamed statement on another server connection: %v", res.Err)
	}
	if got := string(res.Rows[0][0]); got != "42" || string(res.Rows[0][1]) == pid1 {
		t.Fatalf("got %s on %s, want 42 on another connection than %s", got, res.Rows[0][1], pid1)
	}
}

// TestParseFlushAnsweredByPgswitch: inside a transaction, a Parse of a text
// the server connection has prepared already is answered by pgswitch; with
// Flush (no Sync) its ParseComplete must still come.
func TestParseFlushAnsweredByPgswitch(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 1, DBs: []string{db}, Primary: true})
	ctx := testCtx(t)
	conn := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	hj, err := conn.PgConn().Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hj.Conn.Close()
	fe := hj.Frontend
	expect := func(what string, want ...pgproto3.BackendMessage) {
		t.Helper()
		hj.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		for _, w := range want {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("%s: waiting for %T: %v", what, w, err)
			}
			if fmt.Sprintf("%T", m) != fmt.Sprintf("%T", w) {
				t.Fatalf("%s: got %T, want %T", what, m, w)
			}
		}
	}
	fe.Send(&pgproto3.Parse{Name: "a", Query: "SELECT 1"})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	expect("Parse a, Sync", &pgproto3.ParseComplete{}, &pgproto3.ReadyForQuery{})
	// The same text under another name: already prepared on the server.
	fe.Send(&pgproto3.Parse{Name: "b", Query: "SELECT 1"})
	fe.Send(&pgproto3.Flush{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	expect("Parse b, Flush", &pgproto3.ParseComplete{})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	expect("Sync", &pgproto3.ReadyForQuery{})
}

// waitIdleConns waits until the proxy's pools hold n idle server connections.
func waitIdleConns(t *testing.T, p *proxy, n int) {
	t.Helper()
	eventually(t, 30*time.Second, "idle server connections", func() error {
		idle := 0
		for _, pl := range p.R.Pools().Pools() {
			idle += pl.Stats().Idle
		}
		if idle != n {
			return fmt.Errorf("%d idle, want %d", idle, n)
		}
		return nil
	})
}

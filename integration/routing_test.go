package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/router/classify"
)

// onReplica runs a query that returns pg_is_in_recovery() of the server it ran on.
func onReplica(t *testing.T, conn *pgx.Conn, sql string, args ...any) bool {
	t.Helper()
	var standby bool
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&standby); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return standby
}

func replicated(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.WaitReplicated(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestReadWriteSplit(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	ctx := testCtx(t)
	for _, sql := range []string{
		"CREATE TABLE items (id serial PRIMARY KEY, name text)",
		"CREATE SEQUENCE seq",
		"INSERT INTO items (name) VALUES ('a'), ('b')",
	} {
		if _, err := setup.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	replicated(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Consistency: config.ConsistencyEventual})
	execModes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec,
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec}
	for _, em := range execModes {
		t.Run(em.String(), func(t *testing.T) {
			conn := p.Connect(t, db, em)
			cases := []struct {
				sql     string
				replica bool
			}{
				{"SELECT pg_is_in_recovery()", true},
				{"SELECT pg_is_in_recovery() FROM items LIMIT 1", true},
				{"WITH x AS (SELECT 1) SELECT pg_is_in_recovery() FROM x", true},
				{"SELECT nextval('seq') > 0 AND pg_is_in_recovery()", false},
				{"SELECT pg_is_in_recovery() FROM items WHERE id = 1 FOR UPDATE", false},
				{"INSERT INTO items (name) VALUES ('c') RETURNING pg_is_in_recovery()", false},
				{"/* pgswitch:primary */ SELECT pg_is_in_recovery()", false},
				{"WITH ins AS (INSERT INTO items (name) VALUES ('d') RETURNING id) SELECT pg_is_in_recovery() FROM ins", false},
			}
			for _, c := range cases {
				if got := onReplica(t, conn, c.sql); got != c.replica {
					t.Errorf("%s: ran on a replica = %v, want %v", c.sql, got, c.replica)
				}
			}
			// A plain transaction stays on the primary from BEGIN to COMMIT.
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var standby bool
			var port1, port2 int
			if err := tx.QueryRow(ctx, "SELECT pg_is_in_recovery(), inet_server_port()").Scan(&standby, &port1); err != nil {
				t.Fatal(err)
			}
			if err := tx.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port2); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if standby || port1 != cl.Primary.Port || port2 != port1 {
				t.Errorf("BEGIN; SELECT …; COMMIT ran on port %d then %d (standby %v), want the primary %d twice", port1, port2, standby, cl.Primary.Port)
			}
			// BEGIN READ ONLY may go to a replica, and stays there.
			tx, err = conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.QueryRow(ctx, "SELECT pg_is_in_recovery(), inet_server_port()").Scan(&standby, &port1); err != nil {
				t.Fatal(err)
			}
			if err := tx.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port2); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if !standby || port2 != port1 {
				t.Errorf("BEGIN READ ONLY ran on port %d then %d (standby %v), want one replica", port1, port2, standby)
			}
		})
	}

	// Round robin reaches both replicas.
	conn := p.Connect(t, db, pgx.QueryExecModeExec)
	seen := map[int]int{}
	for i := 0; i < 20; i++ {
		var port int
		if err := conn.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port); err != nil {
			t.Fatal(err)
		}
		seen[port]++
	}
	for _, r := range cl.Replicas {
		if seen[r.Port] == 0 {
			t.Errorf("replica %s (port %d) got no reads: %v", r.Name, r.Port, seen)
		}
	}
	if seen[cl.Primary.Port] != 0 {
		t.Errorf("the primary got %d plain reads, want 0", seen[cl.Primary.Port])
	}
}

func TestDatabaseRoutes(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Consistency: config.ConsistencyEventual, Aliases: map[string][2]string{
		db + "_rw": {"primary", db},
		db + "_ro": {"replica", db},
	}})
	rw := p.Connect(t, db+"_rw", pgx.QueryExecModeExec)
	ro := p.Connect(t, db+"_ro", pgx.QueryExecModeExec)
	if onReplica(t, rw, "SELECT pg_is_in_recovery()") {
		t.Error("route: primary sent a read to a replica")
	}
	if !onReplica(t, ro, "SELECT pg_is_in_recovery()") {
		t.Error("route: replica sent a read to the primary")
	}
	if !onReplica(t, ro, "/* pgswitch:primary */ SELECT pg_is_in_recovery()") {
		t.Error("route: replica lets a hint override it; the database route must win")
	}
	auto := p.Connect(t, db, pgx.QueryExecModeExec)
	if !onReplica(t, auto, "/* pgswitch:replica */ SELECT pg_is_in_recovery()") {
		t.Error("replica hint ignored")
	}
}

func TestVolatileUserFunctions(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	ctx := testCtx(t)
	for _, sql := range []string{
		"CREATE FUNCTION vol_fn() RETURNS boolean VOLATILE LANGUAGE sql AS 'SELECT pg_is_in_recovery()'",
		"CREATE FUNCTION imm_fn() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1'",
	} {
		if _, err := setup.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	replicated(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Consistency: config.ConsistencyEventual})
	if err := p.R.RefreshVolatile(ctx); err != nil {
		t.Fatal(err)
	}
	conn := p.Connect(t, db, pgx.QueryExecModeExec)
	if onReplica(t, conn, "SELECT vol_fn()") {
		t.Error("a user-defined volatile function ran on a replica")
	}
	if !onReplica(t, conn, "SELECT imm_fn() = 1 AND pg_is_in_recovery()") {
		t.Error("an immutable function was kept off the replicas")
	}
	if !onReplica(t, conn, "SELECT random() >= 0 AND pg_is_in_recovery()") {
		t.Error("built-in volatile random() was kept off the replicas")
	}
}

func TestReadOnlyRefusalRetriedOnPrimary(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	// volatile_refresh is long and the function is created after pgswitch
	// loaded the catalog, so the classifier takes its call for a read.
	p := startProxy(t, proxyOptions{DBs: []string{db}, Consistency: config.ConsistencyEventual, YAML: "routing:\n  volatile_refresh: 1h\n"})
	ctx := testCtx(t)
	if err := p.R.RefreshVolatile(ctx); err != nil {
		t.Fatal(err)
	}
	setup := primaryConn(t, db)
	for _, sql := range []string{
		"CREATE TABLE log (at timestamptz DEFAULT now())",
		`CREATE FUNCTION sneaky() RETURNS boolean LANGUAGE plpgsql AS $$
		 BEGIN INSERT INTO log DEFAULT VALUES; RETURN pg_is_in_recovery(); END $$`,
	} {
		if _, err := setup.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	replicated(t)
	execModes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec,
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec}
	for _, em := range execModes {
		conn := p.Connect(t, db, em)
		// Spelled differently per mode so that each starts unremembered.
		sql := fmt.Sprintf("SELECT sneaky() /* %d */, %d", em, em)
		var standby bool
		var n int
		if err := conn.QueryRow(ctx, sql).Scan(&standby, &n); err != nil {
			t.Fatalf("%s: first call failed: %v", em, err)
		}
		if standby {
			t.Fatalf("%s: first call ran on a replica", em)
		}
		before := replicaReads(p)
		primaryWrites := p.R.Counters(addrOf(cl.Primary.Port)).Writes.Load()
		if err := conn.QueryRow(ctx, sql).Scan(&standby, &n); err != nil || standby {
			t.Fatalf("%s: second call: standby %v err %v", em, standby, err)
		}
		if after := replicaReads(p); after != before {
			t.Errorf("%s: second call went to a replica first (replica reads %d → %d)", em, before, after)
		}
		units := uint64(1)
		if em == pgx.QueryExecModeDescribeExec {
			units = 2 // Parse and Describe, then Bind and Execute
		}
		if w := p.R.Counters(addrOf(cl.Primary.Port)).Writes.Load(); w != primaryWrites+units {
			t.Errorf("%s: primary writes %d → %d, want +%d", em, primaryWrites, w, units)
		}
	}
	var rows int
	if err := setup.QueryRow(ctx, "SELECT count(*) FROM log").Scan(&rows); err != nil || rows != 2*len(execModes) {
		t.Fatalf("log has %d rows (%v), want %d: each call wrote exactly once", rows, err, 2*len(execModes))
	}
}

func addrOf(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

func replicaReads(p *proxy) uint64 {
	var n uint64
	for _, r := range cl.Replicas {
		n += p.R.Counters(addrOf(r.Port)).Reads.Load()
	}
	return n
}

func TestPgbenchSplit(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	init := startProxy(t, proxyOptions{Mode: config.PoolModeSession, DBs: []string{db}, Primary: true})
	runTool(t, init, db, 3*time.Minute, "pgbench", "-i", "-q", "-s", "1")
	replicated(t)
	for _, protocol := range []string{"simple", "extended"} {
		t.Run(protocol, func(t *testing.T) {
			p := startProxy(t, proxyOptions{DBs: []string{db}, PoolSize: 8, Consistency: config.ConsistencyEventual})
			pgbenchRun(t, p, db, "-N", "-n", "-c", "4", "-j", "2", "-T", "3", "-M", protocol)
			primary := p.R.Counters(addrOf(cl.Primary.Port))
			if primary.Writes.Load() == 0 {
				t.Errorf("-N: the primary saw no writes")
			}
			readsBefore := primary.Reads.Load()
			replicated(t)
			pgbenchRun(t, p, db, "-S", "-n", "-c", "4", "-j", "2", "-T", "3", "-M", protocol)
			if r := replicaReads(p); r == 0 {
				t.Errorf("-S: the replicas served no reads")
			}
			for _, r := range cl.Replicas {
				if p.R.Counters(addrOf(r.Port)).Reads.Load() == 0 {
					t.Errorf("-S: replica %s served no reads", r.Name)
				}
			}
			if got := primary.Reads.Load(); got != readsBefore {
				t.Errorf("-S: %d reads went to the primary, want 0", got-readsBefore)
			}
		})
	}
}

// TestEveryVolatileBuiltinIsAWrite walks the primary's pg_proc: every
// volatile function of pg_catalog is on the read-safe list or makes a call
// to it a write, and every one on the list runs on a replica.
func TestEveryVolatileBuiltinIsAWrite(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Consistency: config.ConsistencyEventual})
	ctx := testCtx(t)
	if err := p.R.RefreshVolatile(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := primaryConn(t, db).Query(ctx, `SELECT DISTINCT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE p.provolatile = 'v' AND n.nspname = 'pg_catalog' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 100 {
		t.Fatalf("only %d volatile pg_catalog functions", len(names))
	}
	safe := map[string]bool{}
	for _, n := range classify.ReadSafeVolatile {
		safe[n] = true
	}
	reads := 0
	for _, name := range names {
		res, _ := p.R.Classify(db, "SELECT pg_catalog."+name+"()")
		switch {
		case safe[name] && res.Route != classify.Read:
			t.Errorf("%s is on the read-safe list but classified %v (%s)", name, res.Route, res.Reason)
		case !safe[name] && res.Route != classify.Write:
			t.Errorf("volatile %s() classified %v (%s), want a write", name, res.Route, res.Reason)
		case safe[name]:
			reads++
		}
	}
	if reads == 0 {
		t.Fatal("no read-safe function among pg_catalog's volatile ones")
	}
	// The read-safe ones really run on a replica.
	conn := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	for _, sql := range []string{"SELECT clock_timestamp(), random(), gen_random_uuid(), timeofday()",
		"SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()", "SELECT pg_database_size(current_database())"} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
		t.Fatalf("pg_is_in_recovery() through the split: %v, %v; want true (a replica)", inRecovery, err)
	}
	// A write function of pg_catalog reaches the primary: it works.
	if _, err := conn.Exec(ctx, "CREATE TABLE brt (x int); CREATE INDEX brt_b ON brt USING brin (x)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT brin_summarize_new_values('brt_b'::regclass)"); err != nil {
		t.Fatalf("brin_summarize_new_values through the split: %v", err)
	}
}

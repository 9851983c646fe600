package integration

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/config"
)

// allExecModes are pgx's five ways of running a query.
var allExecModes = []struct {
	name string
	mode pgx.QueryExecMode
}{
	{"cache statement", pgx.QueryExecModeCacheStatement},
	{"cache describe", pgx.QueryExecModeCacheDescribe},
	{"describe exec", pgx.QueryExecModeDescribeExec},
	{"exec", pgx.QueryExecModeExec},
	{"simple protocol", pgx.QueryExecModeSimpleProtocol},
}

// TestBatchesRoutedWhole: a batch is routed by all its statements, with the
// split on: one that writes anywhere runs on the primary, whatever comes
// first, in every pgx exec mode, as raw pipelines and as multi-statement
// Queries; one that only reads still goes to a replica.
func TestBatchesRoutedWhole(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	mustExec(t, setup, "CREATE TABLE bt (id int, v text); CREATE SEQUENCE bs")
	replicated(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, PoolSize: 4, Consistency: config.ConsistencyEventual})
	ctx := testCtx(t)
	primaryPort := strconv.Itoa(cl.Primary.Port)
	id := 0
	for _, em := range allExecModes {
		t.Run(em.name, func(t *testing.T) {
			conn := p.Connect(t, db, em.mode)
			port := func(r pgx.BatchResults) string {
				t.Helper()
				var port int
				if err := r.QueryRow().Scan(&port); err != nil {
					t.Fatal(err)
				}
				return strconv.Itoa(port)
			}
			exec := func(r pgx.BatchResults) {
				t.Helper()
				if _, err := r.Exec(); err != nil {
					t.Fatal(err)
				}
			}
			for round := range 3 {
				id++
				// read, then write
				b := &pgx.Batch{}
				b.Queue("SELECT inet_server_port()")
				b.Queue("INSERT INTO bt VALUES ($1, 'x')", id)
				r := conn.SendBatch(ctx, b)
				if got := port(r); got != primaryPort {
					t.Fatalf("round %d: read-then-write batch read on port %s, want the primary's %s", round, got, primaryPort)
				}
				exec(r)
				r.Close()
				// write, then read it back
				b = &pgx.Batch{}
				b.Queue("INSERT INTO bt VALUES ($1, 'y')", -id)
				b.Queue("SELECT count(*) FROM bt WHERE id = $1", -id)
				r = conn.SendBatch(ctx, b)
				exec(r)
				var n int
				if err := r.QueryRow().Scan(&n); err != nil || n != 1 {
					t.Fatalf("round %d: write-then-read saw %d rows, %v", round, n, err)
				}
				r.Close()
				// mixed: a write function between reads
				b = &pgx.Batch{}
				b.Queue("SELECT 1")
				b.Queue("SELECT nextval('bs')")
				b.Queue("SELECT inet_server_port()")
				r = conn.SendBatch(ctx, b)
				exec(r)
				exec(r)
				if got := port(r); got != primaryPort {
					t.Fatalf("round %d: mixed batch ran on port %s", round, got)
				}
				r.Close()
				// only reads: a replica
				b = &pgx.Batch{}
				b.Queue("SELECT 1")
				b.Queue("SELECT inet_server_port()")
				r = conn.SendBatch(ctx, b)
				exec(r)
				if got := port(r); got == primaryPort {
					t.Fatalf("round %d: a batch of reads ran on the primary", round)
				}
				r.Close()
			}
		})
	}
	t.Run("raw pipeline", func(t *testing.T) {
		conn := p.Connect(t, db, pgx.QueryExecModeExec).PgConn()
		for round := range 3 {
			id++
			batch := &pgconn.Batch{}
			batch.ExecParams("SELECT inet_server_port()", nil, nil, nil, nil)
			batch.ExecParams("INSERT INTO bt VALUES ($1, 'z')", [][]byte{[]byte(strconv.Itoa(id))}, nil, nil, nil)
			res, err := conn.ExecBatch(ctx, batch).ReadAll()
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if got := string(res[0].Rows[0][0]); got != primaryPort {
				t.Fatalf("round %d: pipeline ran on port %s", round, got)
			}
		}
	})
	t.Run("multi-statement query", func(t *testing.T) {
		conn := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
		for round := range 3 {
			if _, err := conn.Exec(ctx, "SELECT 1; SELECT nextval('bs'); SELECT inet_server_port()"); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			rr := conn.PgConn().Exec(context.Background(), "SELECT inet_server_port(); INSERT INTO bt VALUES (0, 'q')")
			res, err := rr.ReadAll()
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if got := string(res[0].Rows[0][0]); got != primaryPort {
				t.Fatalf("round %d: multi-statement query ran on port %s", round, got)
			}
		}
	})
	var n int
	if err := setup.QueryRow(ctx, "SELECT count(*) FROM bt").Scan(&n); err != nil || n == 0 {
		t.Fatalf("rows written: %d, %v", n, err)
	}
}

package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/config"
)

// serverConns counts the server connections pgswitch holds to db on the primary.
func serverConns(t *testing.T, mon *pgx.Conn, db string) int {
	t.Helper()
	var n int
	err := mon.QueryRow(context.Background(),
		// Health checks and catalog reads (application_name "pgswitch…")
		// are not pooled connections.
		"SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' AND application_name NOT LIKE 'pgswitch%'", db).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestTransactionPoolingFiftyClientsFiveServers(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 5, DBs: []string{db}, Primary: true})
	ctx := testCtx(t)
	mon := primaryConn(t, cl.Database)
	setup := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	if _, err := setup.Exec(ctx, "CREATE TABLE counter (client int, n int)"); err != nil {
		t.Fatal(err)
	}

	const clients, rounds = 50, 40
	var wg sync.WaitGroup
	var failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var maxSeen atomic.Int64
	sampled := make(chan struct{})
	go func() { // sample the server side while the load runs
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if n := int64(serverConns(t, mon, db)); n > maxSeen.Load() {
				maxSeen.Store(n)
			}
		}
	}()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Unnamed statements: named ones across transactions are issue #5's.
			cfg, err := pgx.ParseConfig(p.URL(db))
			if err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			defer conn.Close(context.Background())
			for r := 0; r < rounds; r++ {
				err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, "INSERT INTO counter VALUES ($1, $2)", i, r); err != nil {
						return err
					}
					var n int
					return tx.QueryRow(ctx, "SELECT count(*) FROM counter WHERE client = $1", i).Scan(&n)
				})
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}(i)
	}
	wg.Wait()
	close(stop)
	<-sampled
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d failures, first: %v", f, firstErr.Load())
	}
	var n int
	if err := setup.QueryRow(ctx, "SELECT count(*) FROM counter").Scan(&n); err != nil || n != clients*rounds {
		t.Fatalf("got %d rows (err %v), want %d", n, err, clients*rounds)
	}
	if m := maxSeen.Load(); m > 5 || m == 0 {
		t.Fatalf("saw at most %d server connections on the primary, want between 1 and 5", m)
	}
	if n := serverConns(t, mon, db); n > 5 {
		t.Fatalf("%d server connections after the load, want at most 5", n)
	}
}

func TestQueryWaitTimeout(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 1, DBs: []string{db}, Primary: true,
		YAML: "timeouts:\n  query_wait: 1s\n"})
	ctx := testCtx(t)
	holder := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	if _, err := holder.Exec(ctx, "BEGIN"); err != nil { // keeps the only server connection
		t.Fatal(err)
	}
	waiter := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	_, err := waiter.Exec(ctx, "SELECT 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "53300" || pe.Severity != "ERROR" {
		t.Fatalf("got %v, want ERROR 53300", err)
	}
	// The waiter's session survives; once the holder commits it is served.
	if _, err := holder.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	var one int
	if err := waiter.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after the wait timeout: %v", err)
	}
	// Extended protocol: the error comes, then the session goes on.
	if _, err := holder.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	_, err = waiter.Exec(ctx, "SELECT $1::int", pgx.QueryExecModeExec, 5)
	if !errors.As(err, &pe) || pe.Code != "53300" {
		t.Fatalf("extended: got %v, want 53300", err)
	}
	if _, err := holder.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := waiter.QueryRow(ctx, "SELECT $1::int", pgx.QueryExecModeExec, 5).Scan(&v); err != nil || v != 5 {
		t.Fatalf("extended after the wait timeout: got %d, %v", v, err)
	}
}

func TestClientGoneMidTransaction(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			p := startProxy(t, proxyOptions{Mode: mode, PoolSize: 1, DBs: []string{db}, Primary: true})
			ctx := testCtx(t)
			table := "gone_" + string(mode)
			setup := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			if _, err := setup.Exec(ctx, "CREATE TABLE "+table+" (id int)"); err != nil {
				t.Fatal(err)
			}
			if mode == config.PoolModeSession {
				setup.Close(ctx) // frees the only server connection
			}
			c1 := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			if _, err := c1.Exec(ctx, "BEGIN; INSERT INTO "+table+" VALUES (1); SET search_path = nowhere"); err != nil {
				t.Fatal(err)
			}
			c1.PgConn().Conn().Close() // vanish without Terminate
			c2 := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			var n int
			var sp string
			var inTx bool
			eventually(t, 30*time.Second, "a clean server connection", func() error {
				err := c2.QueryRow(ctx, "SELECT (SELECT count(*) FROM public."+table+"), current_setting('search_path'), now() <> statement_timestamp()").Scan(&n, &sp, &inTx)
				return err
			})
			if n != 0 {
				t.Fatalf("uncommitted row visible: got %d rows, want 0", n)
			}
			if inTx {
				t.Fatal("next client landed inside the abandoned transaction")
			}
			if sp == "nowhere" {
				t.Fatal("abandoned session's SET leaked to the next client")
			}
		})
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			p := startProxy(t, proxyOptions{Mode: mode, PoolSize: 4, DBs: []string{db}, Primary: true})
			ctx := testCtx(t)
			victim := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			bystander := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)

			bystanderDone := make(chan error, 1)
			go func() {
				_, err := bystander.Exec(ctx, "SELECT pg_sleep(3)")
				bystanderDone <- err
			}()
			victimDone := make(chan error, 1)
			start := time.Now()
			go func() {
				_, err := victim.Exec(ctx, "SELECT pg_sleep(30)")
				victimDone <- err
			}()
			// Cancel once the sleep is surely running on its server.
			mon := primaryConn(t, cl.Database)
			eventually(t, 30*time.Second, "pg_sleep(30) running", func() error {
				var n int
				if err := mon.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'").Scan(&n); err != nil {
					return err
				}
				if n != 1 {
					return fmt.Errorf("%d sessions running it", n)
				}
				return nil
			})
			if err := victim.PgConn().CancelRequest(ctx); err != nil {
				t.Fatal(err)
			}
			err := <-victimDone
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "57014" {
				t.Fatalf("got %v, want query_canceled 57014", err)
			}
			if d := time.Since(start); d > 25*time.Second {
				t.Fatalf("cancel took %v", d)
			}
			if err := <-bystanderDone; err != nil {
				t.Fatalf("the other client's query was disturbed: %v", err)
			}
			// The victim's connection still works.
			var one int
			if err := victim.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("after cancel: %v", err)
			}
		})
	}
}

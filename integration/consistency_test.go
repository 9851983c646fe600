package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgswitch/pgswitch/config"
)

// readYourWrites runs clients that each, rounds times, INSERT a row and
// at once SELECT it back, through two connections of one pgxpool (own is
// false) or through one (own), with the split on. While it runs, the
// replicas' replay is paused now and then when pauses is set. It returns
// how many reads missed their row.
func readYourWrites(t *testing.T, consistency config.Consistency, own, pauses bool, clients, rounds int) (misses int64, p *proxy) {
	t.Helper()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	mustExec(t, setup, "CREATE TABLE ryw (client int, n int, PRIMARY KEY (client, n))")
	replicated(t)
	p = startProxy(t, proxyOptions{DBs: []string{db}, PoolSize: 10, Consistency: consistency})
	ctx := testCtx(t)
	cfg, err := pgxpool.ParseConfig(p.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = int32(2 * clients)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	stop := make(chan struct{})
	var pausers sync.WaitGroup
	if pauses {
		for _, r := range cl.Replicas {
			rc := directConn(t, r, db)
			pausers.Add(1)
			go func() {
				defer pausers.Done()
				for {
					select {
					case <-stop:
						rc.Exec(context.Background(), "SELECT pg_wal_replay_resume()")
						return
					case <-time.After(150 * time.Millisecond):
					}
					rc.Exec(context.Background(), "SELECT pg_wal_replay_pause()")
					select {
					case <-stop:
					case <-time.After(100 * time.Millisecond):
					}
					rc.Exec(context.Background(), "SELECT pg_wal_replay_resume()")
				}
			}()
		}
	}
	var missed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var writer, reader *pgxpool.Conn
			var err error
			if writer, err = pool.Acquire(ctx); err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			defer writer.Release()
			reader = writer
			if !own {
				if reader, err = pool.Acquire(ctx); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				defer reader.Release()
			}
			for n := range rounds {
				if _, err := writer.Exec(ctx, "INSERT INTO ryw VALUES ($1, $2)", c, n); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("client %d insert %d: %w", c, n, err))
					return
				}
				var found int
				if err := reader.QueryRow(ctx, "SELECT count(*) FROM ryw WHERE client = $1 AND n = $2", c, n).Scan(&found); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("client %d read %d: %w", c, n, err))
					return
				}
				if found != 1 {
					missed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	pausers.Wait()
	if err := firstErr.Load(); err != nil {
		t.Fatal(err)
	}
	return missed.Load(), p
}

// TestReadYourWrites: with causal consistency (the default) a read never
// misses a write that completed before it, made through another connection
// of the pool, whether the replicas keep up or are paused now and then;
// with session, the same through one connection; with eventual, reads do
// miss (so the test can fail).
func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	const clients, rounds = 20, 200
	for _, tc := range []struct {
		name        string
		consistency config.Consistency
		own, pauses bool
	}{
		{"causal", config.ConsistencyCausal, false, false},
		{"causal, replicas paused now and then", config.ConsistencyCausal, false, true},
		{"session, one connection", config.ConsistencySession, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			misses, p := readYourWrites(t, tc.consistency, tc.own, tc.pauses, clients, rounds)
			if misses != 0 {
				t.Fatalf("%d of %d reads missed the write before them", misses, clients*rounds)
			}
			var replicaReads uint64
			for _, r := range cl.Replicas {
				replicaReads += p.R.Counters(addrOf(r.Port)).Reads.Load()
			}
			var waited, primary, checked, behind uint64
			for name := range p.Cfg.Databases {
				st := p.R.Stats(name)
				waited += st.CausalWaits.Load()
				primary += st.CausalPrimary.Load()
				checked += st.CausalChecked.Load()
				behind += st.CausalBehind.Load()
			}
			t.Logf("%d of %d reads on replicas; %d checked there, %d found one behind, %d waited for one, %d went to the primary",
				replicaReads, clients*rounds, checked, behind, waited, primary)
			if tc.pauses && behind == 0 {
				// Reads during a pause find the replica behind: the path that
				// drops a read's answer and runs it again was not taken.
				t.Fatal("no check found a paused replica behind")
			}
		})
	}
	t.Run("eventual misses", func(t *testing.T) {
		misses, _ := readYourWrites(t, config.ConsistencyEventual, false, true, 10, 50)
		if misses == 0 {
			t.Fatal("no read missed its write with eventual consistency and paused replicas: the test cannot tell")
		}
		t.Logf("%d of %d reads missed", misses, 10*50)
	})
}

// TestDDLThenUse: a table made through pgswitch is there for the very next
// prepared statement, wherever it runs.
func TestDDLThenUse(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, PoolSize: 4})
	ctx := testCtx(t)
	for _, em := range allExecModes {
		conn := p.Connect(t, db, em.mode)
		other := p.Connect(t, db, em.mode)
		for i := range 5 {
			table := fmt.Sprintf("vt_%s_%d", strings.ReplaceAll(em.name, " ", "_"), i)
			if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (x int); INSERT INTO "+table+" VALUES (7)"); err != nil {
				t.Fatal(err)
			}
			var x int
			if err := other.QueryRow(ctx, "SELECT x FROM "+table).Scan(&x); err != nil || x != 7 {
				t.Fatalf("%s: right after CREATE TABLE %s: got %d, %v", em.name, table, x, err)
			}
			if err := conn.QueryRow(ctx, "SELECT x FROM "+table+" WHERE x = $1", 7).Scan(&x); err != nil {
				t.Fatalf("%s: prepared SELECT on %s: %v", em.name, table, err)
			}
		}
	}
}

// Package failover runs health checks, lag exclusion and failover through
// pgswitch against a cluster of its own: these tests stop, pause and promote
// servers, so they share no cluster with other tests.
package failover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/integration/testproxy"
	"github.com/pgswitch/pgswitch/internal/pgcluster"
)

var cl *pgcluster.Cluster

func TestMain(m *testing.M) { os.Exit(pgcluster.Main(m, pgcluster.Options{}, &cl)) }

const (
	inter = 300 * time.Millisecond
	fall  = 3
	rise  = 2
)

var healthYAML = fmt.Sprintf(`health:
  inter: %dms
  fall: %d
  rise: %d
  timeout: 1s
routing:
  max_replica_lag_bytes: 1048576
`, inter.Milliseconds(), fall, rise)

func addr(s *pgcluster.Server) string { return fmt.Sprintf("%s:%d", s.Host, s.Port) }

// ports runs n reads through conn and counts the server ports that served them.
func ports(t *testing.T, conn *pgx.Conn, n int) map[int]int {
	t.Helper()
	seen := map[int]int{}
	for i := 0; i < n; i++ {
		var port int
		if err := conn.QueryRow(context.Background(), "SELECT inet_server_port()").Scan(&port); err != nil {
			t.Fatal(err)
		}
		seen[port]++
	}
	return seen
}

func direct(t *testing.T, s *pgcluster.Server) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, cl.DSN(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestHealthAndFailover runs in order: each step leaves the cluster as the
// next one expects, the failover last.
func TestHealthAndFailover(t *testing.T) {
	p := testproxy.Start(t, cl, testproxy.Options{DBs: []string{cl.Database}, YAML: healthYAML})
	ctx := context.Background()
	r1, r2 := cl.Replicas[0], cl.Replicas[1]
	setup := direct(t, cl.Primary)
	// pad is stored uncompressed so that the lag test's writes make WAL.
	if _, err := setup.Exec(ctx, "CREATE TABLE writes (id serial PRIMARY KEY, at timestamptz DEFAULT now(), pad text); ALTER TABLE writes ALTER pad SET STORAGE EXTERNAL"); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReplicated(ctx); err != nil {
		t.Fatal(err)
	}
	testproxy.Eventually(t, 20*time.Second, "roles from the servers", func() error {
		snap := p.R.Topology()
		for _, s := range cl.Servers() {
			want := config.RoleReplica
			if s == cl.Primary {
				want = config.RolePrimary
			}
			if st := snap.Get(addr(s)); st.Role != want || !st.Up {
				return fmt.Errorf("%s: role %q up %v, want %q up", s.Name, st.Role, st.Up, want)
			}
		}
		return nil
	})
	reader := p.Connect(t, cl.Database, pgx.QueryExecModeExec)

	t.Run("replica down and up", func(t *testing.T) {
		if err := cl.StopServer(r2, "immediate"); err != nil {
			t.Fatal(err)
		}
		testproxy.Eventually(t, 20*time.Second, "replica2 marked down", func() error {
			if p.R.Topology().Get(addr(r2)).Up {
				return fmt.Errorf("still up")
			}
			return nil
		})
		if seen := ports(t, reader, 10); seen[r2.Port] != 0 || seen[r1.Port] != 10 {
			t.Fatalf("reads while replica2 is down: %v, want all on replica1 (%d)", seen, r1.Port)
		}
		if err := cl.StartServer(r2); err != nil {
			t.Fatal(err)
		}
		testproxy.Eventually(t, 30*time.Second, "replica2 marked up", func() error {
			if !p.R.Topology().Get(addr(r2)).Up {
				return fmt.Errorf("still down")
			}
			return nil
		})
		testproxy.Eventually(t, 20*time.Second, "reads reach replica2 again", func() error {
			if seen := ports(t, reader, 10); seen[r2.Port] == 0 {
				return fmt.Errorf("reads: %v", seen)
			}
			return nil
		})
	})

	t.Run("lag exclusion", func(t *testing.T) {
		rc := direct(t, r1)
		if _, err := rc.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
			t.Fatal(err)
		}
		// Over 4 MiB of WAL: well past the 1 MiB limit.
		if _, err := setup.Exec(ctx, "INSERT INTO writes (pad) SELECT repeat(md5(g::text), 64) FROM generate_series(1, 2000) g"); err != nil {
			t.Fatal(err)
		}
		testproxy.Eventually(t, 20*time.Second, "replica1 excluded for lag", func() error {
			if st := p.R.Topology().Get(addr(r1)); !st.Lagging {
				return fmt.Errorf("lag %d bytes, not excluded", st.LagBytes)
			}
			return nil
		})
		if seen := ports(t, reader, 10); seen[r1.Port] != 0 {
			t.Fatalf("reads went to the lagging replica: %v", seen)
		}
		if _, err := rc.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
			t.Fatal(err)
		}
		testproxy.Eventually(t, 30*time.Second, "replica1 readmitted", func() error {
			if st := p.R.Topology().Get(addr(r1)); st.Lagging {
				return fmt.Errorf("still lagging by %d bytes", st.LagBytes)
			}
			return nil
		})
		testproxy.Eventually(t, 20*time.Second, "reads reach replica1 again", func() error {
			if seen := ports(t, reader, 10); seen[r1.Port] == 0 {
				return fmt.Errorf("reads: %v", seen)
			}
			return nil
		})
	})

	t.Run("failover", func(t *testing.T) {
		failoverAndSplitBrain(t, p)
	})
}

func failoverAndSplitBrain(t *testing.T, p *testproxy.Proxy) {
	ctx := context.Background()
	old, promoted := cl.Primary, cl.Replicas[0]
	var before int
	if err := direct(t, old).QueryRow(ctx, "SELECT count(*) FROM writes").Scan(&before); err != nil {
		t.Fatal(err)
	}

	// Eight clients read without pause through the whole failover.
	var reads, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		conn := p.Connect(t, cl.Database, pgx.QueryExecModeExec)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var n int
				if err := conn.QueryRow(ctx, "SELECT count(*) FROM writes WHERE id < 10").Scan(&n); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return
				}
				reads.Add(1)
			}
		}()
	}
	writer := p.Connect(t, cl.Database, pgx.QueryExecModeExec)

	stopped := time.Now()
	if err := cl.StopServer(old, "immediate"); err != nil {
		t.Fatal(err)
	}
	testproxy.Eventually(t, 20*time.Second, "primary marked down", func() error {
		if p.R.Topology().Get(addr(old)).Up {
			return fmt.Errorf("still up")
		}
		return nil
	})
	detect := time.Since(stopped)
	// With no primary, writes wait primary_wait and then fail naming why;
	// reads still work.
	short := testproxy.Start(t, cl, testproxy.Options{DBs: []string{cl.Database}, YAML: healthYAML + "timeouts:\n  primary_wait: 1s\n"})
	sc := short.Connect(t, cl.Database, pgx.QueryExecModeExec)
	_, err := sc.Exec(ctx, "INSERT INTO writes DEFAULT VALUES")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P03" || !strings.Contains(pe.Message, "primary_wait") || !strings.Contains(pe.Message, addr(old)) {
		t.Fatalf("write with the primary down: %v, want 57P03 naming primary_wait and %s", err, addr(old))
	}
	t.Logf("write with the primary down: %s", pe.Message)
	var n int
	if err := sc.QueryRow(ctx, "SELECT count(*) FROM writes").Scan(&n); err != nil {
		t.Fatalf("read with the primary down: %v", err)
	}
	if err := cl.Promote(promoted); err != nil {
		t.Fatal(err)
	}
	promotedAt := time.Now()
	var port int
	if err := writer.QueryRow(ctx, "INSERT INTO writes DEFAULT VALUES RETURNING inet_server_port()").Scan(&port); err != nil {
		t.Fatalf("first write after the promotion: %v", err)
	}
	writeDelay := time.Since(promotedAt)
	if port != promoted.Port {
		t.Fatalf("write ran on port %d, want the promoted replica %d", port, promoted.Port)
	}
	bound := time.Duration(fall+rise)*inter + 2*time.Second
	t.Logf("FIGURE: primary stopped → marked down %v; promotion → first write on the promoted replica %v (bound %v); reads meanwhile: %d, failed: %d",
		detect.Round(10*time.Millisecond), writeDelay.Round(10*time.Millisecond), bound, reads.Load(), failed.Load())
	// Generous: the bound plus slack for a loaded 2-core machine.
	if writeDelay > bound+5*time.Second {
		t.Errorf("writes resumed %v after the promotion, want within %v", writeDelay, bound)
	}
	time.Sleep(time.Second) // keep reading a little on the new topology
	close(stop)
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d reads failed during the failover, first: %v", f, firstErr.Load())
	}
	if reads.Load() == 0 {
		t.Fatal("no reads ran during the failover")
	}

	// Split brain: the old primary comes back still a primary, on the older
	// timeline. No write may reach it.
	if err := cl.StartServer(old); err != nil {
		t.Fatal(err)
	}
	testproxy.Eventually(t, 20*time.Second, "old primary seen again", func() error {
		st := p.R.Topology().Get(addr(old))
		if st.Role != config.RolePrimary || !st.Up || !st.Excluded || !strings.Contains(st.Reason, "split brain") {
			return fmt.Errorf("old primary: role %q up %v excluded %v reason %q", st.Role, st.Up, st.Excluded, st.Reason)
		}
		t.Logf("old primary: %s", st.Reason)
		return nil
	})
	if st := p.R.Topology().Get(addr(promoted)); st.Role != config.RolePrimary || !st.Usable() {
		t.Fatalf("promoted replica during split brain: role %q up %v excluded %v (%s)", st.Role, st.Up, st.Excluded, st.Reason)
	}
	for i := 0; i < 20; i++ {
		if err := writer.QueryRow(ctx, "INSERT INTO writes DEFAULT VALUES RETURNING inet_server_port()").Scan(&port); err != nil {
			t.Fatalf("write during split brain: %v", err)
		}
		if port != promoted.Port {
			t.Fatalf("a write went to port %d during split brain, want only %d", port, promoted.Port)
		}
	}
	var after int
	if err := direct(t, old).QueryRow(ctx, "SELECT count(*) FROM writes").Scan(&after); err != nil {
		t.Fatal(err)
	}
	// Fewer is possible: the test cluster runs without fsync, so an
	// immediate stop may lose the last commits. More would be a write that
	// reached the old primary.
	if after > before {
		t.Fatalf("the old primary got %d rows after it was stopped", after-before)
	}
}

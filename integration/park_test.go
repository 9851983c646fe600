package integration

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestIdleClientsPark: clients idle a couple of seconds give their
// goroutines up (they park) and carry on, each with its own settings and
// prepared statements, when they write again — many at once over two
// server connections; parked clients still get their FATAL at shutdown.
func TestIdleClientsPark(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, PoolSize: 2})
	ctx := testCtx(t)
	const clients = 30
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		c := p.Connect(t, db, pgx.QueryExecModeCacheStatement)
		mustExec(t, c, fmt.Sprintf("SET application_name = 'parked_%d'", i))
		if _, err := c.Prepare(ctx, "mine", fmt.Sprintf("SELECT %d + $1::int", i)); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	raw := make([]rawClient, 4)
	for i := range raw {
		raw[i] = dialRaw(t, p.URL(db))
	}
	round := func(r int) {
		eventually(t, 20*time.Second, "idle clients parked", func() error {
			if n := p.R.Parked(); n < clients+len(raw) {
				return fmt.Errorf("%d of %d idle clients parked", n, clients+len(raw))
			}
			return nil
		})
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var name string
				var n int
				if err := c.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&name); err != nil || name != fmt.Sprintf("parked_%d", i) {
					errs <- fmt.Errorf("round %d, client %d: application_name %q, %v", r, i, name, err)
					return
				}
				if err := c.QueryRow(ctx, "mine", 1000).Scan(&n); err != nil || n != i+1000 {
					errs <- fmt.Errorf("round %d, client %d: its prepared statement gave %d, %v", r, i, n, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	round(1)
	round(2) // parked, woken and parked again
	eventually(t, 20*time.Second, "idle clients parked again", func() error {
		if n := p.R.Parked(); n < clients+len(raw) {
			return fmt.Errorf("%d parked", n)
		}
		return nil
	})
	p.R.Shutdown(time.Second)
	for i, c := range raw {
		if code, _ := c.fatal(); code != "57P01" {
			t.Errorf("parked client %d at shutdown: FATAL %q, want 57P01", i, code)
		}
	}
}

package integration

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestClientStatementLimits: one client cannot make pgswitch keep
// unbounded prepared statements. Past limits.max_client_statements or
// max_client_statement_bytes a Parse or PREPARE fails with 53400 and a
// message naming the limit; the client's connection and its other
// statements stay usable, and a statement it closes makes room. Several
// clients at once over one server connection; a client that prepares
// nothing is not affected.
func TestClientStatementLimits(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, PoolSize: 1,
		YAML: "limits:\n  max_client_statements: 40\n  max_client_statement_bytes: 1048576\n"})
	ctx := testCtx(t)
	big := strings.Repeat("x", 40000)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	run := func(name string, f func(c *pgx.Conn) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)); err != nil {
				errs <- fmt.Errorf("%s: %v", name, err)
			}
		}()
	}
	// prepareUntil prepares statements until one fails, and checks that the
	// failure is the limit's.
	prepareUntil := func(c *pgx.Conn, text func(i int) string, limit string) (int, error) {
		for i := 0; i < 1000; i++ {
			_, err := c.Prepare(ctx, fmt.Sprintf("s%d", i), text(i))
			if err == nil {
				continue
			}
			if codeOf(err) != "53400" || !strings.Contains(err.Error(), limit) {
				return i, fmt.Errorf("statement %d: %v, want 53400 naming %s", i, err, limit)
			}
			return i, nil
		}
		return 1000, fmt.Errorf("1000 statements prepared past %s", limit)
	}
	run("bytes", func(c *pgx.Conn) error {
		n, err := prepareUntil(c, func(i int) string { return fmt.Sprintf("SELECT '%s'::text AS c%d", big, i) }, "limits.max_client_statement_bytes")
		if err != nil {
			return err
		}
		if n < 20 || n > 26 { // 1 MiB of 40 KB statements
			return fmt.Errorf("the bytes limit stopped the %d-th statement", n)
		}
		var s string
		if err := c.QueryRow(ctx, "s0").Scan(&s); err != nil || s != big {
			return fmt.Errorf("an earlier statement after the limit: %v", err)
		}
		if err := c.Deallocate(ctx, "s1"); err != nil {
			return err
		}
		if _, err := c.Prepare(ctx, "again", "SELECT 'room' || $1::text"); err != nil {
			return fmt.Errorf("after a Close made room: %v", err)
		}
		return nil
	})
	run("count", func(c *pgx.Conn) error {
		n, err := prepareUntil(c, func(i int) string { return fmt.Sprintf("SELECT %d", i) }, "limits.max_client_statements")
		if err != nil {
			return err
		}
		if n != 40 {
			return fmt.Errorf("the count limit stopped statement %d, want 40", n)
		}
		// SQL PREPARE counts too, and a refused one leaves the session as it was.
		if _, err := c.Exec(ctx, "PREPARE sqlp AS SELECT 1"); codeOf(err) != "53400" {
			return fmt.Errorf("PREPARE past the limit: %v", err)
		}
		if _, err := c.Exec(ctx, "EXECUTE sqlp"); codeOf(err) != "26000" {
			return fmt.Errorf("EXECUTE of the refused PREPARE: %v, want 26000", err)
		}
		_, err = c.Exec(ctx, "DEALLOCATE s0")
		if err != nil {
			return err
		}
		if _, err := c.Exec(ctx, "PREPARE sqlp AS SELECT 1"); err != nil {
			return fmt.Errorf("PREPARE after DEALLOCATE made room: %v", err)
		}
		return nil
	})
	run("bystander", func(c *pgx.Conn) error {
		for i := range 50 {
			var n int
			if err := c.QueryRow(ctx, "SELECT $1::int", i).Scan(&n); err != nil || n != i {
				return fmt.Errorf("query %d: %d, %v", i, n, err)
			}
		}
		return nil
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestClientStatementMemoryBounded: with the default limits, a client that
// prepares 20 KB statements without end (the 5,000 that once cost 119 MB)
// makes pgswitch hold a bounded amount: about max_client_statement_bytes.
// Not parallel: it reads this process's heap.
func TestClientStatementMemoryBounded(t *testing.T) {
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, PoolSize: 1})
	ctx := testCtx(t)
	pc, err := pgconn.Connect(ctx, p.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	text := strings.Repeat("y", 20000)
	refused := 0
	for i := range 5000 {
		_, err := pc.Prepare(ctx, fmt.Sprintf("m%d", i), fmt.Sprintf("SELECT '%s' AS c%d", text, i), nil)
		if err != nil {
			if codeOf(err) != "53400" {
				t.Fatalf("statement %d: %v", i, err)
			}
			refused++
		}
	}
	grew := int64(heap()) - int64(before)
	t.Logf("%d of 5000 statements refused; the heap grew %d MiB", refused, grew>>20)
	if refused < 4000 {
		t.Fatalf("only %d of 5000 20 KB statements refused with the default 16 MiB limit", refused)
	}
	if grew > 48<<20 { // 5000 kept would be ≥ 100 MiB
		t.Fatalf("the heap grew %d MiB for one client's statements", grew>>20)
	}
}

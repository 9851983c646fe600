package router

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Session tests against scripted fake servers: the session logic alone,
// without a cluster. What reached the server is checked, not only what
// came back.

// noLeaks fails the test if goroutines it started outlive it.
func noLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func connect(t *testing.T, addr string, mode pgx.QueryExecMode, cancelOnCtx bool) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig("postgres://u@" + addr + "/db?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	if cancelOnCtx {
		cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
			return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func scan(t *testing.T, c *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := c.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// since returns what the server saw after the first n messages, one per
// line, without the connections' pids.
func since(seen []string, n int) string {
	var b strings.Builder
	for _, s := range seen[min(n, len(seen)):] {
		_, msg, _ := strings.Cut(s, ": ")
		b.WriteString(msg + "\n")
	}
	return b.String()
}

func TestSettingsReplayedOnTheServer(t *testing.T) {
	noLeaks(t)
	pg := newFakePG(t, false)
	_, addr := fakeRouter(t, 1, pg)
	a := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
	b := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
	if _, err := a.Exec(context.Background(), "SET work_mem = '8MB'"); err != nil {
		t.Fatal(err)
	}
	n := len(pg.seen())
	if got := scan(t, b, "SELECT current_setting('work_mem')"); got != "default" {
		t.Fatalf("the next client sees work_mem %q", got)
	}
	if got := since(pg.seen(), n); !strings.Contains(got, "Q RESET \"work_mem\";\nQ SELECT current_setting('work_mem')\n") {
		t.Fatalf("the server was not reset before the next client's query:\n%s", got)
	}
	n = len(pg.seen())
	if got := scan(t, a, "SELECT current_setting('work_mem')"); got != "8MB" {
		t.Fatalf("the client sees work_mem %q", got)
	}
	if got := since(pg.seen(), n); !strings.Contains(got, "Q SET work_mem = '8MB';\nQ SELECT current_setting('work_mem')\n") {
		t.Fatalf("the client's SET was not replayed:\n%s", got)
	}
}

func TestRefusedReadRetriedOnPrimary(t *testing.T) {
	noLeaks(t)
	primary, replica := newFakePG(t, false), newFakePG(t, true)
	_, addr := fakeRouter(t, 2, primary, replica)
	c := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
	// The hint sends it to the replica, which refuses it as read-only
	// before any answer reached the client: it runs on the primary.
	tag, err := c.Exec(context.Background(), "/* pgswitch:replica */ INSERT INTO t VALUES (1)")
	if err != nil || tag.String() != "INSERT 0 1" {
		t.Fatalf("got %q, %v; want INSERT 0 1 from the primary", tag, err)
	}
	has := func(pg *fakePG) bool {
		return slices.ContainsFunc(pg.seen(), func(s string) bool { return strings.Contains(s, "INSERT INTO t") })
	}
	if !has(replica) || !has(primary) {
		t.Fatalf("replica saw it: %v, primary saw it: %v", has(replica), has(primary))
	}
}

// TestRefusedReadRemembered: once a replica refused a statement as
// read-only, its shape goes to the primary, for the client that ran it
// (whose own memo of the shape must not send it back) and for others. Two
// clients over a pool of one connection per server.
func TestRefusedReadRemembered(t *testing.T) {
	noLeaks(t)
	primary, replica := newFakePG(t, false), newFakePG(t, true)
	_, addr := fakeRouter(t, 1, primary, replica)
	a := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
	b := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
	for i, c := range []*pgx.Conn{a, a, b, a} {
		tag, err := c.Exec(context.Background(), fmt.Sprintf("/* pgswitch:replica */ INSERT INTO t VALUES (%d)", i))
		if err != nil || tag.String() != "INSERT 0 1" {
			t.Fatalf("insert %d: got %q, %v; want INSERT 0 1", i, tag, err)
		}
	}
	count := func(pg *fakePG) int {
		n := 0
		for _, s := range pg.seen() {
			if strings.Contains(s, "INSERT INTO t") {
				n++
			}
		}
		return n
	}
	if r, p := count(replica), count(primary); r != 1 || p != 4 {
		t.Fatalf("the replica saw %d inserts (want 1: the refused one), the primary %d (want 4)", r, p)
	}
}

func TestKnownParseNeedsNoServerParse(t *testing.T) {
	noLeaks(t)
	pg := newFakePG(t, false)
	_, addr := fakeRouter(t, 1, pg)
	for range 3 {
		c := connect(t, addr, pgx.QueryExecModeCacheStatement, false)
		for range 2 {
			if got := scan(t, c, "SELECT 7"); got != "7" {
				t.Fatalf("got %q", got)
			}
		}
	}
	parses := 0
	for _, s := range pg.seen() {
		if strings.Contains(s, ": P pgswitch_") && strings.HasSuffix(s, " SELECT 7") {
			parses++
		}
	}
	if parses != 1 {
		t.Fatalf("the server parsed SELECT 7 %d times for 3 clients on one connection, want once:\n%s", parses, strings.Join(pg.seen(), "\n"))
	}
}

func TestCancelWhileQueued(t *testing.T) {
	noLeaks(t)
	pg := newFakePG(t, false)
	_, addr := fakeRouter(t, 1, pg)
	holder := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
	tx, err := holder.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waiter := connect(t, addr, pgx.QueryExecModeSimpleProtocol, true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	start := time.Now()
	_, err = waiter.Exec(ctx, "SELECT 1")
	cancel()
	var pe *pgconn.PgError
	if !errorsAs(err, &pe) || pe.Code != "57014" {
		t.Fatalf("got %v, want 57014", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the wait ended after %v (query_wait 20s)", d)
	}
	tx.Rollback(context.Background())
	if got := scan(t, waiter, "SELECT 2"); got != "2" {
		t.Fatalf("after the cancelled wait: %q", got)
	}
}

func TestServerFatalReachesClientOnce(t *testing.T) {
	noLeaks(t)
	pg := newFakePG(t, false)
	_, addr := fakeRouter(t, 1, pg)
	c := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
	hj, err := c.PgConn().Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hj.Conn.Close()
	hj.Frontend.Send(&pgproto3.Query{String: "SELECT fatal"})
	if err := hj.Frontend.Flush(); err != nil {
		t.Fatal(err)
	}
	hj.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var errs []string
	for {
		m, err := hj.Frontend.Receive()
		if err != nil {
			break
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			errs = append(errs, e.Severity+" "+e.Code)
		}
	}
	if len(errs) != 1 || errs[0] != "FATAL 57P01" {
		t.Fatalf("the client got %q, want the server's FATAL once", errs)
	}
}

func errorsAs(err error, target **pgconn.PgError) bool {
	pe, ok := err.(*pgconn.PgError)
	if ok {
		*target = pe
	}
	return ok
}

// lockedBuffer is a log sink several goroutines write.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestShutdownWarningNamesItsSetting: a shutdown that gives up on a
// transaction in flight says which setting bounded the wait.
func TestShutdownWarningNamesItsSetting(t *testing.T) {
	pg := newFakePG(t, false)
	var log lockedBuffer
	r, addr := fakeRouterLogging(t, &log, 1, pg)
	c := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
	if _, err := c.Exec(context.Background(), "BEGIN"); err != nil {
		t.Fatal(err)
	}
	r.Shutdown(100 * time.Millisecond)
	out := log.String()
	if !strings.Contains(out, "shutting down with transactions in flight") || !strings.Contains(out, "timeouts.shutdown") ||
		strings.Contains(out, "timeouts.pause") {
		t.Fatalf("shutdown's warning does not name timeouts.shutdown:\n%s", out)
	}
}

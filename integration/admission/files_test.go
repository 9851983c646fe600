package admission

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const acceptFailed = `msg="accepting clients failed; retrying"`

var logTimeRe = regexp.MustCompile(`^time=(\S+) `)

// A flood of plain TCP connections beyond the limit on open files: accept
// fails with EMFILE, and pgswitch must neither exit (it did) nor log every
// retry. Clients logged in keep working, and once the flood is gone a new
// client is served.
func TestFileDescriptorExhaustion(t *testing.T) {
	ctx := testCtx(t)
	// max_startup_conn above the limit, so that the flood reaches it.
	c := startChild(t, childConfig("  max_startup_conn: 1000\n", "  client_login: 2m\n"), 48, 96)

	limit, open := c.openFiles(t)
	if limit != 96 {
		t.Fatalf("pgswitch runs with a soft limit of %d open files, want the hard limit 96", limit)
	}
	if len(c.logs.matching("the limit on open files is too low")) != 1 {
		t.Fatalf("no warning that max_client_conn (10000) cannot fit in 96 open files")
	}

	before, err := pgx.Connect(ctx, c.url(cl.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close(ctx)
	if _, err := before.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	closeFlood, err := flood(t, c.addr, 3*limit-open)
	if err != nil {
		c.failed(t, err)
	}
	// Out of descriptors for more than a second: at least two lines.
	waitFor(t, time.Minute, "accept failures logged twice", func() error {
		if n := len(c.logs.matching(acceptFailed)); n < 2 {
			return fmt.Errorf("%d lines", n)
		}
		return nil
	})
	c.running(t)
	if _, err := before.Exec(ctx, "SELECT 2"); err != nil {
		t.Fatalf("a client logged in before the flood, during it: %v", err)
	}
	closeFlood()

	after, err := pgx.Connect(ctx, c.url(cl.Database))
	if err != nil {
		t.Fatalf("a new client after the flood: %v", err)
	}
	defer after.Close(ctx)
	if _, err := after.Exec(ctx, "SELECT 3"); err != nil {
		t.Fatalf("a new client after the flood: %v", err)
	}
	c.running(t)

	// At most one line a second, by pgswitch's own clock.
	lines := c.logs.matching(acceptFailed)
	if !strings.Contains(lines[0], "too many open files") {
		t.Fatalf("the first accept failure does not say why: %s", lines[0])
	}
	var first, last time.Time
	for i, line := range lines {
		m := logTimeRe.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("no time in %q", line)
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = at
		}
		last = at
	}
	if most := int(last.Sub(first)/time.Second) + 1; len(lines) > most {
		t.Fatalf("%d accept failures logged within %v, want at most %d (one a second):\n%s",
			len(lines), last.Sub(first), most, strings.Join(lines, "\n"))
	}
}

// A flood of connections that never send their startup packet takes at most
// pool.max_startup_conn descriptors: clients logged in can still open
// server connections, and pgswitch never runs out of descriptors.
func TestHalfOpenFloodLeavesDescriptors(t *testing.T) {
	ctx := testCtx(t)
	const maxStartup = 8
	c := startChild(t, childConfig(fmt.Sprintf("  max_startup_conn: %d\n", maxStartup), "  client_login: 2m\n"), 64, 64)

	var clients [2]*pgx.Conn
	for i := range clients {
		conn, err := pgx.Connect(ctx, c.url(cl.Database))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		clients[i] = conn
	}
	limit, base := c.openFiles(t)
	closeFlood, err := flood(t, c.addr, 3*limit)
	if err != nil {
		c.failed(t, err)
	}
	waitFor(t, time.Minute, "the flood accepted up to max_startup_conn", func() error {
		// (2 to spare: a descriptor counted in base may be gone by now)
		if _, open := c.openFiles(t); open < min(base+maxStartup-2, limit-2) {
			return fmt.Errorf("%d files open, %d before the flood", open, base)
		}
		return nil
	})

	// Two transactions at once need two server connections: at least one
	// is opened now, during the flood.
	tx, err := clients[0].Begin(ctx)
	if err != nil {
		t.Fatalf("BEGIN during the flood: %v", err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("a transaction during the flood: %v", err)
	}
	tx2, err := clients[1].Begin(ctx)
	if err != nil {
		t.Fatalf("BEGIN of a second transaction during the flood: %v", err)
	}
	if _, err := tx2.Exec(ctx, "SELECT 2"); err != nil {
		t.Fatalf("a second transaction during the flood (a new server connection): %v", err)
	}
	tx.Commit(ctx)
	tx2.Commit(ctx)
	_, open := c.openFiles(t)
	t.Logf("%d files open of %d during the flood, %d before", open, limit, base)
	if open >= limit {
		t.Fatalf("%d files open of %d during the flood", open, limit)
	}
	if lines := c.logs.matching(acceptFailed); len(lines) > 0 {
		t.Fatalf("pgswitch ran out of descriptors during a half-open flood:\n%s", strings.Join(lines, "\n"))
	}
	c.running(t)
	closeFlood()

	after, err := pgx.Connect(ctx, c.url(cl.Database))
	if err != nil {
		t.Fatalf("a new client after the flood: %v", err)
	}
	defer after.Close(ctx)
	if _, err := after.Exec(ctx, "SELECT 3"); err != nil {
		t.Fatalf("a new client after the flood: %v", err)
	}
}

package router

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestDeferredGuard: a replica's read is guarded (its answer held back
// until it is known to pass) while the session goes on reading its client.
// Six clients over one server connection per server mix reads the replica
// answers with writes it refuses as read-only, after random delays, so
// that refusals arrive both before the session waits for its client and
// while it waits (the pump then wakes it). Each client must get exactly
// its own answers, and each refused write must run once on the primary.
// The parker's scan, which wakes waiting sessions too, is off: a refusal
// the session is not woken for hangs its client.
func TestDeferredGuard(t *testing.T) {
	noLeaks(t)
	noParking(t)
	primary, replica := newFakePG(t, false), newFakePG(t, true)
	// Eventual: with read-your-writes, a client's reads after its first
	// write would go to the primary, as the fake replica never replays.
	_, addr := startFakeRouter(t, io.Discard, 1, "100ms", "routing:\n  consistency: eventual\n", primary, replica)
	const clients, ops = 6, 25
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		mode := pgx.QueryExecModeSimpleProtocol
		if i%2 == 1 {
			mode = pgx.QueryExecModeCacheStatement
		}
		c := connect(t, addr, mode, false)
		wg.Go(func() {
			rng := rand.New(rand.NewSource(int64(i)))
			for k := range ops {
				id := i*1000 + k
				if rng.Intn(3) == 0 {
					// A table of its own: a refused statement's shape is
					// remembered as a write, and would go to the primary.
					sql := fmt.Sprintf("/* pgswitch:replica */ INSERT INTO t%d VALUES (1) /* after %dms */", id, []int{0, 1, 5, 20}[rng.Intn(4)])
					tag, err := c.Exec(ctx, sql)
					if err != nil || tag.String() != "INSERT 0 1" {
						errs <- fmt.Errorf("client %d: %s: %q, %v", i, sql, tag, err)
						return
					}
					continue
				}
				var got string
				if err := c.QueryRow(ctx, fmt.Sprintf("SELECT %d", id)).Scan(&got); err != nil || got != fmt.Sprint(id) {
					errs <- fmt.Errorf("client %d: SELECT %d: %q, %v", i, id, got, err)
					return
				}
			}
			errs <- nil
		})
	}
	wg.Wait()
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Each write the replica refused ran once on the primary.
	count := func(pg *fakePG) map[string]int {
		n := map[string]int{}
		for _, s := range pg.seen() {
			_, msg, _ := strings.Cut(s, ": ")
			if (strings.HasPrefix(msg, "Q ") || strings.HasPrefix(msg, "P ")) && strings.Contains(msg, "INSERT INTO t") {
				v := msg[strings.Index(msg, "INSERT INTO t")+len("INSERT INTO t"):]
				n[v[:strings.IndexByte(v, ' ')]]++
			}
		}
		return n
	}
	onPrimary, onReplica := count(primary), count(replica)
	if len(onPrimary) == 0 {
		t.Fatal("no write was refused and retried")
	}
	if testing.Verbose() {
		t.Logf("%d writes refused and retried", len(onPrimary))
	}
	for id, n := range onReplica {
		if n != 1 || onPrimary[id] != 1 {
			t.Errorf("INSERT %s: %d times on the replica, %d on the primary; want once each", id, n, onPrimary[id])
		}
	}
	if len(onPrimary) != len(onReplica) {
		t.Errorf("%d writes on the primary, %d refused by the replica", len(onPrimary), len(onReplica))
	}
}

// TestGuardedSessionParks: a session whose last unit was a guarded read
// (its outcome taken only when the client writes again) still parks once
// its client idles.
func TestGuardedSessionParks(t *testing.T) {
	noLeaks(t)
	primary, replica := newFakePG(t, false), newFakePG(t, true)
	r, addr := startFakeRouter(t, io.Discard, 1, "100ms", "routing:\n  consistency: eventual\n", primary, replica)
	const clients = 3
	for i := range clients {
		c := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
		var got string
		if err := c.QueryRow(context.Background(), fmt.Sprintf("SELECT %d", i)).Scan(&got); err != nil || got != fmt.Sprint(i) {
			t.Fatalf("SELECT %d: %q, %v", i, got, err)
		}
	}
	if !slices.ContainsFunc(replica.seen(), func(s string) bool { return strings.HasSuffix(s, "Q SELECT 0") }) {
		t.Fatal("the read did not go to the replica")
	}
	deadline := time.Now().Add(15 * time.Second)
	for r.Parked() < clients {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d idle sessions parked", r.Parked(), clients)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

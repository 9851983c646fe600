package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/wire"
)

// testClient links a net.Pipe client end to a Client and reads what the
// pump forwards on the other end.
type testClient struct {
	t  *testing.T
	c  *Client
	fe *pgproto3.Frontend
	nc net.Conn
}

func newTestClient(t *testing.T) *testClient {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return &testClient{t: t, c: NewClient(a), fe: pgproto3.NewFrontend(b, b), nc: b}
}

// expect reads messages up to and including ReadyForQuery and returns the
// DataRow values and the final status.
func (tc *testClient) expect() (rows []string, status byte) {
	tc.t.Helper()
	tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		m, err := tc.fe.Receive()
		if err != nil {
			tc.t.Fatalf("client read: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		case *pgproto3.ReadyForQuery:
			return rows, m.TxStatus
		case *pgproto3.ErrorResponse:
			tc.t.Fatalf("unexpected error %s: %s", m.Code, m.Message)
		}
	}
}

func query(sql string) []byte { return wire.AppendQuery(nil, sql) }

func send(t *testing.T, c *Conn, tc *testClient, msgs ...[]byte) {
	t.Helper()
	for _, m := range msgs {
		if err := c.Claim(tc.c, m[0]); err != nil {
			t.Fatalf("claim %q: %v", m[0], err)
		}
		if err := c.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	c.Unhold() // Link holds the connection until the session has sent
}

func newTestPool(t *testing.T, fs *fakeServer, size int) (*Set, *Pool) {
	set := newWatchedSet()
	t.Cleanup(set.Close)
	p := set.Get(Key{Database: "db", User: "u", Server: fs.ln.Addr().String()}, fs.target(), Settings{Size: size})
	return set, p
}

func acquire(t *testing.T, p *Pool) *Conn {
	t.Helper()
	c, err := p.Acquire(context.Background(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newWatchedSet returns a set that logs nowhere and whose pools signal
// their changes, for waitFor.
func newWatchedSet() *Set {
	set := NewSet(slog.New(slog.DiscardHandler))
	set.changed = make(chan struct{}, 1)
	return set
}

// waitFor waits until cond holds of p's stats, looking again whenever the
// pool changes; p comes from a newWatchedSet.
func waitFor(t *testing.T, p *Pool, what string, cond func(Stats) bool) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for !cond(p.Stats()) {
		select {
		case <-p.changed:
		case <-timeout.C:
			t.Fatalf("waited 10s for %s; the pool has %+v", what, p.Stats())
		}
	}
}

// waitIdle waits until the pool holds n idle connections.
func waitIdle(t *testing.T, p *Pool, n int) {
	t.Helper()
	waitFor(t, p, fmt.Sprintf("%d idle connections", n), func(s Stats) bool { return s.Idle == n })
}

func TestReleasedAtIdleNotInsideTransaction(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 1)
	tc := newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	send(t, c, tc, query("BEGIN"))
	if _, st := tc.expect(); st != 'T' {
		t.Fatalf("got status %q, want T", st)
	}
	if !c.LinkedTo(tc.c) {
		t.Fatal("released inside a transaction")
	}
	send(t, c, tc, query("COMMIT"))
	if _, st := tc.expect(); st != 'I' {
		t.Fatalf("got status %q, want I", st)
	}
	waitIdle(t, p, 1)
	if c.LinkedTo(tc.c) {
		t.Fatal("still linked after ReadyForQuery I")
	}
	if err := c.Claim(tc.c, 'Q'); !errors.Is(err, ErrUnlinked) {
		t.Fatalf("claim after release: got %v, want ErrUnlinked", err)
	}
}

func TestPipelinedQueriesKeepTheLink(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 1)
	tc := newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	// Both claimed before either answer is read: the first ReadyForQuery
	// must not release the connection while the second is in flight.
	for _, typ := range []byte{'Q', 'Q'} {
		if err := c.Claim(tc.c, typ); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Write(append(query("one"), query("two")...)); err != nil {
		t.Fatal(err)
	}
	c.Unhold()
	if rows, _ := tc.expect(); len(rows) != 1 || rows[0] != "one" {
		t.Fatalf("got %q, want [one]", rows)
	}
	if rows, _ := tc.expect(); len(rows) != 1 || rows[0] != "two" {
		t.Fatalf("got %q, want [two]", rows)
	}
	waitIdle(t, p, 1)
}

func TestExtendedBatchNotReleasedBeforeSync(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 1)
	tc := newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	// A Parse claimed before the answer to x arrives (both claimed before
	// anything is written, as a session does within one batch).
	for _, typ := range []byte{'Q', 'P'} {
		if err := c.Claim(tc.c, typ); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Write(query("x")); err != nil {
		t.Fatal(err)
	}
	c.Unhold()
	tc.expect()
	if !c.LinkedTo(tc.c) {
		t.Fatal("released with an unsynced Parse claimed")
	}
	if err := c.Claim(tc.c, 'S'); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{'S', 0, 0, 0, 4})
	tc.expect()
	waitIdle(t, p, 1)
}

func TestWaitersServedInOrder(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 1)
	queued := Queued()
	first := acquire(t, p)
	if n := Queued() - queued; n != 0 {
		t.Fatalf("an idle pool's acquisition counted %d waits, want 0", n)
	}
	order := make(chan int, 3)
	for i := 0; i < 3; i++ {
		go func(i int) {
			c, err := p.Acquire(context.Background(), 10*time.Second)
			if err != nil {
				order <- -1
				return
			}
			order <- i
			c.Release()
		}(i)
		// Let waiter i queue before i+1.
		waitFor(t, p, fmt.Sprintf("%d waiters", i+1), func(s Stats) bool { return s.Waiting == i+1 })
	}
	if n := Queued() - queued; n != 3 {
		t.Fatalf("3 waiters counted as %d waits (Queued)", n)
	}
	first.Release()
	for want := 0; want < 3; want++ {
		if got := <-order; got != want {
			t.Fatalf("waiter %d served, want %d", got, want)
		}
	}
	if n := fs.connCount(); n != 1 {
		t.Fatalf("server saw %d connections, want 1", n)
	}
}

func TestWaitTimeout(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 1)
	held := acquire(t, p)
	_, err := p.Acquire(context.Background(), 50*time.Millisecond)
	if !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("got %v, want ErrWaitTimeout", err)
	}
	if e := AcquireError(p.Key(), 50*time.Millisecond, err); e.Code != "53300" {
		t.Fatalf("got SQLSTATE %s, want 53300", e.Code)
	}
	if w := p.Stats().Waiting; w != 0 {
		t.Fatalf("%d waiters left after timeout, want 0", w)
	}
	held.Release()
}

func TestServerMaxConnAcrossPools(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	set := newWatchedSet()
	t.Cleanup(set.Close)
	set.SetServerLimit(fs.ln.Addr().String(), 1)
	p1 := set.Get(Key{"db1", "u", fs.ln.Addr().String()}, fs.target(), Settings{Size: 5})
	p2 := set.Get(Key{"db2", "u", fs.ln.Addr().String()}, fs.target(), Settings{Size: 5})
	c1 := acquire(t, p1)
	got := make(chan *Conn, 1)
	go func() {
		c, err := p2.Acquire(context.Background(), 10*time.Second)
		if err != nil {
			got <- nil
			return
		}
		got <- c
	}()
	waitFor(t, p2, "the second pool's client to wait", func(s Stats) bool { return s.Waiting == 1 })
	select {
	case <-got:
		t.Fatal("second pool connected beyond the server's maxconn")
	default:
	}
	c1.Close() // frees the server's only slot
	c2 := <-got
	if c2 == nil {
		t.Fatal("second pool never got a connection")
	}
	if c2.Pool() != p2 {
		t.Fatal("connection from the wrong pool")
	}
}

func TestServerLostWhileLinked(t *testing.T) {
	fs := newFakeServer(t, func(b *pgproto3.Backend, nc net.Conn) {
		b.Receive() // the query; then crash without answering
		nc.Close()
	})
	_, p := newTestPool(t, fs, 1)
	tc := newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	send(t, c, tc, query("SELECT 1"))
	tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := tc.fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	er, ok := m.(*pgproto3.ErrorResponse)
	if !ok || er.Code != "08006" || er.Severity != "FATAL" {
		t.Fatalf("got %#v, want FATAL 08006", m)
	}
	c.Wait()
	if s := p.Stats(); s.Total != 0 {
		t.Fatalf("pool still counts %d connections", s.Total)
	}
}

func TestIdleConnectionLossNoticed(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 2)
	c := acquire(t, p)
	c.Release()
	waitIdle(t, p, 1)
	fs.dropAll()
	c.Wait()
	if s := p.Stats(); s.Total != 0 || s.Idle != 0 {
		t.Fatalf("got %+v, want an empty pool", s)
	}
}

func TestDetachInsideTransactionRollsBack(t *testing.T) {
	queries := make(chan string, 10)
	fs := newFakeServer(t, func(b *pgproto3.Backend, nc net.Conn) {
		status := byte('I')
		for {
			m, err := b.Receive()
			if err != nil {
				return
			}
			if q, ok := m.(*pgproto3.Query); ok {
				queries <- q.String
				switch q.String {
				case "BEGIN":
					status = 'T'
				case "ROLLBACK":
					status = 'I'
				}
				b.Send(&pgproto3.CommandComplete{CommandTag: []byte("X")})
				b.Send(&pgproto3.ReadyForQuery{TxStatus: status})
				b.Flush()
			}
		}
	})
	_, p := newTestPool(t, fs, 1)
	tc := newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	send(t, c, tc, query("BEGIN"))
	tc.expect()
	c.Detach(tc.c, "DISCARD ALL")
	waitIdle(t, p, 1)
	want := []string{"BEGIN", "ROLLBACK", "DISCARD ALL"}
	for _, w := range want {
		if got := <-queries; got != w {
			t.Fatalf("server got %q, want %q", got, w)
		}
	}
}

func TestDetachWithAnswerInFlightCloses(t *testing.T) {
	fs := newFakeServer(t, func(b *pgproto3.Backend, nc net.Conn) {
		b.Receive() // never answers
		b.Receive()
	})
	_, p := newTestPool(t, fs, 1)
	tc := newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	send(t, c, tc, query("SELECT pg_sleep(1000)"))
	c.Detach(tc.c, "")
	c.Wait()
	if s := p.Stats(); s.Total != 0 {
		t.Fatalf("pool kept a connection with an answer in flight: %+v", s)
	}
}

// TestWaitersRecycled: waits reuse their waiter, channel and timer; a
// wait that timed out or was cancelled leaves nothing behind that ends a
// later wait early, and every wait is counted once, however it ended.
func TestWaitersRecycled(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 1)
	c := acquire(t, p)
	if _, err := p.Acquire(context.Background(), time.Millisecond); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("got %v, want ErrWaitTimeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() {
		_, err := p.Acquire(ctx, time.Hour)
		cancelled <- err
	}()
	waitFor(t, p, "a waiter", func(s Stats) bool { return s.Waiting == 1 })
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	const handovers = 50
	for range handovers {
		got := make(chan error, 1)
		go func() {
			next, err := p.Acquire(context.Background(), 10*time.Second)
			if err == nil && next != c {
				err = fmt.Errorf("got another connection")
			}
			got <- err
		}()
		waitFor(t, p, "a waiter", func(s Stats) bool { return s.Waiting == 1 })
		c.Release()
		if err := <-got; err != nil {
			t.Fatal(err)
		}
	}
	s, h := p.Stats(), p.WaitHistogram()
	if want := uint64(2 + handovers); uint64(s.Waits) != want || h.Count != want || s.Waiting != 0 {
		t.Fatalf("counted %d waits (histogram %d), %d waiting; want %d, 0", s.Waits, h.Count, s.Waiting, want)
	}
}

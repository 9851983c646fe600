package pool

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/wire"
)

// cannedScript answers every Query with answer and every Sync with a
// ReadyForQuery idle, reading and writing raw bytes into buffers it keeps:
// the fake server allocates nothing per query, so that a benchmark's
// allocations are pgswitch's.
func cannedScript(answer []byte) func(*pgproto3.Backend, net.Conn) {
	return func(_ *pgproto3.Backend, nc net.Conn) {
		// The client sent nothing after the startup message before the
		// login's ReadyForQuery: the Backend holds no buffered bytes.
		br := bufio.NewReader(nc)
		ready := wire.AppendReadyForQuery(nil, 'I')
		for {
			hdr, err := br.Peek(wire.HeaderSize)
			if err != nil {
				return
			}
			h, err := wire.ParseHeader(hdr, 1<<20)
			if err != nil {
				return
			}
			if _, err := br.Discard(wire.HeaderSize + h.Len); err != nil {
				return
			}
			switch h.Type {
			case 'Q':
				_, err = nc.Write(answer)
			case 'S':
				_, err = nc.Write(ready)
			case 'X':
				return
			}
			if err != nil {
				return
			}
		}
	}
}

// selectAnswer is a server's answer to a query returning rows rows of one
// int4 column.
func selectAnswer(rows int) []byte {
	out, _ := (&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("n"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1},
	}}).Encode(nil)
	for range rows {
		out, _ = (&pgproto3.DataRow{Values: [][]byte{[]byte("12345")}}).Encode(out)
	}
	out, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(out)
	return wire.AppendReadyForQuery(out, 'I')
}

// readAnswer reads whole messages from r up to and including a
// ReadyForQuery, without allocating.
func readAnswer(r *bufio.Reader) error {
	for {
		hdr, err := r.Peek(wire.HeaderSize)
		if err != nil {
			return err
		}
		h, err := wire.ParseHeader(hdr, 1<<20)
		if err != nil {
			return err
		}
		if _, err := r.Discard(wire.HeaderSize + h.Len); err != nil {
			return err
		}
		if h.Type == 'Z' {
			return nil
		}
	}
}

// benchClient is the client's end of a loopback connection: pool writes to
// c, the benchmark reads what arrived from r.
type benchClient struct {
	c *Client
	r *bufio.Reader
}

func newBenchClient(b testing.TB) *benchClient {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, _ := ln.Accept()
		accepted <- nc
	}()
	far, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	near := <-accepted
	if near == nil {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() { near.Close(); far.Close() })
	return &benchClient{c: NewClient(near), r: bufio.NewReaderSize(far, 64<<10)}
}

// BenchmarkPump measures one round trip through a server connection's
// pump: a claimed Query written to the server, its answer forwarded to the
// client by the pump, in session mode (the link stays). Client and server
// are loopback TCP, the fake server answers canned bytes and allocates
// nothing, so allocs/op are the pump's and the lease's own. Rejected:
// net.Pipe for the client (unbuffered, so every write of the pump waits for
// the benchmark's read: it measures the hand-off, not the pump).
func BenchmarkPump(b *testing.B) {
	for _, rows := range []int{1, 100} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			c, cl, q := pumpSetup(b, rows)
			b.ReportAllocs()
			b.SetBytes(int64(len(selectAnswer(rows))))
			for b.Loop() {
				pumpRoundTrip(b, c, cl, q)
			}
		})
	}
}

// pumpSetup returns a server connection linked for good to a client, and
// a query its fake server answers with rows rows.
func pumpSetup(tb testing.TB, rows int) (*Conn, *benchClient, []byte) {
	fs := newFakeServer(tb, cannedScript(selectAnswer(rows)))
	p := newBenchPool(tb, fs)
	cl := newBenchClient(tb)
	c, err := p.Acquire(context.Background(), 10*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	c.Link(cl.c, true)
	c.Unhold()
	return c, cl, wire.AppendQuery(nil, "SELECT n FROM t")
}

func pumpRoundTrip(tb testing.TB, c *Conn, cl *benchClient, q []byte) {
	if err := c.Claim(cl.c, 'Q'); err != nil {
		tb.Fatal(err)
	}
	if err := c.Write(q); err != nil {
		tb.Fatal(err)
	}
	if err := readAnswer(cl.r); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkLease measures a transaction-pooling unit of work: acquire an
// idle connection, link it, send a Query, read the answer, and the pump
// hands the connection back to the pool at ReadyForQuery idle. The next
// iteration starts once it is back, so every Acquire takes the idle path
// (waiting in line is measured by no benchmark here).
func BenchmarkLease(b *testing.B) {
	p, cl, q := leaseSetup(b)
	b.ReportAllocs()
	for b.Loop() {
		leaseRoundTrip(b, p, cl, q)
	}
}

func leaseSetup(tb testing.TB) (*Pool, *benchClient, []byte) {
	fs := newFakeServer(tb, cannedScript(selectAnswer(1)))
	return newBenchPool(tb, fs), newBenchClient(tb), wire.AppendQuery(nil, "SELECT n FROM t")
}

func leaseRoundTrip(tb testing.TB, p *Pool, cl *benchClient, q []byte) {
	c, err := p.Acquire(context.Background(), 10*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	c.Link(cl.c, false)
	if err := c.Claim(cl.c, 'Q'); err != nil {
		tb.Fatal(err)
	}
	if err := c.Write(q); err != nil {
		tb.Fatal(err)
	}
	c.Unhold()
	if err := readAnswer(cl.r); err != nil {
		tb.Fatal(err)
	}
	for !idleBack(p) {
		<-p.changed
	}
}

func idleBack(p *Pool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle) == 1
}

// TestPumpAllocs guards the benchmarks' allocation counts: forwarding an
// answer allocates nothing, nor does a lease (its release channel is made
// only for a session that waits for it, Conn.WaitReleased).
func TestPumpAllocs(t *testing.T) {
	for _, rows := range []int{1, 100} {
		c, cl, q := pumpSetup(t, rows)
		if n := testing.AllocsPerRun(200, func() { pumpRoundTrip(t, c, cl, q) }); n != 0 {
			t.Errorf("pump, %d rows: got %v allocations, want 0", rows, n)
		}
	}
	p, cl, q := leaseSetup(t)
	if n := testing.AllocsPerRun(200, func() { leaseRoundTrip(t, p, cl, q) }); n != 0 {
		t.Errorf("lease: got %v allocations, want 0", n)
	}
}

// TestWaitAllocs: a unit of work that waits in line for a connection
// allocates nothing either (its waiter, channel and timer are reused),
// where a pool smaller than its clients makes most units wait.
func TestWaitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops waiters at random")
	}
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 1)
	c := acquire(t, p)
	turn := make(chan struct{})
	go func() {
		for range turn {
			for p.Stats().Waiting == 0 {
				runtime.Gosched()
			}
			c.Release()
		}
	}()
	defer close(turn)
	n := testing.AllocsPerRun(100, func() {
		turn <- struct{}{}
		if got, err := p.Acquire(context.Background(), 10*time.Second); err != nil || got != c {
			t.Fatalf("Acquire: %v", err)
		}
	})
	// A collection may empty the waiters' sync.Pool once in a while.
	if n >= 0.5 {
		t.Errorf("a wait in line: got %v allocations, want 0", n)
	}
}

func newBenchPool(tb testing.TB, fs *fakeServer) *Pool {
	set := newWatchedSet()
	tb.Cleanup(set.Close)
	return set.Get(Key{Database: "db", User: "u", Server: fs.ln.Addr().String()}, fs.target(), Settings{Size: 1})
}

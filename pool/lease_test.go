package pool

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/wire"
)

// TestCancelHoldsTheLease: a connection with a cancel in flight is not
// handed on when its answer ends; once the cancel is confirmed it is, and
// after an unconfirmed cancel it is closed instead.
func TestCancelHoldsTheLease(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 1)
	for _, confirmed := range []bool{true, false} {
		tc := newTestClient(t)
		c := acquire(t, p)
		c.Link(tc.c, false)
		if !c.BeginCancel(tc.c) {
			t.Fatal("BeginCancel refused for the linked client")
		}
		send(t, c, tc, query("SELECT 1"))
		tc.expect()
		pumped(t, c)
		if !c.LinkedTo(tc.c) || p.Stats().Idle != 0 {
			t.Fatal("handed back with a cancel in flight")
		}
		c.EndCancel(confirmed)
		if confirmed {
			waitIdle(t, p, 1)
		} else {
			c.Wait()
			if s := p.Stats(); s.Total != 0 {
				t.Fatalf("kept after an unconfirmed cancel: %+v", s)
			}
		}
	}
	other := newTestClient(t)
	c := acquire(t, p)
	if c.BeginCancel(other.c) {
		t.Fatal("BeginCancel accepted for a client the connection does not serve")
	}
	c.Release()
}

// TestCancelRequestSent: Cancel sends the server the connection's own
// process ID and secret key on a new connection, and reports the cancel
// settled when the server closes it.
func TestCancelRequestSent(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 1)
	c := acquire(t, p)
	defer c.Release()
	if err := c.Cancel(context.Background()); err != nil {
		t.Fatalf("got %v, want the cancel confirmed", err)
	}
	fs.mu.Lock()
	got := fs.cancels
	fs.mu.Unlock()
	if len(got) != 1 || got[0].ProcessID != c.PID() || !bytes.Equal(got[0].SecretKey, []byte{0, 0, 0, 7}) {
		t.Fatalf("server got %+v, want one CancelRequest for pid %d, key 00000007", got, c.PID())
	}
}

// TestServerFatalOnce: the server's FATAL reaches the client, and then the
// end of the connection; no second FATAL from pgswitch.
func TestServerFatalOnce(t *testing.T) {
	fs := newFakeServer(t, func(b *pgproto3.Backend, nc net.Conn) {
		b.Receive()
		b.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01", Message: "terminating"})
		b.Flush()
		nc.Close()
	})
	_, p := newTestPool(t, fs, 1)
	tc := newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	send(t, c, tc, query("SELECT 1"))
	tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var errs []string
	for {
		m, err := tc.fe.Receive()
		if err != nil {
			break
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			errs = append(errs, e.Severity+" "+e.Code)
		}
	}
	if len(errs) != 1 || errs[0] != "FATAL 57P01" {
		t.Fatalf("client got %q, want the server's FATAL once", errs)
	}
}

// TestKillFor: only the client a connection serves can have it killed; the
// pump tells that client why, and nobody else is touched.
func TestKillFor(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 2)
	tc, other := newTestClient(t), newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	send(t, c, tc, query("BEGIN"))
	tc.expect()
	if c.KillFor(other.c, wire.Fatalf(wire.CodeAdminShutdown, "no")) {
		t.Fatal("killed for a client it does not serve")
	}
	done := make(chan bool)
	go func() { done <- c.KillFor(tc.c, wire.Fatalf(wire.CodeAdminShutdown, "bye")) }()
	tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := tc.fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := m.(*pgproto3.ErrorResponse); !ok || e.Code != "57P01" || e.Message != "bye" {
		t.Fatalf("got %#v, want FATAL 57P01 bye", m)
	}
	if !<-done {
		t.Fatal("KillFor reported nothing killed")
	}
}

// countingAnswers forwards everything but ReadyForQuery, which it replaces
// by its own, and counts what it was asked about.
type countingAnswers struct{ asked map[byte]int }

func (a *countingAnswers) Answer(out []byte, typ byte, msg []byte) ([]byte, Verdict) {
	a.asked[typ]++
	if typ == 'Z' {
		return wire.AppendReadyForQuery(out, 'I'), Verdict{Keep: true}
	}
	return append(out, msg...), Verdict{}
}
func (*countingAnswers) Lost()         {}
func (*countingAnswers) Detached(bool) {}

// TestAnswersDecide: the pump writes what Answers appends, and a Keep
// verdict keeps the client linked at rest.
func TestAnswersDecide(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	set := newWatchedSet()
	t.Cleanup(set.Close)
	a := &countingAnswers{asked: map[byte]int{}}
	target := fs.target()
	target.Answers = func() Answers { return a }
	p := set.Get(Key{Database: "db", User: "u", Server: fs.ln.Addr().String()}, target, Settings{Size: 1})
	tc := newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	send(t, c, tc, query("BEGIN"), query("COMMIT"))
	if _, st := tc.expect(); st != 'I' {
		t.Fatalf("status %q: the client did not get Answers' ReadyForQuery", st)
	}
	tc.expect()
	pumped(t, c)
	if a.asked['Z'] != 2 || a.asked['D'] != 2 {
		t.Fatalf("Answers asked about %v", a.asked)
	}
	if !c.LinkedTo(tc.c) {
		t.Fatal("released although Answers said keep")
	}
}

// pumped waits until the pump has decided about the last ReadyForQuery the
// client received (it writes first, then decides).
func pumped(t *testing.T, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		busy := c.writing || c.pending > 0
		c.mu.Unlock()
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the pump never settled")
		}
		runtime.Gosched()
	}
}

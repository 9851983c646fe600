package pool

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// received reads the client's side up to ReadyForQuery and returns message
// type letters, DataRow values in brackets.
func (tc *testClient) received() string {
	tc.t.Helper()
	tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	out := ""
	for {
		m, err := tc.fe.Receive()
		if err != nil {
			tc.t.Fatalf("client read: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.ParseComplete:
			out += "1"
		case *pgproto3.CloseComplete:
			out += "3"
		case *pgproto3.DataRow:
			out += "D[" + string(m.Values[0]) + "]"
		case *pgproto3.CommandComplete:
			out += "C"
		case *pgproto3.RowDescription:
			out += "T"
		case *pgproto3.ReadyForQuery:
			return out + "Z"
		case *pgproto3.ErrorResponse:
			out += "E"
		}
	}
}

// TestTrackedAnswers: a query pgswitch sends itself is answered to nobody;
// fake requests are answered in their turn, before the answers that follow
// them.
func TestTrackedAnswers(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 1)
	tc := newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	steps := []struct {
		typ  byte
		edit Edit
		msg  []byte
	}{
		{'Q', Swallow, query("replayed")},
		{'P', Fake, nil},
		{'C', Fake, nil},
		{'Q', Pass, query("client")},
	}
	var buf []byte
	for _, st := range steps {
		if err := c.Send(tc.c, st.typ, st.edit, ""); err != nil {
			t.Fatal(err)
		}
		buf = append(buf, st.msg...)
	}
	if err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	if got, want := tc.received(), "13TD[client]CZ"; got != want {
		t.Fatalf("client received %q, want %q", got, want)
	}
	// The fake Parse and Close opened an extended-protocol batch that no
	// Sync ended: the connection must stay with the client.
	if !c.LinkedTo(tc.c) {
		t.Fatal("released with an extended-protocol batch open")
	}
}

// TestFakeAnswerWithoutServerAnswer: a fake request with nothing owed
// before it is answered when the session asks (Parse then Flush).
func TestFakeAnswerWithoutServerAnswer(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 1)
	tc := newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	if err := c.Send(tc.c, 'P', Fake, ""); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.AnswerFakes(tc.c)
	}()
	tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := tc.fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*pgproto3.ParseComplete); !ok {
		t.Fatalf("got %T, want ParseComplete", m)
	}
	<-done
	if !c.LinkedTo(tc.c) {
		t.Fatal("the connection left the client with an extended-protocol batch open")
	}
}

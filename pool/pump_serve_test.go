package pool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/wire"
)

// piecesAnswer is the answer to query i of TestAnswersInPieces: rows of
// random sizes, some larger than the pump's read buffer (streamed), a
// notice larger than it (read whole), then CommandComplete and
// ReadyForQuery.
func piecesAnswer(i int) []byte {
	rng := rand.New(rand.NewSource(int64(i)))
	var b []byte
	enc := func(m pgproto3.BackendMessage) {
		var err error
		if b, err = m.Encode(b); err != nil {
			panic(err)
		}
	}
	enc(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("v"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
	for range rng.Intn(40) {
		size := rng.Intn(200)
		if rng.Intn(12) == 0 {
			size = readBufSize + rng.Intn(3*readBufSize)
		}
		enc(&pgproto3.DataRow{Values: [][]byte{bytes.Repeat([]byte{byte('a' + rng.Intn(26))}, size)}})
		if rng.Intn(16) == 0 {
			enc(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: strings.Repeat("n", readBufSize+rng.Intn(readBufSize))})
		}
	}
	enc(&pgproto3.CommandComplete{CommandTag: []byte("SELECT")})
	enc(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return b
}

// writeInPieces writes b in pieces of random sizes, with pauses between
// some, so that the pump finds messages cut anywhere.
func writeInPieces(nc net.Conn, rng *rand.Rand, b []byte) error {
	for len(b) > 0 {
		n := min(len(b), 1+rng.Intn(600))
		switch rng.Intn(6) {
		case 0:
			n = min(len(b), 1+rng.Intn(8))
		case 1:
			n = min(len(b), 1+rng.Intn(3*readBufSize/2))
		}
		if _, err := nc.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
		if rng.Intn(4) == 0 {
			time.Sleep(time.Duration(rng.Intn(300)) * time.Microsecond)
		}
	}
	return nil
}

// TestAnswersInPieces: whatever pieces a server's answers arrive in (cut
// inside headers and bodies, rows and notices larger than the read buffer)
// the client gets exactly the bytes the server sent; and what an idle
// connection's server sends between leases (a notice and an error larger
// than the buffer, a parameter change, all in pieces) is taken in without
// a client. The pump reads inside rawsock's Serve and steps out of it for
// large messages: this is what keeps both ways honest.
func TestAnswersInPieces(t *testing.T) {
	const queries = 40
	fs := newFakeServer(t, func(b *pgproto3.Backend, nc net.Conn) {
		rng := rand.New(rand.NewSource(1))
		for {
			m, err := b.Receive()
			if err != nil {
				return
			}
			q, ok := m.(*pgproto3.Query)
			if !ok {
				return
			}
			i, _ := strconv.Atoi(q.String)
			if writeInPieces(nc, rng, piecesAnswer(i)) != nil {
				return
			}
			// Unlinked now: a large notice, a large error and a parameter
			// change.
			var idle []byte
			idle, _ = (&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: strings.Repeat("i", 2*readBufSize)}).Encode(idle)
			idle, _ = (&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "XX000", Message: strings.Repeat("e", 2*readBufSize)}).Encode(idle)
			idle, _ = (&pgproto3.ParameterStatus{Name: "application_name", Value: fmt.Sprint("after ", i)}).Encode(idle)
			if writeInPieces(nc, rng, idle) != nil {
				return
			}
		}
	})
	_, p := newTestPool(t, fs, 1)
	for i := range queries {
		tc := newTestClient(t)
		c := acquire(t, p)
		c.Link(tc.c, false)
		send(t, c, tc, query(strconv.Itoa(i)))
		want := piecesAnswer(i)
		got := make([]byte, len(want))
		tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(tc.nc, got); err != nil {
			t.Fatalf("query %d: after %d bytes: %v", i, len(got), err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("query %d: the client got other bytes than the server sent (%d bytes)", i, len(want))
		}
		waitIdle(t, p, 1)
		// The parameter change comes after the lease ended: the pump takes
		// it in alone.
		deadline := time.Now().Add(10 * time.Second)
		for c.Params()["application_name"] != fmt.Sprint("after ", i) {
			if time.Now().After(deadline) {
				t.Fatalf("query %d: application_name is %q", i, c.Params()["application_name"])
			}
			time.Sleep(time.Millisecond)
		}
	}
	if s := p.Stats(); s.Total != 1 {
		t.Fatalf("the pool has %+v, want its one connection", s)
	}
}

// TestPumpClosesWhatItReleases: a connection the pump itself gives back
// when the answer ends, and that the pool then closes (too old, here), goes
// away; the pump's read must not wait for itself.
func TestPumpClosesWhatItReleases(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	set := newWatchedSet()
	t.Cleanup(set.Close)
	p := set.Get(Key{Database: "db", User: "u", Server: fs.ln.Addr().String()}, fs.target(), Settings{Size: 1, Lifetime: time.Nanosecond})
	tc := newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	send(t, c, tc, query("SELECT 1"))
	if rows, _ := tc.expect(); len(rows) != 1 {
		t.Fatalf("rows %q", rows)
	}
	waitFor(t, p, "the old connection closed", func(s Stats) bool { return s.Total == 0 })
	c.Wait()
}

// TestKillWhileThePumpWrites: Kill returns while the pump is stuck writing
// an answer to a client that does not read, and the pump ends once the
// client reads again.
func TestKillWhileThePumpWrites(t *testing.T) {
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, 1)
	tc := newTestClient(t) // net.Pipe: a write waits for the reader
	c := acquire(t, p)
	c.Link(tc.c, false)
	send(t, c, tc, query("SELECT 1"))
	// A byte of the answer read: the pump is inside its write of the rest.
	tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(tc.nc, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	killed := make(chan struct{})
	go func() {
		c.Kill(wire.Fatalf(wire.CodeAdminShutdown, "killed"))
		close(killed)
	}()
	select {
	case <-killed:
	case <-time.After(10 * time.Second):
		t.Fatal("Kill waited for the pump's write to a client that does not read")
	}
	tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(tc.nc); err != nil && !errors.Is(err, io.ErrClosedPipe) {
		t.Fatal(err)
	}
	c.Wait()
}

// TestKillHidesTheServersLastWord: what a server says after pgswitch shut
// its connection (here, an error for the unexpected end of the stream, as
// PostgreSQL sends in the middle of COPY) never reaches the client, which
// gets pgswitch's own error, as when the socket was closed outright.
func TestKillHidesTheServersLastWord(t *testing.T) {
	for range 20 {
		fs := newFakeServer(t, func(b *pgproto3.Backend, nc net.Conn) {
			b.Receive() // the query; then nothing until the end of the stream
			if _, err := b.Receive(); err != nil {
				b.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08P01", Message: "unexpected EOF on client connection"})
				b.Flush()
			}
		})
		_, p := newTestPool(t, fs, 1)
		tc := newTestClient(t)
		c := acquire(t, p)
		c.Link(tc.c, false)
		send(t, c, tc, query("COPY t FROM STDIN"))
		c.Kill(wire.Fatalf(wire.CodeAdminShutdown, "terminating connection due to administrator command"))
		tc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := tc.fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); !ok || e.Code != "57P01" {
			t.Fatalf("the client got %#v, want pgswitch's FATAL 57P01", m)
		}
		c.Wait()
	}
}

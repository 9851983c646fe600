package router

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/wire"
)

// The fake server's canned answers, which it writes without decoding or
// allocating so that a benchmark's allocations are pgswitch's.
var (
	benchQuery  = []byte("SELECT 1\x00")
	benchRow    = mustEncode(&pgproto3.DataRow{Values: [][]byte{[]byte("1")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	benchAnswer = append(mustEncode(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("x"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1},
	}}), benchRow...)
	benchBound = mustEncode(&pgproto3.BindComplete{})
)

func mustEncode(msgs ...pgproto3.Message) []byte {
	var out []byte
	for _, m := range msgs {
		var err error
		if out, err = m.Encode(out); err != nil {
			panic(err)
		}
	}
	return out
}

// serveRaw serves a pool connection from its own buffers: `SELECT 1` as a
// simple Query, or bound and executed from a statement prepared as `SELECT
// 1`, gets canned bytes; anything else is decoded and handled as serve
// does. It records nothing of the canned exchanges.
func (c *fakeConn) serveRaw() {
	br := bufio.NewReaderSize(c.nc, 16<<10)
	var out []byte
	canned := false // the portal bound last runs SELECT 1
	for {
		hdr, err := br.Peek(wire.HeaderSize)
		if err != nil {
			return
		}
		h, err := wire.ParseHeader(hdr, 1<<20)
		if err != nil {
			return
		}
		msg, err := br.Peek(wire.HeaderSize + h.Len)
		if err != nil {
			return
		}
		body := msg[wire.HeaderSize:]
		fast := c.status == 'I' && !c.skip
		switch {
		case fast && h.Type == 'Q' && bytes.Equal(body, benchQuery):
			out = wire.AppendReadyForQuery(append(out, benchAnswer...), c.status)
		case fast && h.Type == 'B':
			_, rest, _ := bytes.Cut(body, []byte{0})
			stmt, _, _ := bytes.Cut(rest, []byte{0})
			canned = c.stmts[string(stmt)] == "SELECT 1"
			if !canned {
				c.portals[""] = c.stmts[string(stmt)] // the fake knows unnamed portals only
			}
			out = append(out, benchBound...)
		case fast && h.Type == 'E' && canned:
			out = append(out, benchRow...)
		case fast && h.Type == 'S':
			out = wire.AppendReadyForQuery(out, c.status)
		default:
			m := decodeFront(h.Type, body)
			if m == nil {
				return
			}
			if len(out) > 0 {
				if _, err := c.nc.Write(out); err != nil {
					return
				}
				out = out[:0]
			}
			br.Discard(len(msg))
			if !c.handle(m) || c.b.Flush() != nil {
				return // (what handle holds back goes before the canned bytes)
			}
			continue
		}
		br.Discard(len(msg))
		if br.Buffered() == 0 {
			if _, err := c.nc.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
	}
}

// decodeFront decodes a client message serveRaw does not answer itself;
// nil for one it does not know.
func decodeFront(typ byte, body []byte) pgproto3.FrontendMessage {
	var m pgproto3.FrontendMessage
	switch typ {
	case 'Q':
		m = &pgproto3.Query{}
	case 'P':
		m = &pgproto3.Parse{}
	case 'B':
		m = &pgproto3.Bind{}
	case 'D':
		m = &pgproto3.Describe{}
	case 'E':
		m = &pgproto3.Execute{}
	case 'C':
		m = &pgproto3.Close{}
	case 'S':
		m = &pgproto3.Sync{}
	case 'X':
		m = &pgproto3.Terminate{}
	default:
		return nil
	}
	if m.Decode(body) != nil {
		return nil
	}
	return m
}

// benchSession logs a raw client in through a router in front of one fake
// primary served by serveRaw, and returns its connection and reader.
func benchSession(b testing.TB) (net.Conn, *bufio.Reader) {
	pg := newFakePG(b, false)
	pg.raw = true
	// Health checks every few seconds: their allocations stay out of the
	// figures.
	_, addr := startFakeRouter(b, io.Discard, 1, "5s", "", pg)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(time.Hour))
	fe := pgproto3.NewFrontend(nc, nc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "u", "database": "db"}})
	if err := fe.Flush(); err != nil {
		b.Fatal(err)
	}
	for {
		m, err := fe.Receive()
		if err != nil {
			b.Fatal(err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			b.Fatalf("login: %s %s", e.Code, e.Message)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break // nothing more comes before the client speaks
		}
	}
	return nc, bufio.NewReaderSize(nc, 16<<10)
}

// roundTrip writes req and reads the answer up to ReadyForQuery; an
// ErrorResponse fails the benchmark.
func roundTrip(b testing.TB, nc net.Conn, r *bufio.Reader, req []byte) {
	if _, err := nc.Write(req); err != nil {
		b.Fatal(err)
	}
	for {
		hdr, err := r.Peek(wire.HeaderSize)
		if err != nil {
			b.Fatal(err)
		}
		h, err := wire.ParseHeader(hdr, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		msg, err := r.Peek(wire.HeaderSize + h.Len)
		if err != nil {
			b.Fatal(err)
		}
		if h.Type == 'E' {
			b.Fatalf("error: %s", wire.ErrorField(msg[wire.HeaderSize:], 'M'))
		}
		r.Discard(len(msg))
		if h.Type == 'Z' {
			return
		}
	}
}

// BenchmarkSessionQuery measures a client's simple Query through the
// session loop in transaction pooling, the client and the fake server on
// loopback: read and classify it (a cache hit), decide, lease the one
// server connection, forward, and the pump's answer and release. The fake
// server and the client allocate nothing per query: allocs/op are
// pgswitch's. Rejected: the tests' fake server as it is (pgproto3 decoding,
// regular expressions and the message log allocate dozens of times per
// query, burying pgswitch's two) and a pgx client (its own allocations).
func BenchmarkSessionQuery(b *testing.B) {
	nc, r, q := sessionQuery(b)
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, nc, r, q)
	}
}

// BenchmarkSessionPrepared measures an extended-protocol unit as drivers
// send it once a statement is prepared (pgx's default): Bind of a named
// statement, Execute, Sync. pgswitch renames the statement to its server
// name on the way.
func BenchmarkSessionPrepared(b *testing.B) {
	nc, r, run := sessionPrepared(b)
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, nc, r, run)
	}
}

// sessionQuery is BenchmarkSessionQuery's session, its server connection
// used once, and its query.
func sessionQuery(tb testing.TB) (net.Conn, *bufio.Reader, []byte) {
	nc, r := benchSession(tb)
	q := wire.AppendQuery(nil, "SELECT 1")
	roundTrip(tb, nc, r, q)
	return nc, r, q
}

// sessionPrepared is BenchmarkSessionPrepared's session, with s1 prepared
// on its server connection, and the unit that runs s1.
func sessionPrepared(tb testing.TB) (net.Conn, *bufio.Reader, []byte) {
	nc, r := benchSession(tb)
	roundTrip(tb, nc, r, mustEncode(&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}, &pgproto3.Sync{}))
	run := mustEncode(&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	roundTrip(tb, nc, r, run)
	return nc, r, run
}

// TestSessionAllocs guards the benchmarks' allocation counts: a unit of
// work allocates no more than it does today. Today's: a unit running a
// named statement makes its answer guard, the guard's channel and, at
// times, the buffer of what the guard holds back (track.Server.Guard). The
// routing reason is told in constant pieces
// (decision.then); the lease's release channel is made only for a session
// that waits for it (pool.Conn.WaitReleased).
func TestSessionAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops the session's pooled buffers at random")
	}
	for _, tt := range []struct {
		name  string
		setup func(testing.TB) (net.Conn, *bufio.Reader, []byte)
		most  float64
	}{
		{"simple Query", sessionQuery, 0},
		{"Bind/Execute/Sync", sessionPrepared, 3},
	} {
		nc, r, req := tt.setup(t)
		if n := testing.AllocsPerRun(200, func() { roundTrip(t, nc, r, req) }); n > tt.most {
			t.Errorf("%s: got %v allocations, want at most %v", tt.name, n, tt.most)
		}
	}
}

//go:build linux

package router

import (
	"fmt"
	"io"
	"math/rand"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pgswitch/pgswitch/wire"
)

// Tests of the client reads inside rawsock's Serve (serve.go): messages in
// any pieces, and clients that leave right behind their query.

// loginClient logs a client in over network ("tcp" or "unix") to addr
// with pgproto3, returning the connection once the login's ReadyForQuery
// has come.
func loginClient(t *testing.T, network, addr string) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	nc, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	fe := pgproto3.NewFrontend(nc, nc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u", "database": "db"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("login: %s", m.Message)
		case *pgproto3.ReadyForQuery:
			return nc, fe
		}
	}
}

// encode is the wire form of a client's messages.
func encode(t *testing.T, msgs ...pgproto3.FrontendMessage) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// noParking keeps the parker's scan from looking at sessions while the
// test runs: it would end a session's wait that the test means to see end
// by itself. Call it before the router starts (cleanups run last first,
// so the scan's period is restored after the router closes).
func noParking(t *testing.T) {
	d := parkScan
	t.Cleanup(func() { parkScan = d })
	parkScan = time.Hour
}

// unparkedRouter starts a router with a pool of one over a fake server,
// listening on loopback (addr) and on a Unix socket (sock), its parker
// kept from looking (noParking), its log written to w.
func unparkedRouter(t *testing.T, w io.Writer) (r *Router, addr, sock string) {
	noParking(t)
	r, addr = fakeRouterLogging(t, w, 1, newFakePG(t, false))
	sock = filepath.Join(t.TempDir(), "s")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(uln)
	return r, addr, sock
}

// answerIs reads an answer up to its ReadyForQuery and checks that it is
// one row whose value is want.
func answerIs(fe *pgproto3.Frontend, want string) error {
	var got []string
	for {
		m, err := fe.Receive()
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			got = append(got, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("error %s: %s (%s)", m.Code, m.Message, m.Detail)
		case *pgproto3.ReadyForQuery:
			if len(got) != 1 || got[0] != want {
				return fmt.Errorf("got rows %q, want [%s]", got, want)
			}
			return nil
		}
	}
}

// TestClientMessagesInPieces: clients at once over one server connection
// send pipelines of queries, simple and extended, small and larger than
// the session's read buffer, cut into pieces of random sizes with pauses
// between them; each must get exactly its own answers, in order. A
// message taken before it is whole, a read skipped while the client still
// sends, or a wake-up lost between reads shows as a wrong answer or a
// stall (the test's deadline; the parker, whose scan would end a stall, is
// kept from looking). Randomized with a fixed seed.
func TestClientMessagesInPieces(t *testing.T) {
	_, addr, sock := unparkedRouter(t, io.Discard)

	const clients, rounds = 4, 60
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for k := range clients {
		network, at := "tcp", addr
		if k%2 == 1 {
			network, at = "unix", sock
		}
		nc, fe := loginClient(t, network, at)
		rng := rand.New(rand.NewSource(int64(k + 1)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pipelines(t, nc, fe, rng, k, rounds); err != nil {
				errs <- fmt.Errorf("client %d (%s): %w", k, network, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// pipelines runs rounds of pipelined queries on one client (see
// TestClientMessagesInPieces).
func pipelines(t *testing.T, nc net.Conn, fe *pgproto3.Frontend, rng *rand.Rand, k, rounds int) error {
	pads := []int{0, 0, 40, 300, 700, 3000}
	for round := range rounds {
		var want []string
		var out []byte
		for q := range 1 + rng.Intn(4) {
			id := strconv.Itoa(k*100000 + round*10 + q)
			pad := pads[rng.Intn(len(pads))]
			sql := "SELECT " + id
			if pad > 0 {
				sql = "/* " + strings.Repeat("p", pad) + " */ " + sql
			}
			if rng.Intn(3) == 0 {
				out = append(out, encode(t, &pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})...)
			} else {
				out = append(out, encode(t, &pgproto3.Query{String: sql})...)
			}
			want = append(want, id)
		}
		piece := 300
		if rng.Intn(4) == 0 {
			// The read buffer fills with a whole query, exactly, and more
			// waits in the socket: the read said nothing of the socket
			// being drained, so the session must read again.
			id := strconv.Itoa(k*100000 + round*10 + 9)
			sql := "SELECT " + id
			sql = "/* " + strings.Repeat("x", clientReadBuf-6-len(sql)-len("/*  */ ")) + " */ " + sql
			q := encode(t, &pgproto3.Query{String: sql})
			if len(q) != clientReadBuf {
				t.Fatalf("query of %d bytes, want %d", len(q), clientReadBuf)
			}
			out = append(q, out...)
			want = append([]string{id}, want...)
			piece = len(out) // in one write
		}
		for len(out) > 0 {
			n := min(len(out), 1+rng.Intn(piece))
			if _, err := nc.Write(out[:n]); err != nil {
				return err
			}
			out = out[n:]
			if rng.Intn(4) == 0 {
				time.Sleep(time.Duration(rng.Intn(300)) * time.Microsecond)
			}
		}
		for _, id := range want {
			if err := answerIs(fe, id); err != nil {
				return fmt.Errorf("round %d: %w", round, err)
			}
		}
	}
	return nil
}

// TestClientGoneBehindItsQuery: clients that close right after writing a
// query, or extended-protocol messages without a Sync (the message and
// the end of the stream may reach pgswitch in one read's wake), end their
// sessions and give the one server connection back, over TCP and over a
// Unix socket, while another client at once keeps querying through it.
// The parker is kept from looking (its scan would wake such sessions into
// a read that finds them gone): after a query the answer's write must
// find the client gone, and after the others the session must read on.
func TestClientGoneBehindItsQuery(t *testing.T) {
	var log lockedBuffer
	r, addr, sock := unparkedRouter(t, &log)

	// A query is answered; extended-protocol messages without a Sync are
	// not, so the session must read on to see the client gone.
	lasts := [][]byte{
		encode(t, &pgproto3.Query{String: "SELECT 7"}),
		encode(t, &pgproto3.Parse{Query: "SELECT 7"}),
		encode(t, &pgproto3.Parse{Query: "SELECT 7"}, &pgproto3.Bind{}, &pgproto3.Execute{}),
	}
	const leavers, rounds = 3, 30
	var wg sync.WaitGroup
	for k := range leavers {
		network, at := "tcp", addr
		if k != 0 {
			network, at = "unix", sock
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				nc, _ := loginClient(t, network, at)
				nc.Write(lasts[i%len(lasts)]) // one write, the close right behind it
				nc.Close()
			}
		}()
	}
	stay, fe := loginClient(t, "tcp", addr)
	for i := range rounds {
		id := strconv.Itoa(i)
		stay.Write(encode(t, &pgproto3.Query{String: "SELECT " + id}))
		if err := answerIs(fe, id); err != nil {
			t.Fatalf("the client that stays, query %d: %v\npgswitch's log:\n%s", i, err, log.String())
		}
	}
	wg.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for len(r.Clients()) > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions left after their clients closed; want only the one that stays", len(r.Clients())-1)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHalfClosedClientEnds: a client that writes its query and then only
// half-closes (shutdown of its writing side) gets its answer, and its
// session ends once the parker looks at it, though pgswitch's read that
// took the query may not have seen the end of the stream behind it.
func TestHalfClosedClientEnds(t *testing.T) {
	srv := newFakePG(t, false)
	r, addr := fakeRouter(t, 1, srv)
	for i := range 2 {
		nc, fe := loginClient(t, "tcp", addr)
		nc.Write(encode(t, &pgproto3.Query{String: "SELECT 3"}))
		nc.(*net.TCPConn).CloseWrite()
		if err := answerIs(fe, "3"); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		// pgswitch closes its side once it sees the client gone.
		var b [1]byte
		if n, err := nc.Read(b[:]); n != 0 || err == nil {
			t.Fatalf("client %d: read %d bytes (%q), %v; want the end of the stream", i, n, b[:n], err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(r.Clients()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions of half-closed clients left", len(r.Clients()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHalfClosedClientGetsItsAnswers: clients at once over one server
// connection pipeline a slow query, a BEGIN and a query, and half-close
// right behind them, half of them after a Terminate. The parker's scan,
// frequent here, wakes their sessions while the answers are still to come,
// and they read the end of the stream. Each client gets every answer, as PostgreSQL would give it,
// and then the end of the stream; the transactions they left open are
// rolled back, so that the one connection serves a later client.
func TestHalfClosedClientGetsItsAnswers(t *testing.T) {
	d := parkScan
	t.Cleanup(func() { parkScan = d })
	parkScan = 10 * time.Millisecond
	srv := newFakePG(t, false)
	r, addr := fakeRouter(t, 1, srv)
	const clients = 4
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		nc, fe := loginClient(t, "tcp", addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := []string{"", strconv.Itoa(10 + i)}
			msgs := []pgproto3.FrontendMessage{
				&pgproto3.Query{String: "SELECT pg_sleep(0.1)"},
				&pgproto3.Query{String: "BEGIN"},
				&pgproto3.Query{String: "SELECT " + want[1]},
			}
			if i%2 == 1 {
				// Terminate right behind: PostgreSQL answers what came first.
				msgs = append(msgs, &pgproto3.Terminate{})
			}
			nc.Write(encode(t, msgs...))
			nc.(*net.TCPConn).CloseWrite()
			var rows []string
			var status []byte
			for {
				m, err := fe.Receive()
				if err != nil {
					break // the end of the stream
				}
				switch m := m.(type) {
				case *pgproto3.DataRow:
					rows = append(rows, string(m.Values[0]))
				case *pgproto3.ErrorResponse:
					errs <- fmt.Errorf("client %d: error %s: %s", i, m.Code, m.Message)
					return
				case *pgproto3.ReadyForQuery:
					status = append(status, m.TxStatus)
				}
			}
			if fmt.Sprint(rows) != fmt.Sprint(want) || string(status) != "ITT" {
				errs <- fmt.Errorf("client %d: rows %q, ReadyForQuery statuses %q; want %q and ITT", i, rows, status, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	nc, fe := loginClient(t, "tcp", addr)
	nc.Write(encode(t, &pgproto3.Query{String: "SELECT 99"}))
	if err := answerIs(fe, "99"); err != nil {
		t.Fatalf("a later client: %v", err)
	}
	var begins, rollbacks int
	for _, m := range srv.seen() {
		switch {
		case strings.HasSuffix(m, "Q BEGIN"):
			begins++
		case strings.HasSuffix(m, "Q ROLLBACK"):
			rollbacks++
		}
	}
	if begins != clients || rollbacks != clients {
		t.Errorf("the server saw %d BEGINs and %d ROLLBACKs, want %d of each", begins, rollbacks, clients)
	}
	if n := len(r.Clients()); n != 1 {
		t.Errorf("%d sessions, want only the later client's", n)
	}
}

// TestLingeringSessionDisconnected: a session that waits for the answer
// owed to its half-closed client (linger) ends when its database's clients
// are disconnected, and the client hears why rather than the answer.
func TestLingeringSessionDisconnected(t *testing.T) {
	srv := newFakePG(t, false)
	r, addr := fakeRouter(t, 1, srv)
	nc, fe := loginClient(t, "tcp", addr)
	nc.Write(encode(t, &pgproto3.Query{String: "SELECT pg_sleep(3)"}))
	nc.(*net.TCPConn).CloseWrite()
	// The parker's scan wakes the session to read the end of the stream.
	deadline := time.Now().Add(20 * time.Second)
	for !r.lingering() {
		if time.Now().After(deadline) {
			t.Fatal("the session never lingered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e := wire.Fatalf(wire.CodeAdminShutdown, "disconnected by the test")
	if n := r.DisconnectDatabase("db", e); n != 1 {
		t.Fatalf("disconnected %d clients, want 1", n)
	}
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("the client heard no error before the end of the stream: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			t.Fatal("the client got the answer of a disconnected session")
		case *pgproto3.ErrorResponse:
			if m.Code != wire.CodeAdminShutdown {
				t.Fatalf("error %s: %s; want %s", m.Code, m.Message, wire.CodeAdminShutdown)
			}
			return
		}
	}
}

// lingering reports whether a session waits for its ended client's answers.
func (r *Router) lingering() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sessions {
		s.parkMu.Lock()
		l := s.parkState == parkLingering
		s.parkMu.Unlock()
		if l {
			return true
		}
	}
	return false
}

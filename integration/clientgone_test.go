package integration

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pgswitch/pgswitch/config"
)

// TestClientsGoneMidUnit: clients that close right behind their last
// message, in one write with it — a query (which the server answers), a
// Parse without Sync or a COPY's data (which it does not: pgswitch must
// read on to see the client gone) — over TCP and over a Unix socket,
// several at once through one server connection, while another client
// keeps querying through it. Every session ends, and the connection goes
// back to the pool in a state that serves the next client as a fresh
// one would.
func TestClientsGoneMidUnit(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	mustExec(t, primaryConn(t, db), "CREATE TABLE sink (x int)")
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, PoolSize: 1, Unix: true})
	ctx := testCtx(t)

	kinds := []struct {
		name string
		last []pgproto3.FrontendMessage
		copy bool // after a COPY FROM STDIN began
	}{
		{"a query", []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1"}}, false},
		{"a Parse without Sync", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT 2"}}, false},
		{"a Bind and Execute without Sync", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "INSERT INTO sink VALUES (1)"}, &pgproto3.Bind{}, &pgproto3.Execute{}}, false},
		{"a COPY's data", []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("1\n")}}, true},
	}
	leave := func(network string, i int) error {
		url := p.URL(db)
		if network == "unix" {
			url = p.SocketConnString(cl.User, cl.Password, db)
		}
		k := kinds[i%len(kinds)]
		pc, err := pgconn.Connect(ctx, url)
		if err != nil {
			return err
		}
		hj, err := pc.Hijack()
		if err != nil {
			return err
		}
		defer hj.Conn.Close()
		if k.copy {
			hj.Frontend.Send(&pgproto3.Query{String: "COPY sink FROM STDIN"})
			if err := hj.Frontend.Flush(); err != nil {
				return err
			}
			hj.Conn.SetReadDeadline(time.Now().Add(time.Minute))
			for {
				m, err := hj.Frontend.Receive()
				if err != nil {
					return fmt.Errorf("%s: %w", k.name, err)
				}
				if _, ok := m.(*pgproto3.CopyInResponse); ok {
					break
				}
			}
		}
		var out []byte
		for _, m := range k.last {
			if out, err = m.Encode(out); err != nil {
				return err
			}
		}
		// One write, and the close right behind it.
		if _, err := hj.Conn.Write(out); err != nil {
			return fmt.Errorf("%s: %w", k.name, err)
		}
		return hj.Conn.Close()
	}

	const rounds = 12
	var wg sync.WaitGroup
	errs := make(chan error, 3*rounds+1)
	for _, network := range []string{"tcp", "unix", "unix"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				if err := leave(network, i); err != nil {
					errs <- fmt.Errorf("%s client %d: %w", network, i, err)
				}
			}
		}()
	}
	stay := p.Connect(t, db, pgx.QueryExecModeCacheStatement)
	stop := make(chan struct{})
	stayed := make(chan int, 1)
	go func() {
		n := 0
		defer func() { stayed <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var got int
			if err := stay.QueryRow(ctx, "SELECT $1::int", n).Scan(&got); err != nil || got != n {
				errs <- fmt.Errorf("the client that stays, query %d: got %d, %v", n, got, err)
				return
			}
			n++
		}
	}()
	wg.Wait()
	close(stop)
	if n := <-stayed; n == 0 {
		t.Error("the client that stays ran no query")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, 30*time.Second, "sessions of clients gone ended", func() error {
		if n := len(p.R.Clients()); n != 1 {
			return fmt.Errorf("%d sessions, want only the one that stays", n)
		}
		return nil
	})
	// The connection serves as a fresh one would: nothing of theirs left,
	// no transaction of theirs open.
	var open, rows int
	err := stay.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'), (SELECT count(*) FROM sink)`).Scan(&open, &rows)
	if err != nil || open != 0 || rows != 0 {
		t.Fatalf("after they left: %d connections idle in a transaction, %d rows in sink, %v; want none of theirs", open, rows, err)
	}
}

// TestHalfClosedClients: clients that send their queries and then
// half-close (shut down their writing side), some after a Terminate right
// behind the queries, while the answers are still to come, several at
// once over one server connection, get what a direct connection to
// PostgreSQL gives them: every answer, then the end of the stream. The transactions they leave open are rolled back, and a client
// that half-closes in the middle of a COPY's data has its COPY fail, as it
// would directly, without keeping the connection from the next client.
func TestHalfClosedClients(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	mustExec(t, primaryConn(t, db), "CREATE TABLE hc (x int)")
	ctx := testCtx(t)
	direct := cl.Primary.DSN(cl.User, cl.Password, db)

	scripts := []func(i int) []pgproto3.FrontendMessage{
		// A slow read, then a transaction left open.
		func(i int) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{
				&pgproto3.Query{String: fmt.Sprintf("SELECT %d FROM pg_sleep(0.2)", i)},
				&pgproto3.Query{String: "BEGIN"},
				&pgproto3.Query{String: fmt.Sprintf("INSERT INTO hc VALUES (%d)", i)},
			}
		},
		// The extended protocol: a slow statement, then a prepared one.
		func(i int) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{
				&pgproto3.Parse{Query: "SELECT $1::int FROM pg_sleep(0.2)"},
				&pgproto3.Bind{Parameters: [][]byte{fmt.Appendf(nil, "%d", i)}},
				&pgproto3.Describe{ObjectType: 'P'},
				&pgproto3.Execute{},
				&pgproto3.Sync{},
				&pgproto3.Parse{Name: "s", Query: "SELECT $1::int * 2"},
				&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{fmt.Appendf(nil, "%d", i)}},
				&pgproto3.Execute{},
				&pgproto3.Sync{},
			}
		},
		// A COPY whose data stops without CopyDone.
		func(i int) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{
				&pgproto3.Query{String: "COPY hc FROM STDIN"},
				&pgproto3.CopyData{Data: fmt.Appendf(nil, "%d\n", i)},
			}
		},
	}
	// run sends script's messages as one client (odd ones with a Terminate
	// right behind), waits a moment so that the server has begun,
	// half-closes, and returns what came back.
	run := func(url string, script func(int) []pgproto3.FrontendMessage, i int) (string, error) {
		pc, err := pgconn.Connect(ctx, url)
		if err != nil {
			return "", err
		}
		hj, err := pc.Hijack()
		if err != nil {
			return "", err
		}
		defer hj.Conn.Close()
		for _, m := range script(i) {
			hj.Frontend.Send(m)
		}
		if i%2 == 1 {
			hj.Frontend.Send(&pgproto3.Terminate{})
		}
		if err := hj.Frontend.Flush(); err != nil {
			return "", err
		}
		time.Sleep(50 * time.Millisecond) // the end of the stream comes apart from the queries
		if err := hj.Conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			return "", err
		}
		hj.Conn.SetReadDeadline(time.Now().Add(time.Minute))
		var got []string
		for {
			m, err := hj.Frontend.Receive()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return "", fmt.Errorf("no end of the stream after %q", got)
				}
				return strings.Join(got, " "), nil
			}
			got = append(got, describe(m))
		}
	}

	for _, o := range []proxyOptions{
		{DBs: []string{db}, PoolSize: 1},
		{DBs: []string{db}, PoolSize: 1, Primary: true, Mode: config.PoolModeSession},
	} {
		t.Run(string(o.Mode)+map[bool]string{true: " primary", false: " split"}[o.Primary], func(t *testing.T) {
			p := startProxy(t, o)
			const clients = 12
			want := make([]string, clients)
			for i := range clients {
				var err error
				if want[i], err = run(direct, scripts[i%len(scripts)], i); err != nil {
					t.Fatalf("directly, client %d: %v", i, err)
				}
			}
			var wg sync.WaitGroup
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := run(p.URL(db), scripts[i%len(scripts)], i)
					if err != nil {
						t.Errorf("client %d: %v", i, err)
					} else if got != want[i] && !copyFailed(got, want[i]) {
						t.Errorf("client %d got\n  %s\nwant, as directly,\n  %s", i, got, want[i])
					}
				}()
			}
			wg.Wait()
			eventually(t, 30*time.Second, "sessions of half-closed clients ended", func() error {
				if n := len(p.R.Clients()); n != 0 {
					return fmt.Errorf("%d sessions left", n)
				}
				return nil
			})
			// The one connection serves the next client; nothing of theirs
			// was committed.
			c := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			var rows int
			if err := c.QueryRow(ctx, "SELECT count(*) FROM hc").Scan(&rows); err != nil || rows != 0 {
				t.Fatalf("a later client: %d rows in hc, %v; want 0", rows, err)
			}
		})
	}
}

// copyFailed reports whether got and want are both a COPY that failed:
// PostgreSQL ends the connection with 08006 at the client's end of stream
// (08P01 at a Terminate), pgswitch fails the COPY with CopyFail (the
// server says 57014) and keeps the connection.
func copyFailed(got, want string) bool {
	return strings.HasPrefix(got, "CopyInResponse E57014 Z") &&
		(strings.HasPrefix(want, "CopyInResponse E08006") || strings.HasPrefix(want, "CopyInResponse E08P01"))
}

// describe names a server message and what a client reads of it.
func describe(m pgproto3.BackendMessage) string {
	switch m := m.(type) {
	case *pgproto3.DataRow:
		return fmt.Sprintf("D%q", m.Values)
	case *pgproto3.CommandComplete:
		return "C(" + string(m.CommandTag) + ")"
	case *pgproto3.ReadyForQuery:
		return "Z" + string(m.TxStatus)
	case *pgproto3.ErrorResponse:
		return "E" + m.Code
	default:
		return strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3.")
	}
}

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

// TestHalfClosedClients: clients that send their queries and then
// half-close (shut down their writing side), some after a Terminate right
// behind the queries, while the answers are still to come, several at once over one server connection, get what a direct
// connection to PostgreSQL gives them: every answer, then the end of the
// stream. The transactions they leave open are rolled back, and a client
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

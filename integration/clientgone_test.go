package integration

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
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

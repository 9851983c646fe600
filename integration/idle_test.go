package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/config"
)

// TestIdleClientsDisconnected: timeouts.client_idle and
// timeouts.idle_transaction end clients as PostgreSQL's idle_session_timeout
// and idle_in_transaction_session_timeout do (same FATAL, asked of a direct
// connection in the same test), in both pool modes, over a pool of one
// server connection shared by several clients: a client whose query is
// still running or that keeps working is not idle; one idle in a
// transaction gets its transaction rolled back and the server connection
// goes back to the others.
func TestIdleClientsDisconnected(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	mustExec(t, setup, "CREATE TABLE idle_rows (who text)")
	direct := func(setting string) (string, string) {
		c := dialRaw(t, directURL(db))
		c.fe.Send(&pgproto3.Query{String: "SET " + setting + " = '500ms'"})
		c.fe.Send(&pgproto3.Query{String: "BEGIN"})
		if setting == "idle_session_timeout" {
			c.fe.Send(&pgproto3.Query{String: "COMMIT"})
		}
		if err := c.fe.Flush(); err != nil {
			t.Fatal(err)
		}
		return c.fatal()
	}
	sessionCode, sessionMsg := direct("idle_session_timeout")
	txnCode, txnMsg := direct("idle_in_transaction_session_timeout")
	if sessionCode != "57P05" || txnCode != "25P03" {
		t.Fatalf("direct connection: %s %q and %s %q", sessionCode, sessionMsg, txnCode, txnMsg)
	}

	for _, mode := range []config.PoolMode{config.PoolModeTransaction, config.PoolModeSession} {
		t.Run(string(mode), func(t *testing.T) {
			size := 1
			if mode == config.PoolModeSession {
				size = 4 // a session-mode client keeps its server connection
			}
			p := startProxy(t, proxyOptions{Mode: mode, PoolSize: size, DBs: []string{db}, Primary: true,
				YAML: "timeouts:\n  query_wait: 20s\n  client_idle: 1s\n  idle_transaction: 1s\n"})
			ctx := testCtx(t)

			idle := dialRaw(t, p.URL(db))
			inTxn := dialRaw(t, p.URL(db))
			inTxn.fe.Send(&pgproto3.Query{String: "BEGIN; INSERT INTO idle_rows VALUES ('" + string(mode) + "')"})
			if err := inTxn.fe.Flush(); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			wg.Add(2)
			go func() {
				// A query that runs past the idle limit: its client is not idle.
				defer wg.Done()
				c := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
				if _, err := c.Exec(ctx, "SELECT pg_sleep(2.5)"); err != nil {
					errs <- fmt.Errorf("long query: %v", err)
				}
			}()
			go func() {
				// A client that keeps working is never idle long.
				defer wg.Done()
				c := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
				for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
					if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
						errs <- fmt.Errorf("busy client: %v", err)
						return
					}
				}
			}()
			if code, msg := idle.fatal(); code != sessionCode || msg != sessionMsg {
				t.Errorf("idle client: FATAL %s %q, want %s %q as PostgreSQL", code, msg, sessionCode, sessionMsg)
			}
			if code, msg := inTxn.fatal(); code != txnCode || msg != txnMsg {
				t.Errorf("client idle in a transaction: FATAL %s %q, want %s %q as PostgreSQL", code, msg, txnCode, txnMsg)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			// The transaction was rolled back and its server connection serves
			// others again.
			c := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			var n int
			if err := c.QueryRow(context.Background(), "SELECT count(*) FROM idle_rows WHERE who = $1", string(mode)).Scan(&n); err != nil || n != 0 {
				t.Fatalf("after the idle transaction was ended: %d rows, %v", n, err)
			}
		})
	}
}

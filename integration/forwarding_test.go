package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/config"
)

var modes = []config.PoolMode{config.PoolModeSession, config.PoolModeTransaction}

// execModes that work in every pool mode. Named prepared statements across
// transactions in transaction mode are issue #5's; here extended protocol is
// exercised with unnamed statements.
var execModes = []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeDescribeExec}

func TestQueriesBothProtocols(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	for _, mode := range modes {
		p := startProxy(t, proxyOptions{Mode: mode, DBs: []string{db}, Primary: true})
		for _, em := range execModes {
			t.Run(fmt.Sprintf("%s/%s", mode, em), func(t *testing.T) {
				ctx := testCtx(t)
				conn := p.Connect(t, db, em)
				table := fmt.Sprintf("q_%s_%d", mode, em)
				if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY, name text, data bytea)"); err != nil {
					t.Fatal(err)
				}
				for i := 1; i <= 20; i++ {
					if _, err := conn.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, $2, $3)", i, fmt.Sprintf("n%d", i), bytes.Repeat([]byte{byte(i)}, i*100)); err != nil {
						t.Fatal(err)
					}
				}
				var sum, n int
				if err := conn.QueryRow(ctx, "SELECT sum(id), count(*) FROM "+table+" WHERE name LIKE $1", "n%").Scan(&sum, &n); err != nil {
					t.Fatal(err)
				}
				if sum != 210 || n != 20 {
					t.Fatalf("got sum %d count %d, want 210 20", sum, n)
				}
				// A large result crosses many server reads and client flushes.
				var total int
				rows, err := conn.Query(ctx, "SELECT g, repeat('x', 1000) FROM generate_series(1, 5000) g")
				if err != nil {
					t.Fatal(err)
				}
				for rows.Next() {
					var g int
					var s string
					if err := rows.Scan(&g, &s); err != nil {
						t.Fatal(err)
					}
					if len(s) != 1000 {
						t.Fatalf("got %d bytes, want 1000", len(s))
					}
					total += g
				}
				if rows.Err() != nil {
					t.Fatal(rows.Err())
				}
				if total != 5000*5001/2 {
					t.Fatalf("got sum %d, want %d", total, 5000*5001/2)
				}
				// Empty query, notice.
				if _, err := conn.Exec(ctx, ""); err != nil {
					t.Fatalf("empty query: %v", err)
				}
			})
		}
	}
}

func TestPipelinedBatch(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			p := startProxy(t, proxyOptions{Mode: mode, DBs: []string{db}, Primary: true})
			ctx := testCtx(t)
			conn := p.Connect(t, db, pgx.QueryExecModeExec)
			batch := &pgx.Batch{}
			for i := 0; i < 500; i++ {
				batch.Queue("SELECT $1::int * 2", i)
			}
			br := conn.SendBatch(ctx, batch)
			for i := 0; i < 500; i++ {
				var v int
				if err := br.QueryRow().Scan(&v); err != nil {
					t.Fatalf("batch item %d: %v", i, err)
				}
				if v != i*2 {
					t.Fatalf("batch item %d: got %d, want %d", i, v, i*2)
				}
			}
			if err := br.Close(); err != nil {
				t.Fatal(err)
			}
			// pgconn pipeline with explicit syncs: several units in flight at once.
			pl := conn.PgConn().StartPipeline(ctx)
			for i := 0; i < 50; i++ {
				pl.SendQueryParams("SELECT $1::text", [][]byte{[]byte(fmt.Sprint(i))}, nil, nil, nil)
				if err := pl.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 50; i++ {
				res, err := pl.GetResults()
				if err != nil {
					t.Fatal(err)
				}
				rr := res.(*pgconn.ResultReader).Read()
				if rr.Err != nil || string(rr.Rows[0][0]) != fmt.Sprint(i) {
					t.Fatalf("pipeline item %d: got %q err %v", i, rr.Rows, rr.Err)
				}
				if _, err := pl.GetResults(); err != nil { // the Sync's ReadyForQuery
					t.Fatal(err)
				}
			}
			if err := pl.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTransactionErrorAndRollback(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	for _, mode := range modes {
		for _, em := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			t.Run(fmt.Sprintf("%s/%s", mode, em), func(t *testing.T) {
				p := startProxy(t, proxyOptions{Mode: mode, DBs: []string{db}, Primary: true})
				ctx := testCtx(t)
				conn := p.Connect(t, db, em)
				table := fmt.Sprintf("tx_%s_%d", mode, em)
				if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (id int)"); err != nil {
					t.Fatal(err)
				}
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES (1)"); err != nil {
					t.Fatal(err)
				}
				_, err = tx.Exec(ctx, "SELECT 1/0")
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "22012" {
					t.Fatalf("got %v, want division_by_zero 22012", err)
				}
				if st := conn.PgConn().TxStatus(); st != 'E' {
					t.Fatalf("got transaction status %q, want 'E'", st)
				}
				_, err = tx.Exec(ctx, "SELECT 1")
				if !errors.As(err, &pe) || pe.Code != "25P02" {
					t.Fatalf("got %v, want in_failed_sql_transaction 25P02", err)
				}
				if err := tx.Rollback(ctx); err != nil {
					t.Fatal(err)
				}
				if st := conn.PgConn().TxStatus(); st != 'I' {
					t.Fatalf("got transaction status %q after ROLLBACK, want 'I'", st)
				}
				var n int
				if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 0 {
					t.Fatalf("got %d rows after rollback, want 0", n)
				}
			})
		}
	}
}

func TestCopyBothWays(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			p := startProxy(t, proxyOptions{Mode: mode, DBs: []string{db}, Primary: true})
			ctx := testCtx(t)
			conn := p.Connect(t, db, pgx.QueryExecModeExec)
			table := "copy_" + string(mode)
			if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (id int, name text)"); err != nil {
				t.Fatal(err)
			}
			const n = 20000
			rows := make([][]any, n)
			for i := range rows {
				rows[i] = []any{i, strings.Repeat("y", i%50)}
			}
			got, err := conn.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "name"}, pgx.CopyFromRows(rows))
			if err != nil {
				t.Fatal(err)
			}
			if got != n {
				t.Fatalf("CopyFrom: got %d rows, want %d", got, n)
			}
			// Text COPY FROM STDIN through pgconn.
			in := strings.NewReader("100000\tfrom-text\n100001\tagain\n")
			tag, err := conn.PgConn().CopyFrom(ctx, in, "COPY "+table+" FROM STDIN")
			if err != nil || tag.RowsAffected() != 2 {
				t.Fatalf("COPY FROM STDIN: tag %v err %v", tag, err)
			}
			var out bytes.Buffer
			tag, err = conn.PgConn().CopyTo(ctx, &out, "COPY (SELECT id FROM "+table+" ORDER BY id) TO STDOUT")
			if err != nil {
				t.Fatal(err)
			}
			if tag.RowsAffected() != n+2 || strings.Count(out.String(), "\n") != n+2 {
				t.Fatalf("COPY TO: got %d rows, %d lines, want %d", tag.RowsAffected(), strings.Count(out.String(), "\n"), n+2)
			}
			// A failing COPY FROM leaves the connection usable.
			_, err = conn.PgConn().CopyFrom(ctx, strings.NewReader("not-a-number\tx\n"), "COPY "+table+" FROM STDIN")
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "22P02" {
				t.Fatalf("bad COPY: got %v, want 22P02", err)
			}
			var count int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&count); err != nil || count != n+2 {
				t.Fatalf("after failed COPY: count %d err %v, want %d", count, err, n+2)
			}
		})
	}
}

func TestNoticesAndListenNotify(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{Mode: config.PoolModeSession, DBs: []string{db}, Primary: true})
	ctx := testCtx(t)

	// NoticeResponse reaches the client.
	var notices []string
	cfg, err := pgx.ParseConfig(p.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$"); err != nil {
		t.Fatal(err)
	}
	if len(notices) != 1 || notices[0] != "hello from the server" {
		t.Fatalf("got notices %q, want [hello from the server]", notices)
	}

	// LISTEN/NOTIFY in session mode.
	listener := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	if _, err := listener.Exec(ctx, "LISTEN pgswitch_test"); err != nil {
		t.Fatal(err)
	}
	notifier := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	if _, err := notifier.Exec(ctx, "NOTIFY pgswitch_test, 'payload-1'"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "pgswitch_test" || n.Payload != "payload-1" {
		t.Fatalf("got notification %s/%s, want pgswitch_test/payload-1", n.Channel, n.Payload)
	}
}

// TestFunctionCall: the fastpath FunctionCall message is answered like a
// Query and, in transaction mode, gives the server connection back.
func TestFunctionCall(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			p := startProxy(t, proxyOptions{Mode: mode, PoolSize: 1, DBs: []string{db}, Primary: true})
			ctx := testCtx(t)
			conn := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			var oid uint32
			if err := conn.QueryRow(ctx, "SELECT 'int4pl'::regproc::oid").Scan(&oid); err != nil {
				t.Fatal(err)
			}
			hj, err := conn.PgConn().Hijack()
			if err != nil {
				t.Fatal(err)
			}
			defer hj.Conn.Close()
			fe := hj.Frontend
			for i := int32(0); i < 3; i++ {
				arg := func(v int32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }
				fe.Send(&pgproto3.FunctionCall{Function: oid, ArgFormatCodes: []uint16{1},
					Arguments: [][]byte{arg(40), arg(i)}, ResultFormatCode: 1})
				if err := fe.Flush(); err != nil {
					t.Fatal(err)
				}
				hj.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				var got []byte
				for {
					m, err := fe.Receive()
					if err != nil {
						t.Fatalf("call %d: %v", i, err)
					}
					if r, ok := m.(*pgproto3.FunctionCallResponse); ok {
						got = append([]byte(nil), r.Result...)
					}
					if e, ok := m.(*pgproto3.ErrorResponse); ok {
						t.Fatalf("call %d: %s %s", i, e.Code, e.Message)
					}
					if _, ok := m.(*pgproto3.ReadyForQuery); ok {
						break
					}
				}
				if len(got) != 4 || int32(got[3])|int32(got[2])<<8 != 40+i {
					t.Fatalf("call %d: int4pl(40, %d) = %v", i, i, got)
				}
			}
			if mode == config.PoolModeTransaction {
				// The single server connection went back: another client gets it.
				other := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
				qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				if _, err := other.Exec(qctx, "SELECT 1"); err != nil {
					t.Fatalf("after FunctionCall, another client: %v", err)
				}
			}
		})
	}
}

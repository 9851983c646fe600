package integration

// Session state under transaction pooling, as issue 11 found it broken:
// several clients share few server connections (a pool of 1 or 2), and each
// must see exactly what a direct connection would show it.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/config"
)

// txProxy runs pgswitch in transaction mode in front of the primary alone,
// with size server connections.
func txProxy(t *testing.T, db string, size int) *proxy {
	t.Helper()
	return startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: size, DBs: []string{db}, Primary: true})
}

// connectParams opens a simple-protocol pgx connection to url with extra
// startup parameters, closed when the test ends.
func connectParams(t *testing.T, url string, params map[string]string) (*pgx.Conn, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { conn.Close(context.Background()) })
	}
	return conn, err
}

func directURL(db string) string { return cl.Primary.DSN(cl.User, cl.Password, db) }

func mustExec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(testCtx(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func mustString(t *testing.T, c *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := c.QueryRow(testCtx(t), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func codeOf(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestConcurrentSetsPsql: 8 psql clients at once over 2 server
// connections, each with its own search_path and client_min_messages,
// read them back 50 times: every read is the client's own, and no NOTICE
// that client_min_messages silences comes through.
func TestConcurrentSetsPsql(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	const clients, reads = 8, 50
	for i := range clients {
		mustExec(t, setup, fmt.Sprintf("CREATE SCHEMA probe_schema_%d", i))
	}
	p := txProxy(t, db, 2)
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		var b strings.Builder
		fmt.Fprintf(&b, "SET client_min_messages TO 'warning'; SET search_path TO probe_schema_%d, public;\n", i)
		for range reads {
			b.WriteString("SELECT current_setting('search_path');\nDO $$BEGIN RAISE NOTICE 'leaked notice'; END$$;\n")
		}
		file := filepath.Join(dir, fmt.Sprintf("c%d.sql", i))
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, clientTool(t, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", file)
			cmd.Env = toolEnv(p, db)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				errs <- fmt.Errorf("client %d: %v: %s", i, err, stderr.String())
				return
			}
			want := fmt.Sprintf("probe_schema_%d, public", i)
			var own, other int
			for _, line := range strings.Split(stdout.String(), "\n") {
				switch {
				case line == want:
					own++
				case strings.Contains(line, "probe_schema") || strings.Contains(line, "$user"):
					other++
				}
			}
			if own != reads || other != 0 || strings.Contains(stderr.String(), "leaked notice") {
				errs <- fmt.Errorf("client %d: %d of %d reads its own search_path, %d someone else's or the default; stderr %q",
					i, own, reads, other, stderr.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestConcurrentSetsPgx: 20 pgx clients over 2 server connections, each
// setting four parameters four ways (plain SET, hinted SET, SET in a
// multi-statement Query, set_config), read them back 40 times each.
func TestConcurrentSetsPgx(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	const clients, reads = 20, 40
	for i := range clients {
		mustExec(t, setup, fmt.Sprintf("CREATE SCHEMA s_%d", i))
	}
	p := txProxy(t, db, 2)
	ctx := testCtx(t)
	var wrong atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			// Values PostgreSQL shows as they are set (1100kB, not 1MB).
			want := [4]string{fmt.Sprintf("%dkB", 1100+i), fmt.Sprintf("%dms", 10001+i), fmt.Sprintf("app_%d", i), fmt.Sprintf("s_%d, public", i)}
			for _, sql := range []string{
				fmt.Sprintf("SET work_mem = '%s'", want[0]),
				fmt.Sprintf("/* pgswitch:primary */ SET statement_timeout = '%s'", want[1]),
				fmt.Sprintf("SET application_name = '%s'; SELECT 1", want[2]),
				fmt.Sprintf("SELECT set_config('search_path', '%s', false)", want[3]),
			} {
				if _, err := conn.Exec(ctx, sql); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("client %d: %s: %w", i, sql, err))
					return
				}
			}
			for range reads {
				var got [4]string
				if err := conn.QueryRow(ctx, `SELECT current_setting('work_mem'), current_setting('statement_timeout'),
					current_setting('application_name'), current_setting('search_path')`).Scan(&got[0], &got[1], &got[2], &got[3]); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("client %d: %w", i, err))
					return
				}
				if got != want {
					wrong.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("client %d read %q, want %q", i, got, want))
				}
			}
		}()
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		t.Fatalf("%d of %d reads wrong; first: %v", wrong.Load(), clients*reads, err)
	}
}

// TestSetsRecordedEveryWay: settings a client changes however it changes
// them follow it, and never the next client on the same server connection.
func TestSetsRecordedEveryWay(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	mustExec(t, setup, "CREATE TABLE w (x int)")
	cases := []struct {
		name, sql string
		param     string
		want      string
	}{
		{"multi-statement with other work", "SET work_mem = '8MB'; INSERT INTO w VALUES (1)", "work_mem", "8MB"},
		{"inside a committed transaction", "BEGIN; SET work_mem = '9MB'; COMMIT", "work_mem", "9MB"},
		{"hinted", "/* pgswitch:primary */ SET work_mem = '7MB'", "work_mem", "7MB"},
		{"set_config in a SELECT", "SELECT set_config('work_mem', '10MB', false)", "work_mem", "10MB"},
		{"set_config in a DO block", "DO $$BEGIN PERFORM set_config('work_mem', '11MB', false); END$$", "work_mem", "11MB"},
		{"hinted session characteristics", "/* pgswitch:primary */ SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
			"default_transaction_read_only", "on"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := txProxy(t, db, 1) // one server connection: b surely gets a's
			a := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			b := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			direct, err := connectParams(t, directURL(db), nil)
			if err != nil {
				t.Fatal(err)
			}
			def := mustString(t, direct, "SELECT current_setting($1)", tc.param)
			mustExec(t, a, tc.sql)
			mustExec(t, direct, tc.sql)
			for i := range 3 {
				if got := mustString(t, b, "SELECT current_setting($1)", tc.param); got != def {
					t.Fatalf("round %d: the next client on the connection sees %s = %q, want the default %q", i, tc.param, got, def)
				}
				got := mustString(t, a, "SELECT current_setting($1)", tc.param)
				if want := mustString(t, direct, "SELECT current_setting($1)", tc.param); got != want || got != tc.want {
					t.Fatalf("round %d: the client sees %s = %q, a direct connection %q (want %q)", i, tc.param, got, want, tc.want)
				}
			}
			if tc.param == "default_transaction_read_only" {
				// The client cannot write, as directly; the next one can.
				_, err := a.Exec(testCtx(t), "INSERT INTO w VALUES (2)")
				_, derr := direct.Exec(testCtx(t), "INSERT INTO w VALUES (2)")
				if codeOf(err) != "25006" || codeOf(derr) != "25006" {
					t.Fatalf("INSERT after READ ONLY: got %v, directly %v; want 25006", err, derr)
				}
				mustExec(t, b, "INSERT INTO w VALUES (3)")
			}
		})
	}
}

// TestRolePins: SET ROLE and SET SESSION AUTHORIZATION keep the client on
// its server connection; nobody else runs as that role, then or after the
// client left.
func TestRolePins(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	mustExec(t, setup, "DROP ROLE IF EXISTS pgswitch_probe_role")
	mustExec(t, setup, "CREATE ROLE pgswitch_probe_role")
	t.Cleanup(func() { setup.Exec(context.Background(), "DROP ROLE IF EXISTS pgswitch_probe_role") })
	for _, sql := range []string{"SET ROLE pgswitch_probe_role", "SET SESSION AUTHORIZATION pgswitch_probe_role",
		"/* pgswitch:primary */ SET ROLE pgswitch_probe_role", "SELECT set_config('role', 'pgswitch_probe_role', false)"} {
		t.Run(sql, func(t *testing.T) {
			p := txProxy(t, db, 2)
			a := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			mustExec(t, a, sql)
			others := make([]*pgx.Conn, 3)
			for i := range others {
				others[i] = p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			}
			for round := range 4 {
				if got := mustString(t, a, "SELECT current_user::text"); got != "pgswitch_probe_role" {
					t.Fatalf("round %d: the client runs as %q after %s", round, got, sql)
				}
				for i, o := range others {
					if got := mustString(t, o, "SELECT current_user::text"); got != cl.User {
						t.Fatalf("round %d: client %d runs as %q, want %q", round, i, got, cl.User)
					}
				}
			}
			pinned := false
			for _, ci := range p.R.Clients() {
				pinned = pinned || ci.Pinned
			}
			if !pinned {
				t.Fatal("SHOW CLIENTS shows no pinned client")
			}
			a.Close(testCtx(t))
			// Both server connections serve the others now: none is left
			// with the role.
			for round := range 6 {
				for i, o := range others {
					if got := mustString(t, o, "SELECT current_user::text"); got != cl.User {
						t.Fatalf("after the client left, round %d: client %d runs as %q", round, i, got)
					}
				}
			}
		})
	}
}

// TestHintedResetKeepsRecord: a hinted RESET is recorded, so the next
// client's SET of the same value is not skipped as "already there".
func TestHintedResetKeepsRecord(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := txProxy(t, db, 1)
	ctx := testCtx(t)
	a := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	b := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	mustExec(t, a, "SET statement_timeout = '50ms'")
	mustExec(t, a, "/* pgswitch:primary */ RESET statement_timeout")
	if _, err := a.Exec(ctx, "SELECT pg_sleep(0.2)"); err != nil {
		t.Fatalf("after RESET the client still has a timeout: %v", err)
	}
	mustExec(t, b, "SET statement_timeout = '50ms'")
	if _, err := b.Exec(ctx, "SELECT pg_sleep(2)"); codeOf(err) != "57014" {
		t.Fatalf("the next client's statement_timeout of 50ms: got %v, want 57014", err)
	}
	if _, err := a.Exec(ctx, "SELECT pg_sleep(0.2)"); err != nil {
		t.Fatalf("the other client inherited a timeout: %v", err)
	}
}

// TestStartupParametersLikePostgres: RESET returns to the startup value, an
// explicit parameter wins over options, and an unknown parameter or a bad
// value fails the login, all as a direct connection shows.
func TestStartupParametersLikePostgres(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			size := 1 // transaction mode: the clients share one server connection
			if mode == config.PoolModeSession {
				size = 8
			}
			p := startProxy(t, proxyOptions{Mode: mode, PoolSize: size, DBs: []string{db}, Primary: true})
			params := map[string]string{"DateStyle": "Postgres, MDY"}
			via, err := connectParams(t, p.URL(db), params)
			if err != nil {
				t.Fatal(err)
			}
			other := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			direct, err := connectParams(t, directURL(db), params)
			if err != nil {
				t.Fatal(err)
			}
			for _, steps := range [][]string{
				{"SET datestyle TO iso", "RESET datestyle"},
				{"SET datestyle TO iso", "RESET ALL"},
				{"SET datestyle TO iso", "SET datestyle TO DEFAULT"},
				{"SET datestyle TO iso", "DISCARD ALL"},
				{"SET datestyle TO iso; RESET datestyle"},
			} {
				for _, sql := range steps {
					mustExec(t, via, sql)
					mustExec(t, direct, sql)
					mustExec(t, other, "SELECT 1") // takes the connection in between
				}
				want := mustString(t, direct, "SHOW datestyle")
				if got := mustString(t, via, "SHOW datestyle"); got != want || want != "Postgres, MDY" {
					t.Fatalf("after %q: datestyle %q, directly %q", steps, got, want)
				}
				if got := via.PgConn().ParameterStatus("DateStyle"); got != want {
					t.Fatalf("after %q: DateStyle reported as %q, want %q", steps, got, want)
				}
			}
			// An explicit client_encoding wins over options.
			enc := map[string]string{"client_encoding": "UTF8", "options": "-c client_encoding=SQL_ASCII"}
			c1, err := connectParams(t, p.URL(db), enc)
			if err != nil {
				t.Fatal(err)
			}
			c2, err := connectParams(t, directURL(db), enc)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := mustString(t, c1, "SHOW client_encoding"), mustString(t, c2, "SHOW client_encoding"); got != want {
				t.Fatalf("client_encoding %q, directly %q", got, want)
			}
			// Refused as PostgreSQL refuses them.
			for _, bad := range []map[string]string{
				{"nosuchparam": "1"},
				{"work_mem": "lots"},
				{"options": "-c nosuch=1"},
				{"options": "-c work_mem=lots"},
			} {
				_, err := connectParams(t, p.URL(db), bad)
				_, derr := connectParams(t, directURL(db), bad)
				if code := codeOf(err); code == "" || code != codeOf(derr) {
					t.Fatalf("startup %v: got %v, directly %v", bad, err, derr)
				}
			}
			// A custom setting with a dot is fine, as directly.
			if c, err := connectParams(t, p.URL(db), map[string]string{"myapp.tenant": "t1"}); err != nil {
				t.Fatalf("custom startup setting refused: %v", err)
			} else if got := mustString(t, c, "SELECT current_setting('myapp.tenant')"); got != "t1" {
				t.Fatalf("myapp.tenant = %q", got)
			}
		})
	}
}

// rawConn opens a connection to url and hijacks it for raw protocol.
func rawConn(t *testing.T, url string) (*pgproto3.Frontend, func(what string, n int) []pgproto3.BackendMessage) {
	t.Helper()
	pc, err := pgconn.Connect(testCtx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hj.Conn.Close() })
	fe := hj.Frontend
	// recv reads messages up to and including the n-th ReadyForQuery.
	recv := func(what string, n int) []pgproto3.BackendMessage {
		t.Helper()
		var out []pgproto3.BackendMessage
		hj.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for n > 0 {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("%s: after %s: %v", what, summary(out), err)
			}
			switch m := m.(type) {
			case *pgproto3.ReadyForQuery:
				n--
				out = append(out, &pgproto3.ReadyForQuery{TxStatus: m.TxStatus})
			case *pgproto3.ErrorResponse:
				c := *m
				out = append(out, &c)
			case *pgproto3.ParseComplete, *pgproto3.BindComplete, *pgproto3.CloseComplete, *pgproto3.NoData,
				*pgproto3.CommandComplete, *pgproto3.DataRow, *pgproto3.RowDescription, *pgproto3.ParameterDescription:
				out = append(out, m)
			}
		}
		return out
	}
	return fe, recv
}

// summary names messages by type, errors by SQLSTATE: "1 E(42601) Z(I)".
func summary(msgs []pgproto3.BackendMessage) string {
	var b []string
	for _, m := range msgs {
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			b = append(b, "E("+m.Code+")")
		case *pgproto3.ReadyForQuery:
			b = append(b, "Z("+string(m.TxStatus)+")")
		default:
			name := fmt.Sprintf("%T", m)
			b = append(b, name[strings.LastIndex(name, ".")+1:])
		}
	}
	return strings.Join(b, " ")
}

// TestParseAnsweredTruthfully: a Parse is answered as PostgreSQL answers
// it: syntax errors at Parse, a taken name with 42P05 (after the syntax),
// a malformed message refused; compared message by message with a direct
// connection, while another client shares the one server connection.
func TestParseAnsweredTruthfully(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := txProxy(t, db, 1)
	busy := p.Connect(t, db, pgx.QueryExecModeCacheStatement)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // another client keeps using the server connection
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var n int
			busy.QueryRow(context.Background(), "SELECT $1::int", i).Scan(&n)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	parse := func(name, query string) *pgproto3.Parse { return &pgproto3.Parse{Name: name, Query: query} }
	scripts := []struct {
		name string
		msgs []pgproto3.FrontendMessage
		rfqs int
	}{
		{"invalid SQL", []pgproto3.FrontendMessage{parse("bad", "SELEC 1"), &pgproto3.Sync{}}, 1},
		{"valid then reused", []pgproto3.FrontendMessage{parse("s", "SELECT 1"), &pgproto3.Sync{}, parse("s", "SELECT 2"), &pgproto3.Sync{}}, 2},
		{"reused with invalid SQL", []pgproto3.FrontendMessage{parse("s", "SELECT 1"), &pgproto3.Sync{}, parse("s", "SELEC 2"), &pgproto3.Sync{}}, 2},
		{"reused in one batch", []pgproto3.FrontendMessage{parse("s", "SELECT 1"), parse("s", "SELECT 1"),
			&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, 1},
		{"closed and reused", []pgproto3.FrontendMessage{parse("s", "SELECT 1"), &pgproto3.Close{ObjectType: 'S', Name: "s"},
			parse("s", "SELECT 2"), &pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{}}, 1},
		{"reused inside a transaction", []pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN"}, parse("s", "SELECT 1"),
			&pgproto3.Sync{}, parse("s", "SELECT 1"), &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 1"}, &pgproto3.Query{String: "ROLLBACK"}}, 5},
		{"unknown statement", []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "nosuch"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, 1},
		{"unknown statement described", []pgproto3.FrontendMessage{&pgproto3.Describe{ObjectType: 'S', Name: "nosuch"}, &pgproto3.Sync{}}, 1},
	}
	for _, sc := range scripts {
		t.Run(sc.name, func(t *testing.T) {
			var got [2]string
			for i, url := range []string{p.URL(db), directURL(db)} {
				fe, recv := rawConn(t, url)
				for _, m := range sc.msgs {
					fe.Send(m)
				}
				if err := fe.Flush(); err != nil {
					t.Fatal(err)
				}
				got[i] = summary(recv(sc.name, sc.rfqs))
			}
			if got[0] != got[1] {
				t.Fatalf("through pgswitch: %s\ndirectly:        %s", got[0], got[1])
			}
		})
	}
	// A malformed Parse (a stray byte after the parameter types) is refused
	// as directly, and the client's next statement works.
	var got [2]string
	for i, url := range []string{p.URL(db), directURL(db)} {
		fe, recv := rawConn(t, url)
		bad, _ := (&pgproto3.Parse{Name: "m", Query: "SELECT 1"}).Encode(nil)
		bad = append(bad, 0)
		bad[4]++ // the length covers the stray byte
		if err := sendRaw(fe, bad); err != nil {
			t.Fatal(err)
		}
		fe.Send(&pgproto3.Sync{})
		fe.Send(&pgproto3.Query{String: "SELECT 1"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		got[i] = summary(recv("malformed Parse", 2))
	}
	if got[0] != got[1] || !strings.Contains(got[0], "E(08P01)") {
		t.Fatalf("malformed Parse through pgswitch: %s\ndirectly: %s", got[0], got[1])
	}
}

// sendRaw writes bytes as they are, after what fe buffered.
func sendRaw(fe *pgproto3.Frontend, b []byte) error {
	if err := fe.Flush(); err != nil {
		return err
	}
	return fe.SendUnbufferedEncodedCopyData(b)
}

// TestStatementsAfterDDL: a statement shared by text never outlives a
// schema change made through pgswitch: after DROP TYPE and CREATE TYPE, a
// new Parse of the same text works at once, as directly. Made behind
// pgswitch's back, the change costs at most one error, then a fresh
// statement. Deallocated SQL statements are gone from
// pg_prepared_statements, and each client sees only its own.
func TestStatementsAfterDDL(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	mustExec(t, setup, "CREATE TYPE mood AS ENUM ('a', 'b')")
	p := txProxy(t, db, 1)
	ctx := testCtx(t)
	const q = "SELECT $1::mood::text, $1::mood = 'a'::mood"
	use := func(c *pgx.Conn, v string) error {
		var s string
		var eq bool
		if err := c.QueryRow(ctx, q, v).Scan(&s, &eq); err != nil {
			return err
		}
		if s != v || eq != (v == "a") {
			return fmt.Errorf("got %q %v for %q", s, eq, v)
		}
		return nil
	}
	a := p.Connect(t, db, pgx.QueryExecModeCacheStatement)
	if err := use(a, "a"); err != nil {
		t.Fatal(err)
	}
	// Through pgswitch: the next client's Parse gets a fresh statement.
	b := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	mustExec(t, b, "DROP TYPE mood; CREATE TYPE mood AS ENUM ('x', 'a')")
	c := p.Connect(t, db, pgx.QueryExecModeCacheStatement)
	for _, v := range []string{"x", "a", "x"} {
		if err := use(c, v); err != nil {
			t.Fatalf("after DROP/CREATE TYPE through pgswitch: %v", err)
		}
	}
	// Behind pgswitch's back: one error at most, then it works.
	mustExec(t, setup, "DROP TYPE mood; CREATE TYPE mood AS ENUM ('y', 'a')")
	d := p.Connect(t, db, pgx.QueryExecModeCacheStatement)
	errs := 0
	for _, v := range []string{"y", "a", "y", "a"} {
		if err := use(d, v); err != nil {
			errs++
			if errs > 1 {
				t.Fatalf("after DROP/CREATE TYPE directly, a second error: %v", err)
			}
		}
	}

	// pg_prepared_statements, as each client has it.
	e := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	f := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	direct, err := connectParams(t, directURL(db), nil)
	if err != nil {
		t.Fatal(err)
	}
	sqlNames := func(c *pgx.Conn) string {
		return mustString(t, c, "SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM pg_prepared_statements WHERE from_sql")
	}
	for i, sql := range []string{"PREPARE q1 AS SELECT 1", "PREPARE q2 AS SELECT 2", "DEALLOCATE q1", "PREPARE q3 (int) AS SELECT $1"} {
		mustExec(t, e, sql)
		mustExec(t, direct, sql)
		mustExec(t, f, fmt.Sprintf("PREPARE f_%d AS SELECT 0", i))
		if got, want := sqlNames(e), sqlNames(direct); got != want {
			t.Fatalf("after %q: pg_prepared_statements shows %q, directly %q", sql, got, want)
		}
	}
	if got := sqlNames(f); got != "f_0,f_1,f_2,f_3" {
		t.Fatalf("the other client sees %q", got)
	}
	if _, err := e.Exec(ctx, "EXECUTE q1"); codeOf(err) != "26000" {
		t.Fatalf("EXECUTE of a deallocated statement: %v, want 26000", err)
	}
	if _, err := e.Exec(ctx, "EXECUTE f_2"); codeOf(err) != "26000" {
		t.Fatalf("EXECUTE of another client's statement: %v, want 26000", err)
	}
}

// TestTempObjectsPin: a temporary object of any kind keeps its client on
// the server connection that has it.
func TestTempObjectsPin(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	cases := []struct{ create, use string }{
		{"CREATE TYPE pg_temp.pair AS (a int, b int)", "SELECT (ROW(1, 2)::pg_temp.pair).b::text"},
		{"CREATE FUNCTION pg_temp.two() RETURNS int LANGUAGE sql AS 'SELECT 2'", "SELECT pg_temp.two()::text"},
		{"CREATE TEMP SEQUENCE tseq START 2", "SELECT last_value::text FROM tseq"},
		{"CREATE TABLE pg_temp.tt AS SELECT 2 AS x", "SELECT x::text FROM pg_temp.tt"},
		{"CREATE DOMAIN pg_temp.two AS int CHECK (VALUE = 2)", "SELECT 2::pg_temp.two::text"},
	}
	for _, tc := range cases {
		t.Run(tc.create, func(t *testing.T) {
			p := txProxy(t, db, 2)
			ctx := testCtx(t)
			a := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			b := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
			mustExec(t, a, tc.create)
			for i := range 4 {
				// b takes a server connection now and then, in a transaction.
				var tx pgx.Tx
				if i%2 == 0 {
					var err error
					if tx, err = b.Begin(ctx); err != nil {
						t.Fatal(err)
					}
					mustString(t, b, "SELECT 'b'")
				}
				if got := mustString(t, a, tc.use); got != "2" {
					t.Fatalf("round %d: %s gave %q", i, tc.use, got)
				}
				if tx != nil {
					tx.Rollback(ctx)
				}
			}
		})
	}
}

// cancelConfig connects through url with pgx cancelling a query on context
// end with a CancelRequest (the connection stays usable), as the issue's
// client did.
func cancelConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, CancelRequestDelay: 0, DeadlineDelay: 5 * time.Second}
	}
	conn, err := pgx.ConnectConfig(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestCancelNeverCrosses: a client whose queries time out after 20 ms sends
// cancel after cancel; another client sharing the one server connection
// never has a query cancelled. A cancel for a client waiting in the queue
// ends its wait with 57014 at once.
func TestCancelNeverCrosses(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := txProxy(t, db, 1)
	canceller := cancelConn(t, p.URL(db))
	bystander := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	deadline := time.Now().Add(4 * time.Second)
	var cancels, crossed, done atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			_, err := canceller.Exec(ctx, "SELECT pg_sleep(0.03)")
			cancel()
			if codeOf(err) == "57014" {
				cancels.Add(1)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for time.Now().Before(deadline) {
			_, err := bystander.Exec(context.Background(), "SELECT pg_sleep(0.005)")
			switch {
			case codeOf(err) == "57014":
				crossed.Add(1)
			case err == nil:
				done.Add(1)
			default:
				t.Errorf("bystander: %v", err)
				return
			}
		}
	}()
	wg.Wait()
	t.Logf("%d cancels, %d bystander queries", cancels.Load(), done.Load())
	if cancels.Load() == 0 || done.Load() == 0 {
		t.Fatalf("nothing to judge: %d cancels, %d bystander queries", cancels.Load(), done.Load())
	}
	if n := crossed.Load(); n != 0 {
		t.Fatalf("another client's cancel stopped the bystander's query %d times", n)
	}

	// A cancel while waiting in the queue.
	holder := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
	ctx := testCtx(t)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustString(t, holder, "SELECT 'holding'")
	waiter := cancelConn(t, p.URL(db))
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	_, err = waiter.Exec(wctx, "SELECT 1")
	cancel()
	if codeOf(err) != "57014" {
		t.Fatalf("cancel while queued: got %v, want 57014", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the queued cancel took %v (query_wait is 20s)", d)
	}
	tx.Rollback(ctx)
	if got := mustString(t, waiter, "SELECT 'after'"); got != "after" {
		t.Fatal(got)
	}
}

// TestServerFatalOnce: when the server ends a session (pg_terminate_backend),
// the client gets the server's FATAL and then the end of the connection,
// exactly as directly: no second FATAL.
func TestServerFatalOnce(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := txProxy(t, db, 2)
	killer := primaryConn(t, db)
	var got [2]string
	for i, url := range []string{p.URL(db), directURL(db)} {
		fe, recv := rawConn(t, url)
		fe.Send(&pgproto3.Query{String: "BEGIN"})
		fe.Send(&pgproto3.Query{String: "SELECT pg_backend_pid()"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		var pid string
		for _, m := range recv("BEGIN and pid", 2) {
			if dr, ok := m.(*pgproto3.DataRow); ok {
				pid = string(dr.Values[0])
			}
		}
		fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(30)"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "the sleep running", func() error {
			var n int
			killer.QueryRow(testCtx(t), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query = 'SELECT pg_sleep(30)'", pid).Scan(&n)
			if n != 1 {
				return errors.New("not yet")
			}
			return nil
		})
		mustExec(t, killer, "SELECT pg_terminate_backend($1::int)", pid)
		var msgs []string
		for {
			m, err := fe.Receive()
			if err != nil {
				break // the end of the connection
			}
			if e, ok := m.(*pgproto3.ErrorResponse); ok {
				msgs = append(msgs, e.Severity+" "+e.Code)
			}
		}
		got[i] = strings.Join(msgs, "; ")
	}
	if got[0] != got[1] || got[0] != "FATAL 57P01" {
		t.Fatalf("through pgswitch the client got %q, directly %q; want exactly one FATAL 57P01", got[0], got[1])
	}
}

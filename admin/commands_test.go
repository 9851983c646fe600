package admin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/router"
	"github.com/pgswitch/pgswitch/wire"
)

// TestCommandTable: every command of the table has its help line and a
// handler, parses as itself, and SHOW HELP lists exactly the table, in its
// order.
func TestCommandTable(t *testing.T) {
	seen := map[string]bool{}
	for i := range commands {
		s := &commands[i]
		words := strings.Fields(s.name)
		if len(words) < 1 || len(words) > 2 || s.name != strings.ToUpper(s.name) || strings.Join(words, " ") != s.name {
			t.Errorf("%q: want one or two upper-case words", s.name)
		}
		if seen[s.name] {
			t.Errorf("%q is in the table twice", s.name)
		}
		seen[s.name] = true
		if s.run == nil {
			t.Errorf("%q has no handler", s.name)
		}
		if _, ok := arity[s.args]; !ok {
			t.Errorf("%q: arguments %q, want \"\", \"db\" or \"[db]\"", s.name, s.args)
		}
		if words[0] == "SHOW" && s.role != statsRole {
			t.Errorf("%q: a SHOW command stats users may not run", s.name)
		}
		if words[0] != "SHOW" && s.role != adminRole {
			t.Errorf("%q: a command that changes something stats users may run", s.name)
		}
		typed := strings.ToLower(s.name)
		if s.args == "db" {
			typed += ` "App"`
		}
		cmd, err := parse(typed + ";")
		if err != nil || cmd.spec != s {
			t.Errorf("parse(%q) = %+v, %v; want the table's %q", typed, cmd, err, s.name)
		}
	}

	msgs, err := showHelp(nil, context.Background(), command{})
	if err != nil || len(msgs) != 2 {
		t.Fatalf("SHOW HELP: %v, %v", msgs, err)
	}
	notice, ok := msgs[0].(*pgproto3.NoticeResponse)
	if !ok {
		t.Fatalf("SHOW HELP answered %T first, want a notice", msgs[0])
	}
	// Read the help back into the commands it names, with their arguments.
	var listed []string
	for _, line := range strings.Split(notice.Detail, "\n") {
		line, ok := strings.CutPrefix(line, "\t")
		if !ok {
			t.Errorf("SHOW HELP line %q is not indented", line)
		}
		name, args, _ := strings.Cut(line, " ")
		if strings.Contains(args, "|") { // SHOW HELP|VERSION|…
			for _, what := range strings.Split(args, "|") {
				listed = append(listed, name+" "+what+" ")
			}
			continue
		}
		listed = append(listed, name+" "+args)
	}
	var want []string
	for _, s := range commands {
		want = append(want, s.name+" "+s.args)
	}
	if !slices.Equal(listed, want) {
		t.Errorf("SHOW HELP lists\n%q\nwant the table\n%q", listed, want)
	}
	for _, line := range helpLines {
		if line == "" {
			t.Error("an empty help line")
		}
	}
}

// TestHelpLines: SHOW HELP, and the detail of an unknown command, tell the
// commands as they always have (scripts and people read them).
func TestHelpLines(t *testing.T) {
	want := []string{
		"SHOW HELP|VERSION|PROCESS|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|STATS|STATS_TOTALS|STATS_AVERAGES|LISTS|HEALTH|ROUTES",
		"PAUSE [db]", "RESUME [db]", "RECONNECT [db]", "WAIT_CLOSE [db]",
		"KILL db", "DISABLE db", "ENABLE db", "RELOAD", "SHUTDOWN", "UPGRADE",
	}
	if !slices.Equal(helpLines, want) {
		t.Errorf("help lines\n%q\nwant\n%q", helpLines, want)
	}
}

// consoleTestConfig has one database whose server does not answer, an
// admin user and a stats user.
const consoleTestConfig = `databases: {app: {servers: [{host: 127.0.0.1, port: 1}]}}
users: {admin: {password: a}, watcher: {password: w}}
admin: {admin_users: [admin], stats_users: [watcher]}
`

// newTestConsole returns a console of a router that serves no clients.
func newTestConsole(t *testing.T) (*Console, *router.Router) {
	t.Helper()
	cfg, err := config.Parse([]byte(consoleTestConfig))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := router.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	con := New(r, Options{Version: "test", Log: log,
		Load:     func() (*config.Config, error) { return config.Parse([]byte(consoleTestConfig)) },
		Shutdown: func() {}, Upgrade: func() (int, error) { return 12345, nil }})
	return con, r
}

// exec runs sql as c and returns the messages the console answered.
func exec(t *testing.T, con *Console, c *router.AdminClient, sql string) []pgproto3.BackendMessage {
	t.Helper()
	var buf bytes.Buffer
	be := pgproto3.NewBackend(nil, &buf)
	con.run(be, c, sql)
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(&buf, io.Discard)
	var out []pgproto3.BackendMessage
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			return out
		}
		out = append(out, m)
	}
}

func errorOf(msgs []pgproto3.BackendMessage) *pgproto3.ErrorResponse {
	for _, m := range msgs {
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			return e
		}
	}
	return nil
}

// invocation is how the tests type command s.
func invocation(s *spec) string {
	if s.args == "db" {
		return s.name + " app"
	}
	return s.name
}

// TestStatsUserRefused: a stats user may run every SHOW command and no
// other: those are refused with 42501 and change nothing; an admin user
// runs every command of the table.
func TestStatsUserRefused(t *testing.T) {
	con, r := newTestConsole(t)
	ctx := context.Background()
	watcher := &router.AdminClient{User: "watcher", Database: "pgswitch", Ctx: ctx}
	admin := &router.AdminClient{User: "admin", Database: "pgswitch", Admin: true, Ctx: ctx}
	for i := range commands {
		s := &commands[i]
		sql := invocation(s)
		e := errorOf(exec(t, con, watcher, sql))
		switch {
		case s.role == adminRole && (e == nil || e.Code != wire.CodeInsufficientPrivilege):
			t.Errorf("stats user %q: got %+v, want 42501", sql, e)
		case s.role == statsRole && e != nil:
			t.Errorf("stats user %q: got %+v, want an answer", sql, e)
		}
		if r.Paused("app") {
			t.Fatalf("stats user %q paused the database", sql)
		}
	}
	// The refusal comes before the arguments are looked at.
	if e := errorOf(exec(t, con, watcher, "KILL no_such_db")); e == nil || e.Code != wire.CodeInsufficientPrivilege {
		t.Errorf("stats user KILL of an unknown database: got %+v, want 42501", e)
	}
	for i := range commands {
		s := &commands[i]
		sql := invocation(s)
		msgs := exec(t, con, admin, sql)
		if e := errorOf(msgs); e != nil {
			t.Errorf("admin %q: got %+v", sql, e)
			continue
		}
		done, ok := msgs[len(msgs)-1].(*pgproto3.CommandComplete)
		if verb, _, _ := strings.Cut(s.name, " "); !ok || string(done.CommandTag) != verb {
			t.Errorf("admin %q: ended with %+v, want CommandComplete %s", sql, msgs[len(msgs)-1], verb)
		}
	}
}

// TestShowColumns: every SHOW answers with the columns it always had, by
// name, order and type: scripts, pgbouncer_exporter and `pgswitch status`
// read them. testdata/show_columns.golden was written from the console
// before its commands became a table.
func TestShowColumns(t *testing.T) {
	want, err := os.ReadFile("testdata/show_columns.golden")
	if err != nil {
		t.Fatal(err)
	}
	con, _ := newTestConsole(t)
	admin := &router.AdminClient{User: "admin", Database: "pgswitch", Admin: true, Ctx: context.Background()}
	types := map[uint32]string{oidText: "text", oidInt8: "int8", oidFloat8: "float8"}
	var got strings.Builder
	for _, s := range commands {
		if !strings.HasPrefix(s.name, "SHOW ") || s.name == "SHOW HELP" {
			continue
		}
		msgs := exec(t, con, admin, s.name)
		rd, ok := msgs[0].(*pgproto3.RowDescription)
		if !ok {
			t.Fatalf("%s answered %T first, want RowDescription", s.name, msgs[0])
		}
		got.WriteString(s.name + "\n")
		for _, f := range rd.Fields {
			fmt.Fprintf(&got, "\t%s %s\n", f.Name, types[f.DataTypeOID])
		}
	}
	if got.String() != string(want) {
		t.Errorf("SHOW columns differ from testdata/show_columns.golden; got:\n%s", got.String())
	}
}

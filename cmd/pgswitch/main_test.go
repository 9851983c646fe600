package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgswitch-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pgswitch")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build pgswitch: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
	return string(out), err
}

func TestVersion(t *testing.T) {
	out, err := runCLI(t, "version")
	if err != nil || !strings.HasPrefix(out, "pgswitch "+version) {
		t.Fatalf("got %q (%v), want pgswitch %s", out, err, version)
	}
}

func TestHelpForEveryCommand(t *testing.T) {
	for _, c := range []string{"serve", "check-config", "version", "demo", "classify",
		"status", "pools", "servers", "clients", "stats", "pause", "resume", "reload"} {
		out, err := runCLI(t, c, "--help")
		if err != nil {
			t.Fatalf("%s --help: %v", c, err)
		}
		if !strings.Contains(out, "Usage:") || len(out) < 100 {
			t.Fatalf("%s --help printed too little:\n%s", c, out)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("databases:\n  app:\n    servers: [{host: 127.0.0.1}]\nusers:\n  app:\n    password: secret\n"), 0o600)
	out, err := runCLI(t, "check-config", good)
	if err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("valid file: got %q (%v), want OK", out, err)
	}
	// One line per error, file:line: key: what, as editors read them; the
	// unset variable is not followed by "password is required".
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("databases:\n  app:\n    servers: [{host: 127.0.0.1, prot: 5}]\nusers:\n  app:\n    password: hunter2-secret\n"+
		"  ops:\n    password: ${PGSWITCH_TEST_UNSET_VARIABLE}\npool_mode: sometimes\n"), 0o600)
	stdout, stderr, code := cli(t, nil, "check-config", bad)
	want := bad + ":3: databases.app.servers[0].prot: unknown key; did you mean port?\n" +
		bad + ":8: users.ops.password: environment variable PGSWITCH_TEST_UNSET_VARIABLE is not set\n" +
		bad + ":9: pool_mode: must be one of \"session\", \"transaction\", got \"sometimes\"\n"
	if code != 1 || stdout != "" || stderr != want {
		t.Fatalf("invalid file: exit %d, stdout %q, stderr:\n%s\nwant exit 1 and:\n%s", code, stdout, stderr, want)
	}
	if strings.Contains(stderr, "hunter2-secret") {
		t.Fatalf("error output contains the password: %s", stderr)
	}
	// A file that cannot be read is one line, as any other failure.
	_, stderr, code = cli(t, nil, "check-config", filepath.Join(dir, "missing.yaml"))
	if code != 1 || !strings.HasPrefix(stderr, "pgswitch: config: open ") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("missing file: exit %d, stderr %q", code, stderr)
	}
}

// The demo as its help shows it: started with --env-file, it prints the
// URLs as shell exports and writes them to the file once it is ready; a
// second shell sources the file and the console commands work; the file
// and the cluster go when the demo stops.
func TestDemo(t *testing.T) {
	needPostgres(t)
	help, err := runCLI(t, "demo", "--help")
	if err != nil || !strings.Contains(help, "pgswitch demo --env-file /tmp/pgswitch-demo.env\n") ||
		!strings.Contains(help, ". /tmp/pgswitch-demo.env\n") {
		t.Fatalf("demo --help does not show the --env-file example this test runs:\n%s", help)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	envFile := filepath.Join(t.TempDir(), "demo.env")
	cmd := exec.CommandContext(ctx, binary, "demo", "--listen", "127.0.0.1:0", "--log-level", "warn", "--env-file", envFile)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	var printed, exports, servers []string
	for sc.Scan() {
		line := sc.Text()
		printed = append(printed, line)
		if strings.HasPrefix(line, "export ") {
			exports = append(exports, line)
		}
		if strings.HasPrefix(line, "SERVER ") {
			servers = append(servers, line)
		}
		if strings.HasPrefix(line, "pgswitch is running") {
			break
		}
	}
	if len(exports) != 2 || !strings.HasPrefix(exports[0], "export DATABASE_URL='postgres://") ||
		!strings.HasPrefix(exports[1], "export "+adminURLEnv+"='postgres://") || len(servers) != 3 {
		t.Fatalf("demo printed exports %q and servers %q, want DATABASE_URL, %s and 3 servers", exports, adminURLEnv, servers)
	}
	if !strings.Contains(servers[0], "role=primary") || !strings.Contains(servers[1], "role=replica") {
		t.Fatalf("server lines: %q", servers)
	}
	// What the README shows it prints.
	want := readmeDemoOutput(t)
	if len(printed) != len(want) {
		t.Errorf("demo printed %d lines, README shows %d:\n%s", len(printed), len(want), strings.Join(printed, "\n"))
	}
	for i := range min(len(printed), len(want)) {
		if !want[i].MatchString(printed[i]) {
			t.Errorf("demo printed %q where the README shows a line like %s", printed[i], want[i])
		}
	}
	written, err := os.ReadFile(envFile)
	if err != nil || string(written) != strings.Join(exports, "\n")+"\n" {
		t.Fatalf("--env-file holds %q (%v), want the printed exports %q", written, err, exports)
	}

	// The second terminal: source the file, then psql and pgswitch status
	// (with the test's binary first on PATH).
	shell := func(script string) string {
		t.Helper()
		sh := exec.CommandContext(ctx, "sh", "-c", ". "+envFile+" && "+script)
		sh.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := sh.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
		return string(out)
	}
	// Named prepared statements across transactions are issue #5's; until
	// then pgx uses unnamed ones here.
	dbURL := strings.TrimSpace(shell(`printf '%s\n' "$DATABASE_URL"`))
	conn, err := pgx.Connect(ctx, dbURL+"&default_query_exec_mode=exec")
	if err != nil {
		t.Fatalf("connect to the demo's DATABASE_URL: %v", err)
	}
	var got int
	if err := conn.QueryRow(ctx, "SELECT 41 + 1").Scan(&got); err != nil || got != 42 {
		t.Fatalf("query through the demo: %d, %v", got, err)
	}
	conn.Close(ctx)
	if out := shell("pgswitch status"); !strings.Contains(out, "app") {
		t.Fatalf("pgswitch status after sourcing the env file:\n%s", out)
	}

	datadir := strings.TrimPrefix(servers[0][strings.Index(servers[0], "datadir="):], "datadir=")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo did not exit cleanly after SIGTERM: %v", err)
	}
	if _, err := os.Stat(datadir); !os.IsNotExist(err) {
		t.Fatalf("demo left its data directory %s behind (%v)", datadir, err)
	}
	if _, err := os.Stat(envFile); !os.IsNotExist(err) {
		t.Fatalf("demo left its env file %s behind (%v)", envFile, err)
	}
}

func TestClassifyCommand(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"classify", "SELECT * FROM t WHERE id = 1"}, "replica\tread: SELECT"},
		{[]string{"classify", "SELECT nextval('s')"}, "primary\twrite: nextval()"},
		{[]string{"classify", "INSERT INTO t VALUES (1)"}, "primary\twrite: INSERT"},
		{[]string{"classify", "SELECT 1; DELETE FROM t"}, "primary\twrite"},
		{[]string{"classify", "SELEC oops"}, "primary\twrite: pg_query could not parse it"},
		{[]string{"classify", "--write-functions", "audit", "SELECT audit(1)"}, "primary\twrite: audit()"},
		{[]string{"classify", "/* pgswitch:replica */ UPDATE t SET x = 1"}, "replica\thint: replica"},
		// A batch (one argument per statement, as a pipeline sends them) and a
		// multi-statement Query: the statement that made it a write is named.
		{[]string{"classify", "SELECT inet_server_port()", "INSERT INTO t VALUES ($1, 'x')"},
			"primary\twrite: INSERT (statement 2)\n1\treplica\tread: SELECT\tSELECT inet_server_port()\n2\tprimary\twrite: INSERT\tINSERT INTO t VALUES ($1, 'x')\n"},
		{[]string{"classify", "SELECT 1; SELECT nextval('s')", "SELECT 2"},
			"primary\twrite: nextval() is on the write list (statement 2)\n1\treplica\tread: SELECT\tSELECT 1\n2\tprimary\t"},
		{[]string{"classify", "SELECT 1", "SELECT 2"}, "replica\tread: SELECT\n1\treplica"},
		// Session state: what becomes of it, by the router's rules.
		{[]string{"classify", "SET search_path = app"}, "replica\tread: SET\nkind\tset\nsession\tsearch_path: once a server confirms the SET, " +
			"pgswitch records it for this client and sets it again on whichever server connection, primary or replica, runs the client's next unit of work"},
		{[]string{"classify", "SET LOCAL work_mem = '1MB'"}, "replica\tread: SET LOCAL\nkind\tset-local\nsession\tlasts until the end of the transaction"},
		{[]string{"classify", "RESET search_path"}, "replica\tread: RESET\nkind\treset\nsession\tsearch_path goes back to the client's startup value"},
		{[]string{"classify", "SET ROLE app"}, "replica\tread: SET\nkind\tset|role\nsession\tSET ROLE or SESSION AUTHORIZATION: pins the client to this server connection"},
		{[]string{"classify", "LISTEN jobs"}, "primary\twrite: LISTEN\nkind\tlisten\nsession\tLISTEN: pins the client"},
		{[]string{"classify", "SELECT set_config('search_path', 'app', false)"}, "primary\twrite: set_config() is on the write list\nkind\tset-unknown\nsession\tmay change settings in ways only the server can tell"},
		{[]string{"classify", "PREPARE q AS SELECT 1"}, "replica\tread: PREPARE of a read\nkind\tprepare\nsession\tprepared statement q is kept for this client"},
	}
	for _, c := range cases {
		out, err := runCLI(t, c.args...)
		if err != nil {
			t.Fatalf("%q: %v\n%s", c.args, err, out)
		}
		if !strings.HasPrefix(out, c.want) {
			t.Errorf("%q: got %q, want prefix %q", c.args, out, c.want)
		}
	}
}

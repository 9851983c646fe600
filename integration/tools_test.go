package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/integration/testproxy"
)

// clientTool finds psql or pgbench: on PATH or next to the server binaries.
func clientTool(t *testing.T, name string) string { return testproxy.Tool(t, cl, name) }

// toolEnv points libpq at pgswitch; the password goes through the
// environment so that it is not on any command line.
func toolEnv(p *proxy, db string) []string {
	host, port, _ := net.SplitHostPort(p.Addr)
	return append(os.Environ(), "PGHOST="+host, "PGPORT="+port, "PGUSER="+cl.User,
		"PGPASSWORD="+cl.Password, "PGDATABASE="+db, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=30")
}

func runTool(t *testing.T, p *proxy, db string, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, clientTool(t, name), args...)
	cmd.Env = toolEnv(p, db)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPsql(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			p := startProxy(t, proxyOptions{Mode: mode, DBs: []string{db}, Primary: true})
			out := runTool(t, p, db, time.Minute, "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
				"-c", "SELECT 40 + 2", "-c", "SELECT current_database()")
			if got := strings.Fields(out); len(got) != 2 || got[0] != "42" || got[1] != db {
				t.Fatalf("psql printed %q, want 42 and %s", out, db)
			}
		})
	}
}

var failedRe = regexp.MustCompile(`number of failed transactions: (\d+)`)
var processedRe = regexp.MustCompile(`number of transactions actually processed: (\d+)`)

// pgbenchRun runs pgbench and checks it processed transactions and none failed.
func pgbenchRun(t *testing.T, p *proxy, db string, args ...string) string {
	t.Helper()
	out := runTool(t, p, db, 3*time.Minute, "pgbench", args...)
	m := processedRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("pgbench output has no processed count:\n%s", out)
	}
	if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Fatalf("pgbench processed no transactions:\n%s", out)
	}
	if f := failedRe.FindStringSubmatch(out); f != nil && f[1] != "0" {
		t.Fatalf("pgbench: %s failed transactions:\n%s", f[1], out)
	}
	if strings.Contains(out, "aborted") {
		t.Fatalf("pgbench reported errors:\n%s", out)
	}
	return out
}

func TestPgbench(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	init := startProxy(t, proxyOptions{Mode: config.PoolModeSession, DBs: []string{db}, Primary: true})
	runTool(t, init, db, 3*time.Minute, "pgbench", "-i", "-q", "-s", "2")
	runs := []struct {
		mode     config.PoolMode
		protocol string
	}{
		{config.PoolModeTransaction, "simple"},
		{config.PoolModeTransaction, "extended"},
		{config.PoolModeSession, "simple"},
		{config.PoolModeSession, "extended"},
		{config.PoolModeSession, "prepared"},
	}
	for _, r := range runs {
		t.Run(fmt.Sprintf("%s/%s", r.mode, r.protocol), func(t *testing.T) {
			p := startProxy(t, proxyOptions{Mode: r.mode, PoolSize: 8, DBs: []string{db}, Primary: true})
			out := pgbenchRun(t, p, db, "-c", "8", "-j", "2", "-T", "5", "-M", r.protocol)
			t.Logf("%s", lastLines(out, 3))
		})
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestClientEncoding: a client's client_encoding other than UTF8 is applied
// on the server connections it uses, so text arrives converted.
func TestClientEncoding(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{Mode: config.PoolModeTransaction, PoolSize: 2, DBs: []string{db}, Primary: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, clientTool(t, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-c", "SHOW client_encoding", "-c", "SELECT length(convert_to(chr(233), current_setting('client_encoding')))")
	cmd.Env = append(toolEnv(p, db), "PGCLIENTENCODING=LATIN1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); len(got) != 2 || got[0] != "LATIN1" || got[1] != "1" {
		t.Fatalf("psql with PGCLIENTENCODING=LATIN1 through pgswitch: %q, want LATIN1 and a 1-byte é", out)
	}
}

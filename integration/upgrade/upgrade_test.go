// Package upgrade runs pgbench through binary upgrades of a pgswitch
// process, against a primary of its own: the test runs `pgswitch serve`
// as a child process, which starts its successors itself.
package upgrade

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/integration/testproxy"
	"github.com/pgswitch/pgswitch/internal/pgcluster"
	"github.com/pgswitch/pgswitch/wire"
)

var cl *pgcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(pgcluster.Main(m, pgcluster.Options{Replicas: -1}, &cl))
}

// family is a `pgswitch serve` child process and the processes its
// upgrades start, which write to the same log.
type family struct {
	first *exec.Cmd
	done  chan error // the first process's Wait

	mu      sync.Mutex
	lines   []string
	serving []served // "pgswitch listening" lines, in order
	changed chan struct{}
}

// served is one process that announced it listens.
type served struct {
	pid  int
	addr string
}

// The TCP listener's line: a process with a Unix socket logs that one too.
var listeningRe = regexp.MustCompile(`msg="pgswitch listening" addr=([^/\s]\S*) .*pid=(\d+)`)

func (f *family) scan(r *os.File) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		f.mu.Lock()
		f.lines = append(f.lines, line)
		if m := listeningRe.FindStringSubmatch(line); m != nil {
			pid, _ := strconv.Atoi(m[2])
			f.serving = append(f.serving, served{pid: pid, addr: m[1]})
			close(f.changed)
			f.changed = make(chan struct{})
		}
		f.mu.Unlock()
	}
	r.Close()
}

func (f *family) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.lines, "\n")
}

// await waits until n processes have announced they listen and returns
// the last one.
func (f *family) await(t *testing.T, n int) served {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		f.mu.Lock()
		if len(f.serving) >= n {
			s := f.serving[n-1]
			f.mu.Unlock()
			return s
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case err := <-f.done:
			f.done <- err
			if n == 1 {
				t.Fatalf("pgswitch serve exited: %v\n%s", err, f.log())
			}
		case <-deadline:
			t.Fatalf("process %d of the upgrades never listened\n%s", n, f.log())
		}
	}
}

// awaitLine waits until a line of the log contains text.
func (f *family) awaitLine(t *testing.T, text string) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		f.mu.Lock()
		for _, line := range f.lines {
			if strings.Contains(line, text) {
				f.mu.Unlock()
				return
			}
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no line of the log says %q\n%s", text, f.log())
		}
	}
}

// pids returns every process that listened.
func (f *family) pids() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for _, s := range f.serving {
		out = append(out, s.pid)
	}
	return out
}

// gone reports whether process pid has exited (a zombie counts: the test
// is not its parent once its parent has exited).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

func buildPgswitch(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pgswitch")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/pgswitch/pgswitch/cmd/pgswitch").CombinedOutput()
	if err != nil {
		t.Fatalf("build pgswitch: %v\n%s", err, out)
	}
	return bin
}

func startFamily(t *testing.T, bin, configPath string) *family {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", configPath)
	cmd.Stderr = pw // every process of the family writes here; an *os.File, so Wait does not wait for them
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	f := &family{first: cmd, done: make(chan error, 1), changed: make(chan struct{})}
	go f.scan(pr)
	go func() { f.done <- cmd.Wait() }()
	t.Cleanup(func() {
		for _, pid := range f.pids() {
			if !gone(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("pgswitch's log:\n%s", f.log())
		}
	})
	return f
}

func dsn(addr, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(cl.User, cl.Password), Host: addr,
		Path: "/" + db, RawQuery: "sslmode=disable&connect_timeout=30"}
	return u.String()
}

func connect(t *testing.T, ctx context.Context, addr, db string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn(addr, db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to %s through pgswitch: %v", db, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// process asks a new console connection which process serves it.
func process(t *testing.T, ctx context.Context, addr string) (pid, predecessor int) {
	t.Helper()
	c := connect(t, ctx, addr, "pgswitch")
	defer c.Close(ctx)
	var version, started string
	var threads int
	if err := c.QueryRow(ctx, "SHOW PROCESS").Scan(&pid, &version, &started, &predecessor, &threads); err != nil {
		t.Fatalf("SHOW PROCESS: %v", err)
	}
	return pid, predecessor
}

// pgbenchClients counts the clients named pgbench that a console sees.
func pgbenchClients(t *testing.T, ctx context.Context, console *pgx.Conn) int {
	t.Helper()
	rows, err := console.Query(ctx, "SHOW CLIENTS")
	if err != nil {
		t.Fatalf("SHOW CLIENTS: %v", err)
	}
	defer rows.Close()
	col := -1
	for i, fd := range rows.FieldDescriptions() {
		if fd.Name == "application_name" {
			col = i
		}
	}
	n := 0
	for rows.Next() {
		if v := rows.RawValues(); col >= 0 && string(v[col]) == "pgbench" {
			n++
		}
	}
	return n
}

var (
	failedRe    = regexp.MustCompile(`number of failed transactions: (\d+)`)
	processedRe = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	tpsRe       = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	upgradedRe  = regexp.MustCompile(`upgraded: pid (\d+) serves now; pid (\d+) keeps its (\d+) clients`)
)

// TestUpgradeUnderLoad: pgbench -c 8 -T 20 runs through two binary
// upgrades, one by SIGUSR2 and one by `pgswitch upgrade`, with no failed
// transaction. Each upgrade moves the listener to a new process (new
// connections reach it) while the clients already connected stay on the
// process they connected to, which serves them to the end and then exits;
// a cancel request for such a client, which reaches the newest process,
// is relayed to it.
func TestUpgradeUnderLoad(t *testing.T) {
	bin := buildPgswitch(t)
	dir := t.TempDir()
	configPath := filepath.Join(dir, "pgswitch.yaml")
	// t.TempDir's paths may be too long for a socket's name.
	sockDir, err := os.MkdirTemp("", "pgsw-up-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
metrics_listen: 127.0.0.1:0
unix_socket_dir: %s
pool:
  size: 12
timeouts:
  query_wait: 60s
  upgrade_drain: 5m
admin:
  admin_users: [%s]
databases:
  %s:
    servers:
      - {host: %q, port: %d, role: primary}
users:
  %s:
    password: %q
`, sockDir, cl.User, cl.Database, cl.Primary.Host, cl.Primary.Port, cl.User, cl.Password)
	if err := os.WriteFile(configPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	fam := startFamily(t, bin, configPath)
	p0 := fam.await(t, 1)
	addr := p0.addr
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	host, port, _ := net.SplitHostPort(addr)
	env := append(os.Environ(), "PGHOST="+host, "PGPORT="+port, "PGUSER="+cl.User,
		"PGPASSWORD="+cl.Password, "PGDATABASE="+cl.Database, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=30")
	initCmd := exec.CommandContext(ctx, testproxy.Tool(t, cl, "pgbench"), "-i", "-q", "-s", "1")
	initCmd.Env = env
	if out, err := initCmd.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}

	// Clients of the first process, connected before any upgrade.
	early := connect(t, ctx, addr, cl.Database)
	sleeper := connect(t, ctx, addr, cl.Database)
	console0 := connect(t, ctx, addr, "pgswitch")
	if pid, pred := process(t, ctx, addr); pid != p0.pid || pred != 0 {
		t.Fatalf("SHOW PROCESS before any upgrade: pid %d predecessor %d, want %d and 0", pid, pred, p0.pid)
	}

	bench := exec.CommandContext(ctx, testproxy.Tool(t, cl, "pgbench"), "-c", "8", "-j", "2", "-T", "20", "-P", "5")
	bench.Env = env
	var out testproxy.Output
	bench.Stdout, bench.Stderr = &out, &out
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	benchDone := make(chan error, 1)
	go func() { benchDone <- bench.Wait() }()
	// pgbench is running once its 8 clients are in.
	deadline := time.Now().Add(time.Minute)
	for pgbenchClients(t, ctx, console0) < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("pgbench's clients never all connected:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Upgrade 1: SIGUSR2.
	if err := syscall.Kill(p0.pid, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	p1 := fam.await(t, 2)
	if p1.pid == p0.pid || p1.addr != addr {
		t.Fatalf("after SIGUSR2: process %d listens on %s, want a new process on %s", p1.pid, p1.addr, addr)
	}
	// The first process has stopped accepting once it says so.
	fam.awaitLine(t, fmt.Sprintf("new process serves; this one keeps its clients until they leave\" new_pid=%d ", p1.pid))
	if pid, pred := process(t, ctx, addr); pid != p1.pid || pred != p0.pid {
		t.Fatalf("a new connection after SIGUSR2 reached pid %d (predecessor %d), want %d (predecessor %d)", pid, pred, p1.pid, p0.pid)
	}
	var one int
	if err := early.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("a client connected before the upgrade: %v", err)
	}
	// The first process's console refuses another upgrade: it serves no
	// listener any more.
	_, err = console0.Exec(ctx, "UPGRADE")
	var refused *pgconn.PgError
	if !errors.As(err, &refused) || refused.Code != wire.CodeObjectNotInPrerequisiteState {
		t.Fatalf("UPGRADE on the process that handed over: %v, want 55000", err)
	}

	// An upgrade whose new binary refuses the configuration fails, and the
	// process that serves goes on.
	if err := os.WriteFile(configPath, []byte(yaml+"pool:\n  sise: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	failed, err := exec.CommandContext(ctx, bin, "upgrade", "--admin-url", dsn(addr, "pgswitch")).CombinedOutput()
	if err == nil || !strings.Contains(string(failed), "58000") {
		t.Fatalf("pgswitch upgrade with a bad configuration: %v %q, want it to fail with 58000", err, failed)
	}
	if err := os.WriteFile(configPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if pid, _ := process(t, ctx, addr); pid != p1.pid {
		t.Fatalf("after a failed upgrade, a new connection reached pid %d, want %d", pid, p1.pid)
	}

	// Upgrade 2: `pgswitch upgrade`, through the console of the process
	// that serves now.
	up := exec.CommandContext(ctx, bin, "upgrade", "--admin-url", dsn(addr, "pgswitch"))
	upOut, err := up.CombinedOutput()
	if err != nil {
		t.Fatalf("pgswitch upgrade: %v\n%s", err, upOut)
	}
	m := upgradedRe.FindStringSubmatch(string(upOut))
	if m == nil {
		t.Fatalf("pgswitch upgrade printed %q", upOut)
	}
	p2 := fam.await(t, 3)
	if newPID, oldPID := atoi(m[1]), atoi(m[2]); newPID != p2.pid || oldPID != p1.pid || p2.pid == p0.pid {
		t.Fatalf("pgswitch upgrade: %q; processes that listened: %v", upOut, fam.pids())
	}
	if pid, pred := process(t, ctx, addr); pid != p2.pid || pred != p1.pid {
		t.Fatalf("a new connection after pgswitch upgrade reached pid %d (predecessor %d), want %d (predecessor %d)", pid, pred, p2.pid, p1.pid)
	}
	// The Unix socket was handed over too: a client on it reaches the
	// newest process.
	_, tcpPort, _ := net.SplitHostPort(addr)
	sock, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=pgswitch default_query_exec_mode=simple_protocol",
		sockDir, tcpPort, cl.User, cl.Password))
	if err != nil {
		t.Fatalf("the Unix socket after two upgrades: %v", err)
	}
	var spid, spred, sthreads int
	var sversion, sstarted string
	if err := sock.QueryRow(ctx, "SHOW PROCESS").Scan(&spid, &sversion, &sstarted, &spred, &sthreads); err != nil || spid != p2.pid {
		t.Fatalf("over the Unix socket after two upgrades: pid %d (%v), want %d", spid, err, p2.pid)
	}
	sock.Close(ctx)
	select {
	case err := <-benchDone:
		t.Fatalf("pgbench ended (%v) before the second upgrade was done: the upgrades did not run under load\n%s", err, out.String())
	default:
	}
	// The first process still serves pgbench's clients.
	if n := pgbenchClients(t, ctx, console0); n != 8 {
		t.Fatalf("the first process serves %d pgbench clients after two upgrades, want 8", n)
	}
	if err := early.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("a client connected before both upgrades: %v", err)
	}

	// A cancel request for a client of the first process reaches the
	// newest one, which relays it.
	slept := make(chan error, 1)
	go func() {
		_, err := sleeper.Exec(ctx, "SELECT pg_sleep(120)")
		slept <- err
	}()
	waitSleeping(t, ctx)
	if err := sleeper.PgConn().CancelRequest(ctx); err != nil {
		t.Fatalf("cancel request: %v", err)
	}
	select {
	case err := <-slept:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != wire.CodeQueryCanceled {
			t.Fatalf("the canceled query: %v, want 57014", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the cancel request relayed to the first process did not cancel its client's query")
	}

	if err := <-benchDone; err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out.String())
	}
	text := out.String()
	if m := processedRe.FindStringSubmatch(text); m == nil || m[1] == "0" {
		t.Fatalf("pgbench processed nothing:\n%s", text)
	}
	if f := failedRe.FindStringSubmatch(text); f == nil || f[1] != "0" {
		t.Fatalf("pgbench failed transactions (want 0):\n%s", text)
	}
	tps := "?"
	if m := tpsRe.FindStringSubmatch(text); m != nil {
		tps = m[1]
	}

	// Its clients gone, the first process exits 0, though a console
	// connection (say, a metrics exporter's) is still open: that one is
	// let go. So did the second, which had none.
	for _, c := range []*pgx.Conn{early, sleeper} {
		c.Close(ctx)
	}
	select {
	case err := <-fam.done:
		fam.done <- err
		if err != nil {
			t.Fatalf("the first process, its clients gone: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the first process did not exit once its clients had left")
	}
	if _, err := console0.Exec(ctx, "SHOW VERSION"); err == nil {
		t.Fatal("the console connection of the first process still answers after it exited")
	}
	waitGone(t, p1.pid)
	if gone(p2.pid) {
		t.Fatalf("the newest process %d exited", p2.pid)
	}
	if pid, _ := process(t, ctx, addr); pid != p2.pid {
		t.Fatalf("after the old processes exited, a new connection reached pid %d, want %d", pid, p2.pid)
	}
	// The metrics listener the first process opened is the newest one's.
	metrics := metricsAddr(t, fam)
	resp, err := http.Get("http://" + metrics + "/healthz")
	if err != nil {
		t.Fatalf("metrics listener after the upgrades: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz after the upgrades: %s", resp.Status)
	}
	t.Logf("pgbench -c 8 -T 20 through two upgrades (pid %d → %d by SIGUSR2 → %d by pgswitch upgrade): tps %s, 0 failed\n%s",
		p0.pid, p1.pid, p2.pid, tps, text)
	syscall.Kill(p2.pid, syscall.SIGTERM)
	waitGone(t, p2.pid)
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

var metricsRe = regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)

// metricsAddr returns the address every process served metrics on.
func metricsAddr(t *testing.T, fam *family) string {
	t.Helper()
	seen := map[string]bool{}
	for _, line := range strings.Split(fam.log(), "\n") {
		if m := metricsRe.FindStringSubmatch(line); m != nil {
			seen[m[1]] = true
		}
	}
	if len(seen) != 1 {
		t.Fatalf("metrics listened on %v, want one address for every process", seen)
	}
	for addr := range seen {
		return addr
	}
	return ""
}

// waitSleeping waits until the primary runs a pg_sleep.
func waitSleeping(t *testing.T, ctx context.Context) {
	t.Helper()
	conn, err := pgx.Connect(ctx, cl.DSN(cl.Primary))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120)%' AND state = 'active'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the query to cancel never started")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not exit", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

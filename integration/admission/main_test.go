// Package admission tests what happens at pgswitch's door, against a
// primary of its own: floods of connections that never log in, a process
// out of file descriptors, login timeouts (the primary's
// authentication_timeout is 1s, to compare) and max_client_conn.
//
// Some tests run `pgswitch serve` as a child process with a small limit on
// open files: the test binary, started with childLimitEnv set, sets the
// limit and executes pgswitch in its own place.
package admission

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
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

	"github.com/pgswitch/pgswitch/internal/pgcluster"
)

var cl *pgcluster.Cluster

// childLimitEnv set to "soft:hard" makes the test binary set its limit on
// open files and execute its arguments instead of running tests.
const childLimitEnv = "PGSWITCH_TEST_EXEC_NOFILE"

func TestMain(m *testing.M) {
	if v := os.Getenv(childLimitEnv); v != "" {
		execWithFileLimit(v, os.Args[1:])
	}
	code := pgcluster.Main(m, pgcluster.Options{Replicas: -1, ExtraConf: []string{"authentication_timeout = 1s"}}, &cl)
	if binaryDir != "" {
		os.RemoveAll(binaryDir)
	}
	os.Exit(code)
}

// execWithFileLimit sets RLIMIT_NOFILE to "soft:hard" and executes args.
func execWithFileLimit(limits string, args []string) {
	soft, hard, _ := strings.Cut(limits, ":")
	var rl syscall.Rlimit
	var err error
	if rl.Cur, err = strconv.ParseUint(soft, 10, 64); err == nil {
		rl.Max, err = strconv.ParseUint(hard, 10, 64)
	}
	if err == nil {
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	if err == nil && len(args) > 0 {
		os.Unsetenv(childLimitEnv)
		err = syscall.Exec(args[0], args, os.Environ())
	}
	fmt.Fprintf(os.Stderr, "%s=%s %q: %v\n", childLimitEnv, limits, args, err)
	os.Exit(2)
}

var (
	buildOnce  sync.Once
	binaryDir  string
	binary     string
	buildError error
)

// pgswitchBinary builds cmd/pgswitch once for the package's tests.
func pgswitchBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binaryDir, buildError = os.MkdirTemp("", "pgswitch-admission-"); buildError != nil {
			return
		}
		binary = filepath.Join(binaryDir, "pgswitch")
		out, err := exec.Command("go", "build", "-o", binary, "github.com/pgswitch/pgswitch/cmd/pgswitch").CombinedOutput()
		if err != nil {
			buildError = fmt.Errorf("build pgswitch: %v\n%s", err, out)
		}
	})
	if buildError != nil {
		t.Fatal(buildError)
	}
	return binary
}

// child is `pgswitch serve` running as a child process.
type child struct {
	cmd  *exec.Cmd
	addr string
	logs *lockedLog
	done chan error // the result of Wait; refilled by whoever reads it
}

type lockedLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lockedLog) add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

// matching returns the lines that contain s.
func (l *lockedLog) matching(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

var listeningRe = regexp.MustCompile(`msg="pgswitch listening" addr=(\S+)`)

// startChild runs pgswitch serve with the configuration text, its limit on
// open files set to soft:hard, until the test ends.
func startChild(t *testing.T, yaml string, soft, hard int) *child {
	t.Helper()
	bin := pgswitchBinary(t)
	path := filepath.Join(t.TempDir(), "pgswitch.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, bin, "serve", "--config", path)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d:%d", childLimitEnv, soft, hard))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, logs: &lockedLog{}, done: make(chan error, 1)}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			c.logs.add(line)
			if m := listeningRe.FindStringSubmatch(line); m != nil {
				addrc <- m[1]
			}
		}
		io.Copy(io.Discard, stderr)
		c.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			t.Logf("pgswitch's log:\n%s", c.logs)
		}
	})
	select {
	case c.addr = <-addrc:
	case err := <-c.done:
		c.done <- err
		t.Fatalf("pgswitch serve exited: %v\n%s", err, c.logs)
	case <-time.After(2 * time.Minute):
		t.Fatalf("pgswitch serve did not start listening\n%s", c.logs)
	}
	return c
}

// running fails the test if the child has exited.
func (c *child) running(t *testing.T) {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err
		t.Fatalf("pgswitch exited: %v", err)
	default:
	}
}

// failed fails the test with err, or with the child's exit if it is
// exiting (a refused connection may be the first sign).
func (c *child) failed(t *testing.T, err error) {
	t.Helper()
	select {
	case exit := <-c.done:
		c.done <- exit
		t.Fatalf("pgswitch exited (%v): %v", exit, err)
	case <-time.After(5 * time.Second):
		t.Fatal(err)
	}
}

// openFiles returns the child's soft limit on open files and how many it has open.
func (c *child) openFiles(t *testing.T) (limit, open int) {
	t.Helper()
	pid := c.cmd.Process.Pid
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(strings.TrimPrefix(line, "Max open files")); len(f) >= 1 && strings.HasPrefix(line, "Max open files") {
			limit, _ = strconv.Atoi(f[0])
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return limit, len(fds)
}

func (c *child) url(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(cl.User, cl.Password), Host: c.addr,
		Path: "/" + db, RawQuery: "sslmode=disable&default_query_exec_mode=simple_protocol"}
	return u.String()
}

// childConfig is a configuration in front of the cluster's primary, with
// more pool: and timeouts: keys.
func childConfig(pool, timeouts string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\npool:\n  size: 4\n%stimeouts:\n  query_wait: 30s\n%s", pool, timeouts)
	fmt.Fprintf(&b, "admin:\n  admin_users: [%s]\n", cl.User)
	fmt.Fprintf(&b, "databases:\n  %s:\n    servers:\n      - {host: %q, port: %d, role: primary}\n",
		cl.Database, cl.Primary.Host, cl.Primary.Port)
	fmt.Fprintf(&b, "users:\n  %s:\n    password: %q\n", cl.User, cl.Password)
	return b.String()
}

// flood opens n TCP connections to addr that send nothing; they are closed
// by the returned function (and when the test ends).
func flood(t *testing.T, addr string, n int) (closeAll func(), err error) {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	var once sync.Once
	closeAll = func() {
		once.Do(func() {
			for _, nc := range conns {
				nc.Close()
			}
		})
	}
	t.Cleanup(closeAll)
	for range n {
		nc, err := net.DialTimeout("tcp", addr, 30*time.Second)
		if err != nil {
			return closeAll, fmt.Errorf("flood connection %d: %w", len(conns)+1, err)
		}
		conns = append(conns, nc)
	}
	return closeAll, nil
}

// waitFor polls check until it returns nil or within passes.
func waitFor(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, within, err)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/internal/pgcluster"
)

// needPostgres fails the test in CI, and skips it elsewhere, when no
// PostgreSQL server binaries are installed.
func needPostgres(t *testing.T) {
	t.Helper()
	if _, err := pgcluster.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("needs PostgreSQL: %v", err)
		}
		t.Skipf("PostgreSQL not installed: %v", err)
	}
}

// startCluster starts a primary with replicas for one test.
func startCluster(t *testing.T) *pgcluster.Cluster {
	t.Helper()
	needPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Stop() })
	return cl
}

// serveConfig is a configuration for cl; replicas adds its replicas.
func serveConfig(cl *pgcluster.Cluster, replicas bool, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\nhealth:\n  user: %s\n  inter: 200ms\n", cl.User)
	fmt.Fprintf(&b, "admin:\n  admin_users: [%s]\n%s", cl.User, extra)
	fmt.Fprintf(&b, "databases:\n  %s:\n    servers:\n", cl.Database)
	for _, s := range cl.Servers() {
		role := "replica"
		if s == cl.Primary {
			role = "primary"
		} else if !replicas {
			continue
		}
		fmt.Fprintf(&b, "      - {host: %q, port: %d, role: %s}\n", s.Host, s.Port, role)
	}
	fmt.Fprintf(&b, "users:\n  %s:\n    password: %q\n", cl.User, cl.Password)
	return b.String()
}

// server is a running `pgswitch serve`.
type server struct {
	cmd  *exec.Cmd
	addr string
	path string // its configuration file
	done chan error
	logs *lockedLog
}

// lockedLog collects the process's log while the test reads it.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) add(line string) {
	l.mu.Lock()
	l.b.WriteString(line + "\n")
	l.mu.Unlock()
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listeningRe = regexp.MustCompile(`msg="pgswitch listening" addr=(\S+)`)

// startServe runs the built binary with configuration text, and more
// arguments to serve, until the test ends.
func startServe(t *testing.T, text string, args ...string) *server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pgswitch.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, append([]string{"serve", "--config", path}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, path: path, done: make(chan error, 1), logs: &lockedLog{}}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.logs.add(line)
			if m := listeningRe.FindStringSubmatch(line); m != nil {
				addrc <- m[1]
			}
		}
		io.Copy(io.Discard, stderr)
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.done
	})
	select {
	case s.addr = <-addrc:
	case err := <-s.done:
		t.Fatalf("pgswitch serve exited: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("pgswitch serve did not start listening")
	}
	return s
}

func (s *server) url(cl *pgcluster.Cluster, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(cl.User, cl.Password), Host: s.addr,
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// exit waits for the process to end and returns its exit code.
func (s *server) exit(t *testing.T) int {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(2 * time.Minute):
		t.Fatal("pgswitch did not exit")
		return -1
	}
}

func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func TestServeSIGTERMFinishesTransactions(t *testing.T) {
	cl := startCluster(t)
	s := startServe(t, serveConfig(cl, false, "timeouts:\n  shutdown: 60s\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, _ := pgx.ParseConfig(s.url(cl, cl.Database))
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	busy, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	idle, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := busy.Exec(ctx, "CREATE TABLE IF NOT EXISTS shutdown_test (id int)"); err != nil {
		t.Fatal(err)
	}
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO shutdown_test VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// It stops accepting clients at once…
	eventually(t, "new clients refused after SIGTERM", func() error {
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			c.Close(ctx)
			return fmt.Errorf("a new client connected")
		}
		return nil
	})
	// …but the transaction in flight finishes.
	if _, err := tx.Exec(ctx, "INSERT INTO shutdown_test VALUES (2)"); err != nil {
		t.Fatalf("transaction in flight after SIGTERM: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("COMMIT after SIGTERM: %v", err)
	}
	if code := s.exit(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, s.logs)
	}
	_, err = idle.Exec(ctx, "SELECT 1")
	var pe *pgconn.PgError
	if err == nil || (strings.Contains(err.Error(), "SQLSTATE") && !(errors.As(err, &pe) && pe.Code == "57P01")) {
		t.Fatalf("idle client after shutdown: got %v, want 57P01 or a closed connection", err)
	}
	direct, err := pgx.Connect(ctx, cl.DSN(cl.Primary))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	var n int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM shutdown_test").Scan(&n); err != nil || n != 2 {
		t.Fatalf("committed rows: %d, %v; want 2", n, err)
	}
}

func TestServeShutdownCommandAndSIGHUP(t *testing.T) {
	cl := startCluster(t)
	s := startServe(t, serveConfig(cl, false, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	acfg, _ := pgx.ParseConfig(s.url(cl, "pgswitch"))
	acfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	console, err := pgx.ConnectConfig(ctx, acfg)
	if err != nil {
		t.Fatal(err)
	}
	servers := func() int {
		rows, err := console.Query(ctx, "SHOW HEALTH")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		return n
	}
	if n := servers(); n != 1 {
		t.Fatalf("SHOW HEALTH lists %d servers, want 1", n)
	}
	// A broken file is refused on SIGHUP; the running configuration stays.
	os.WriteFile(s.path, []byte(serveConfig(cl, true, "pool_mode: sometimes\n")), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "refused reload logged", func() error {
		if strings.Contains(s.logs.String(), "reload refused") {
			return nil
		}
		return fmt.Errorf("not yet")
	})
	if n := servers(); n != 1 {
		t.Fatalf("after a refused reload SHOW HEALTH lists %d servers, want 1", n)
	}
	os.WriteFile(s.path, []byte(serveConfig(cl, true, "workers: 1\n")), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "replicas added by SIGHUP", func() error {
		if n := servers(); n != 3 {
			return fmt.Errorf("%d servers", n)
		}
		return nil
	})
	// Fixed workers are logged, and SHOW PROCESS shows the threads.
	workersApplied := func(how string, n int) {
		line := fmt.Sprintf("msg=workers threads=%d adaptive=false", n)
		eventually(t, "workers applied by "+how, func() error {
			if strings.Contains(s.logs.String(), line) {
				return nil
			}
			return fmt.Errorf("%q not logged", line)
		})
		var pid, pred, threads int
		var version, started string
		if err := console.QueryRow(ctx, "SHOW PROCESS").Scan(&pid, &version, &started, &pred, &threads); err != nil {
			t.Fatalf("SHOW PROCESS: %v", err)
		}
		if threads != n {
			t.Fatalf("after %s SHOW PROCESS shows %d threads, want %d", how, threads, n)
		}
	}
	workersApplied("SIGHUP", 1)
	// The console's RELOAD applies workers too.
	os.WriteFile(s.path, []byte(serveConfig(cl, true, "workers: 2\n")), 0o600)
	if _, err := console.Exec(ctx, "RELOAD"); err != nil {
		t.Fatalf("RELOAD: %v", err)
	}
	workersApplied("RELOAD", 2)
	if _, err := console.Exec(ctx, "SHUTDOWN"); err != nil && !strings.Contains(err.Error(), "closed") && !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("SHUTDOWN: %v", err)
	}
	if code := s.exit(t); code != 0 {
		t.Fatalf("exit code %d after SHUTDOWN, want 0\n%s", code, s.logs)
	}
}

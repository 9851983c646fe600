package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgswitch-edge-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pgswitch-edge")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build pgswitch-edge: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runCLI(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestVersionAndHelp(t *testing.T) {
	out, err := runCLI(t, nil, "version")
	if err != nil || !strings.HasPrefix(out, "pgswitch-edge "+version) {
		t.Fatalf("version: %q (%v)", out, err)
	}
	for _, c := range []string{"serve", "check-config", "status", "version"} {
		out, err := runCLI(t, nil, c, "--help")
		if err != nil || !strings.Contains(out, "Usage:") || len(out) < 100 {
			t.Fatalf("%s --help: %v\n%s", c, err, out)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	out, err := runCLI(t, []string{"REDIS_PRIMARY=127.0.0.1:6380"}, "check-config", filepath.Join("..", "..", "pgswitch-edge.yaml"))
	// The example names a certificate directory that this repository does
	// not ship: check-config reads it, and must say so.
	if err == nil || !strings.Contains(out, "listens.myapp.binds[1].tls: certificate directory") {
		t.Fatalf("example without its certificates: %v\n%s", err, out)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("listens:\n  app:\n    binds: [127.0.0.1:0]\n    servers: [{addr: 127.0.0.1:1}, {addr: 127.0.0.1:2}]\n"), 0o600)
	if out, err := runCLI(t, nil, "check-config", good); err != nil || !strings.Contains(out, "OK (1 listens, 2 servers)") {
		t.Fatalf("good file: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listens:\n  app:\n    binds: [127.0.0.1:0]\n    servers: [{addr: 127.0.0.1:1, maxconns: 3}]\n"), 0o600)
	out, err = runCLI(t, nil, "check-config", bad)
	if err == nil || !strings.Contains(out, "field maxconns not found") || !strings.Contains(out, "line 4") {
		t.Fatalf("bad file: %v\n%s", err, out)
	}
}

// edge is a running `pgswitch-edge serve`.
type edge struct {
	cmd  *exec.Cmd
	path string
	done chan error
	mu   sync.Mutex
	log  strings.Builder
}

func (e *edge) logs() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.log.String()
}

var bindRe = regexp.MustCompile(`msg="bind listening" listen=(\S+) addr=(\S+)`)

// startEdge runs the built binary with configuration text and returns it
// with the address of each listen's first bind.
func startEdge(t *testing.T, text string) (*edge, map[string]string) {
	t.Helper()
	e := &edge{path: filepath.Join(t.TempDir(), "edge.yaml"), done: make(chan error, 1)}
	if err := os.WriteFile(e.path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cmd = exec.Command(binary, "serve", "--config", e.path)
	stderr, err := e.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			e.mu.Lock()
			e.log.WriteString(sc.Text() + "\n")
			e.mu.Unlock()
			if strings.Contains(sc.Text(), "pgswitch-edge started") {
				once.Do(func() { close(started) })
			}
		}
		e.done <- e.cmd.Wait()
	}()
	t.Cleanup(func() {
		if e.cmd.ProcessState == nil {
			e.cmd.Process.Kill()
			<-e.done
		}
	})
	select {
	case <-started:
	case err := <-e.done:
		t.Fatalf("pgswitch-edge exited: %v\n%s", err, e.logs())
	case <-time.After(time.Minute):
		t.Fatalf("pgswitch-edge did not start:\n%s", e.logs())
	}
	addrs := map[string]string{}
	for _, m := range bindRe.FindAllStringSubmatch(e.logs(), -1) {
		if addrs[m[1]] == "" {
			addrs[m[1]] = m[2]
		}
	}
	return e, addrs
}

func (e *edge) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := e.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func (e *edge) waitLog(t *testing.T, substr string, count int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for strings.Count(e.logs(), substr) < count {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", substr, e.logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// app is a loopback HTTP server naming itself; /slow waits for release.
func startApp(t *testing.T, name string, release <-chan struct{}, inFlight chan<- struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			inFlight <- struct{}{}
			<-release
		}
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func edgeConfig(bind, app, admin string) string {
	return fmt.Sprintf(`
admin: {listen: %q}
access_log: {path: stderr}
shutdown_timeout: 1m
listens:
  myapp:
    binds: [%q]
    check: {inter: 100ms}
    servers: [{name: app, addr: %q}]
`, admin, bind, app)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestSignals: SIGHUP puts an edited file in force on the same socket; a
// bad file is refused whole and the running configuration stays; SIGTERM
// lets a request in flight finish, then the process exits 0.
func TestSignals(t *testing.T) {
	release := make(chan struct{})
	inFlight := make(chan struct{}, 4)
	app1 := startApp(t, "app1", release, inFlight)
	app2 := startApp(t, "app2", release, inFlight)
	bind, admin := freeAddr(t), "127.0.0.1:0"
	e, addrs := startEdge(t, edgeConfig(bind, app1, admin))
	if addrs["myapp"] != bind {
		t.Fatalf("binds %v, want myapp on %s", addrs, bind)
	}
	url := "http://" + bind
	if _, body := fetch(t, url+"/a"); body != "app1 /a" {
		t.Fatalf("before reload: %q", body)
	}
	e.waitLog(t, `"GET /a HTTP/1.1" 200 7`, 1)

	os.WriteFile(e.path, []byte(edgeConfig(bind, app2, admin)), 0o600)
	e.signal(t, syscall.SIGHUP)
	e.waitLog(t, "configuration reloaded", 1)
	if _, body := fetch(t, url+"/b"); body != "app2 /b" {
		t.Fatalf("after reload: %q, want app2", body)
	}

	os.WriteFile(e.path, []byte(edgeConfig(bind, app1, admin)+"  extra_key: 1\n"), 0o600)
	e.signal(t, syscall.SIGHUP)
	e.waitLog(t, "reload refused: the running configuration stays", 1)
	if !strings.Contains(e.logs(), "extra_key") {
		t.Fatalf("refusal does not name the key:\n%s", e.logs())
	}
	if _, body := fetch(t, url+"/c"); body != "app2 /c" {
		t.Fatalf("after a refused reload: %q, want app2 still", body)
	}

	// SIGTERM with a request in flight.
	result := make(chan string, 1)
	go func() {
		_, body := fetch(t, url+"/slow")
		result <- body
	}()
	<-inFlight
	e.signal(t, syscall.SIGTERM)
	e.waitLog(t, "shutting down", 1)
	select {
	case err := <-e.done:
		t.Fatalf("exited (%v) with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if body := <-result; body != "app2 /slow" {
		t.Fatalf("in-flight request: %q", body)
	}
	select {
	case err := <-e.done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, e.logs())
		}
	case <-time.After(time.Minute):
		t.Fatal("did not exit after SIGTERM")
	}
	if !strings.Contains(e.logs(), `msg=stopped`) {
		t.Fatalf("no stop line:\n%s", e.logs())
	}
}

// TestStatusCommand prints each server's health from a running proxy.
func TestStatusCommand(t *testing.T) {
	app := startApp(t, "app1", nil, nil)
	admin := freeAddr(t)
	e, _ := startEdge(t, edgeConfig("127.0.0.1:0", app, admin))
	_ = e
	var out string
	deadline := time.Now().Add(time.Minute)
	for {
		var err error
		out, err = runCLI(t, nil, "status", "--admin-url", "http://"+admin)
		if err == nil && strings.Contains(out, "myapp") && strings.Contains(out, " UP ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: %v\n%s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out, "LISTEN") || !strings.Contains(out, app) {
		t.Fatalf("status table:\n%s", out)
	}
	out, err := runCLI(t, []string{"PGSWITCH_EDGE_ADMIN_URL=http://" + admin}, "status", "--json")
	if err != nil || !strings.Contains(out, `"name": "app"`) || !strings.Contains(out, `"up": true`) {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if out, err := runCLI(t, nil, "status", "--admin-url", "http://"+freeAddr(t)); err == nil {
		t.Fatalf("status against nothing succeeded:\n%s", out)
	}
}

// TestNoPostgresDependencies: the edge binary carries no PostgreSQL parser
// or driver; of pgswitch's root module it links only health/checkstate.
func TestNoPostgresDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		switch {
		case strings.Contains(pkg, "pg_query"), strings.Contains(pkg, "jackc/"), strings.Contains(pkg, "pganalyze"):
			t.Errorf("pgswitch-edge links %s", pkg)
		case strings.HasPrefix(pkg, "github.com/pgswitch/pgswitch/") && !strings.HasPrefix(pkg, "github.com/pgswitch/pgswitch/edge") &&
			pkg != "github.com/pgswitch/pgswitch/health/checkstate":
			t.Errorf("pgswitch-edge links %s from the root module", pkg)
		}
	}
	if !strings.Contains(string(out), "github.com/pgswitch/pgswitch/health/checkstate") {
		t.Error("pgswitch-edge does not use the shared health/checkstate")
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// cli runs the built binary with extra environment; it returns stdout,
// stderr and the exit code.
func cli(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func mustCLI(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, env, args...)
	if code != 0 {
		t.Fatalf("pgswitch %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// checkAligned checks that every line of a table starts its columns where
// the header does.
func checkAligned(t *testing.T, table string, header ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("table has no rows:\n%s", table)
	}
	for _, h := range header {
		at := strings.Index(lines[0], h)
		if at < 0 {
			t.Fatalf("header lacks %s:\n%s", h, table)
		}
		for _, l := range lines[1:] {
			if len(l) <= at || (at > 0 && l[at-1] != ' ') || l[at] == ' ' {
				t.Fatalf("column %s not aligned in %q:\n%s", h, l, table)
			}
		}
	}
}

func TestConsoleCommands(t *testing.T) {
	cl := startCluster(t)
	s := startServe(t, serveConfig(cl, true, "metrics_listen: 127.0.0.1:0\n"))
	var m []string
	eventually(t, "metrics address logged", func() error {
		if m = regexp.MustCompile(`msg="metrics listening" addr=(\S+)`).FindStringSubmatch(s.logs.String()); m == nil {
			return errors.New(s.logs.String())
		}
		return nil
	})
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "pgswitch_server_up") {
		t.Fatalf("metrics_listen /metrics: %d\n%s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app, err := pgx.Connect(ctx, s.url(cl, cl.Database)+"&default_query_exec_mode=exec")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	for range 4 {
		if _, err := app.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	adminURL := s.url(cl, "pgswitch")
	byEnv := []string{adminURLEnv + "=" + adminURL}

	out := mustCLI(t, nil, "pools", "--admin-url", adminURL)
	checkAligned(t, out, "DATABASE", "USER", "CL_ACTIVE", "SV_IDLE", "POOL_MODE")
	if !strings.Contains(out, cl.Database) || !strings.Contains(out, "transaction") {
		t.Fatalf("pools:\n%s", out)
	}

	out = mustCLI(t, byEnv, "servers")
	checkAligned(t, out, "SERVER", "ROLE", "STATE", "LAG_BYTES", "READS_ROUTED")
	if strings.Count(out, " up ") != 3 || strings.Count(out, "replica") != 2 || strings.Count(out, "primary") != 1 {
		t.Fatalf("servers: want a primary and two replicas up:\n%s", out)
	}

	out = mustCLI(t, byEnv, "clients")
	checkAligned(t, out, "USER", "DATABASE", "STATE", "ADDR")
	if !strings.Contains(out, cl.User) || !strings.Contains(out, "127.0.0.1") {
		t.Fatalf("clients:\n%s", out)
	}

	var stats []map[string]any
	if err := json.Unmarshal([]byte(mustCLI(t, byEnv, "stats", "--json")), &stats); err != nil {
		t.Fatalf("stats --json: %v", err)
	}
	if len(stats) != 1 || stats[0]["database"] != cl.Database {
		t.Fatalf("stats --json: %v", stats)
	}
	if n, ok := stats[0]["reads_routed"].(float64); !ok || n < 4 {
		t.Fatalf("stats --json reads_routed = %v, want a number >= 4", stats[0]["reads_routed"])
	}
	var clients []map[string]any
	if err := json.Unmarshal([]byte(mustCLI(t, byEnv, "clients", "--json")), &clients); err != nil || len(clients) != 1 {
		t.Fatalf("clients --json: %v %v", clients, err)
	}

	// --config: the address and the first admin user's password.
	text := strings.Replace(serveConfig(cl, true, ""), "listen: 127.0.0.1:0", "listen: "+s.addr, 1)
	if err := os.WriteFile(s.path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out = mustCLI(t, nil, "status", "--config", s.path)
	if !strings.HasPrefix(out, "pgswitch "+version) || !strings.Contains(out, "primary") || !strings.Contains(out, cl.Database) {
		t.Fatalf("status:\n%s", out)
	}

	if out := mustCLI(t, byEnv, "pause", cl.Database); !strings.Contains(out, "paused: "+cl.Database) {
		t.Fatalf("pause: %q", out)
	}
	var status struct {
		Databases []map[string]any `json:"databases"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, byEnv, "status", "--json")), &status); err != nil {
		t.Fatal(err)
	}
	if len(status.Databases) != 1 || status.Databases[0]["paused"] != float64(1) {
		t.Fatalf("status --json after pause: %v", status.Databases)
	}
	if out := mustCLI(t, byEnv, "resume"); !strings.Contains(out, "resumed: all databases") {
		t.Fatalf("resume: %q", out)
	}
	if _, err := app.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("query after resume: %v", err)
	}
	if out := mustCLI(t, byEnv, "reload"); !strings.Contains(out, "reloaded") {
		t.Fatalf("reload: %q", out)
	}

	// Errors: one line on stderr, a non-zero exit code.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"pools"}, "no admin console given"},
		{nil, []string{"pools", "--admin-url", "postgres://x:y@" + closed + "/pgswitch?sslmode=disable"}, "cannot reach the admin console"},
		{byEnv, []string{"pause", "no_such_db"}, "3D000"},
		{nil, []string{"stats", "--config", "/nonexistent/pgswitch.yaml"}, "nonexistent"},
	} {
		out, errOut, code := cli(t, c.env, c.args...)
		if code == 0 || out != "" || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("pgswitch %s: exit %d, stdout %q, stderr %q; want one line with %q and a non-zero exit",
				strings.Join(c.args, " "), code, out, errOut, c.want)
		}
		if strings.Contains(errOut, cl.Password) {
			t.Errorf("pgswitch %s printed the password", strings.Join(c.args, " "))
		}
	}
}

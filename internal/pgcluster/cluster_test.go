package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// cl is this package's cluster: a primary and two replicas.
var cl *Cluster

func TestMain(m *testing.M) { os.Exit(Main(m, Options{}, &cl)) }

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// connect logs in over TCP with the cluster's SCRAM user, as pgswitch will.
func connect(t *testing.T, ctx context.Context, c *Cluster, s *Server) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, c.DSN(s))
	if err != nil {
		t.Fatalf("connect to %s: %v", s.Name, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func inRecovery(t *testing.T, ctx context.Context, conn *pgx.Conn) bool {
	t.Helper()
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&got); err != nil {
		t.Fatalf("pg_is_in_recovery: %v", err)
	}
	return got
}

func TestRoles(t *testing.T) {
	ctx := testContext(t)
	if got := len(cl.Replicas); got != 2 {
		t.Fatalf("got %d replicas, want 2", got)
	}
	tests := []struct {
		server       *Server
		wantName     string
		wantRecovery bool
	}{
		{cl.Primary, "primary", false},
		{cl.Replicas[0], "replica1", true},
		{cl.Replicas[1], "replica2", true},
	}
	for _, tt := range tests {
		t.Run(tt.wantName, func(t *testing.T) {
			if tt.server.Name != tt.wantName {
				t.Errorf("got name %q, want %q", tt.server.Name, tt.wantName)
			}
			conn := connect(t, ctx, cl, tt.server)
			if got := inRecovery(t, ctx, conn); got != tt.wantRecovery {
				t.Errorf("got pg_is_in_recovery() = %v, want %v", got, tt.wantRecovery)
			}
			var user, db, port string
			if err := conn.QueryRow(ctx,
				"SELECT current_user, current_database(), current_setting('port')").Scan(&user, &db, &port); err != nil {
				t.Fatal(err)
			}
			if user != cl.User || db != cl.Database || port != fmt.Sprint(tt.server.Port) {
				t.Errorf("got user %q db %q port %s, want %q %q %d", user, db, port, cl.User, cl.Database, tt.server.Port)
			}
		})
	}
}

func TestUserIsSCRAMSuperuser(t *testing.T) {
	ctx := testContext(t)
	conn := connect(t, ctx, cl, cl.Primary)
	var secret string
	var super bool
	if err := conn.QueryRow(ctx,
		"SELECT rolpassword, rolsuper FROM pg_authid WHERE rolname = current_user").Scan(&secret, &super); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "SCRAM-SHA-256$") {
		t.Errorf("got password stored as %.14q…, want a SCRAM-SHA-256 verifier", secret)
	}
	if !super {
		t.Errorf("got rolsuper false, want true")
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	ctx := testContext(t)
	for _, s := range cl.Servers() {
		t.Run(s.Name, func(t *testing.T) {
			conn, err := pgx.Connect(ctx, s.DSN(cl.User, cl.Password+"x", cl.Database))
			if err == nil {
				conn.Close(ctx)
				t.Fatal("got a connection with a wrong password, want SQLSTATE 28P01")
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
				t.Errorf("got %v, want SQLSTATE 28P01", err)
			}
		})
	}
}

// insertAndCheck writes a fresh row on the primary and checks every running
// replica sees it after WaitReplicated.
func insertAndCheck(t *testing.T, ctx context.Context, c *Cluster, replicas []*Server) {
	t.Helper()
	primary := connect(t, ctx, c, c.Primary)
	if _, err := primary.Exec(ctx, "CREATE TABLE IF NOT EXISTS marks (v text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	want := randomSecret()
	if _, err := primary.Exec(ctx, "INSERT INTO marks VALUES ($1)", want); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicated(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range replicas {
		conn := connect(t, ctx, c, r)
		var got int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM marks WHERE v = $1", want).Scan(&got); err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		if got != 1 {
			t.Errorf("%s: got %d rows with the new value, want 1", r.Name, got)
		}
	}
}

func TestReplication(t *testing.T) {
	insertAndCheck(t, testContext(t), cl, cl.Replicas)
}

func TestStopStartReplica(t *testing.T) {
	r := cl.Replicas[1]
	tests := []struct {
		name  string
		cycle func(t *testing.T) error
	}{
		{"stop fast, start", func(t *testing.T) error {
			if err := cl.StopServer(r, "fast"); err != nil {
				return err
			}
			if cl.Running(r) {
				return errors.New("got running after StopServer, want stopped")
			}
			ctx := testContext(t)
			if conn, err := pgx.Connect(ctx, cl.DSN(r)); err == nil {
				conn.Close(ctx)
				return errors.New("got a connection to a stopped server, want refused")
			}
			// The primary moves on while the replica is down.
			insertAndCheck(t, ctx, cl, cl.Replicas[:1])
			return cl.StartServer(r)
		}},
		{"stop immediate, start", func(t *testing.T) error {
			if err := cl.StopServer(r, "immediate"); err != nil {
				return err
			}
			return cl.StartServer(r)
		}},
		{"restart smart", func(t *testing.T) error { return cl.RestartServer(r, "smart") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cycle(t); err != nil {
				t.Fatal(err)
			}
			ctx := testContext(t)
			if !cl.Running(r) {
				t.Fatal("got stopped after StartServer, want running")
			}
			if err := cl.WaitStreaming(ctx, r); err != nil {
				t.Fatal(err)
			}
			if got := inRecovery(t, ctx, connect(t, ctx, cl, r)); !got {
				t.Errorf("got pg_is_in_recovery() = false, want true")
			}
			insertAndCheck(t, ctx, cl, cl.Replicas)
		})
	}
}

func TestStopServerRejectsUnknownMode(t *testing.T) {
	if err := cl.StopServer(cl.Replicas[0], "gentle"); err == nil {
		t.Fatal("got nil error for stop mode \"gentle\", want an error")
	}
	if !cl.Running(cl.Replicas[0]) {
		t.Fatal("got replica1 stopped by a refused stop, want running")
	}
}

// TestPromoteOwnCluster promotes the replica of a cluster of its own, so the
// package cluster keeps its shape; it also covers a given BaseDir and Stop.
func TestPromoteOwnCluster(t *testing.T) {
	ctx := testContext(t)
	base, err := os.MkdirTemp("", "pgswitch-given-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })

	var logs bytes.Buffer // written by the tailer only, read after Stop
	began := time.Now()
	c, err := Start(ctx, Options{Replicas: 1, BaseDir: base, User: "promo", DatabaseName: "promo_db", Log: &logs})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start with 1 replica took %v", time.Since(began))
	t.Cleanup(func() { c.Stop() })

	insertAndCheck(t, ctx, c, c.Replicas)
	r := c.Replicas[0]
	if err := c.Promote(r); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, ctx, c, r)
	if got := inRecovery(t, ctx, conn); got {
		t.Errorf("got pg_is_in_recovery() = true after Promote, want false")
	}
	if _, err := conn.Exec(ctx, "INSERT INTO marks VALUES ('written on the promoted replica')"); err != nil {
		t.Errorf("write on the promoted replica: %v", err)
	}
	// The promoted server no longer follows, so there is nothing to wait for.
	if err := c.WaitReplicated(ctx); err != nil {
		t.Errorf("WaitReplicated after Promote: %v", err)
	}
	conn.Close(ctx)

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: got %v, want nil", err)
	}
	for _, s := range c.Servers() {
		if conn, err := pgx.Connect(ctx, c.DSN(s)); err == nil {
			conn.Close(ctx)
			t.Errorf("%s: got a connection after Stop, want refused", s.Name)
		}
	}
	left, err := os.ReadDir(base)
	if err != nil {
		t.Fatalf("got %v, want the given BaseDir kept", err)
	}
	if len(left) != 0 {
		t.Errorf("got %d entries left in the given BaseDir, want 0", len(left))
	}
	for _, want := range []string{
		"[primary] ", "database system is ready to accept connections",
		"[replica1] ", "received promote request",
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("got server logs without %q, want it there", want)
		}
	}
}

func TestStartFailureCleansUp(t *testing.T) {
	ctx := testContext(t)
	base, err := os.MkdirTemp("", "pgswitch-given-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })

	c, err := Start(ctx, Options{BaseDir: base, ExtraConf: []string{"no_such_setting = 1"}})
	if err == nil {
		c.Stop()
		t.Fatal("got a cluster with a bad postgresql.conf, want an error")
	}
	// The error must carry the server's own explanation from its log.
	if !strings.Contains(err.Error(), "no_such_setting") {
		t.Errorf("got error %q, want it to name the bad setting", err)
	}
	left, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("got %d entries left after a failed Start, want 0", len(left))
	}
}

func TestDSN(t *testing.T) {
	s := &Server{Host: "127.0.0.1", Port: 5433}
	tests := []struct {
		user, password, db string
	}{
		{"app", "secret", "app"},
		{"a b", "p@ss:/?#%", "my db"},
		{"nopass", "", "x"},
	}
	for _, tt := range tests {
		cfg, err := pgx.ParseConfig(s.DSN(tt.user, tt.password, tt.db))
		if err != nil {
			t.Fatalf("%q: %v", s.DSN(tt.user, tt.password, tt.db), err)
		}
		if cfg.Host != "127.0.0.1" || cfg.Port != 5433 || cfg.User != tt.user ||
			cfg.Password != tt.password || cfg.Database != tt.db || cfg.TLSConfig != nil {
			t.Errorf("got host %q port %d user %q password %q db %q tls %v, want 127.0.0.1 5433 %q %q %q no TLS",
				cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database, cfg.TLSConfig != nil,
				tt.user, tt.password, tt.db)
		}
	}
}

type fakeRun struct{ ran bool }

func (f *fakeRun) Run() int { f.ran = true; return 0 }

func TestMainWithoutPostgres(t *testing.T) {
	t.Setenv(binDirEnv, t.TempDir()) // a directory with no initdb in it
	tests := []struct {
		ci       string
		wantCode int
		wantText string
	}{
		{"true", 1, "FAIL"},
		{"", 0, "SKIP"},
		{"false", 0, "SKIP"},
	}
	for _, tt := range tests {
		t.Setenv("CI", tt.ci)
		var out bytes.Buffer
		var run fakeRun
		var got *Cluster
		code := runMain(&run, Options{}, &got, &out)
		if code != tt.wantCode {
			t.Errorf("CI=%q: got exit code %d, want %d", tt.ci, code, tt.wantCode)
		}
		if !strings.Contains(out.String(), tt.wantText) || !strings.Contains(out.String(), "initdb") {
			t.Errorf("CI=%q: got output %q, want it to say %s and what is missing", tt.ci, out.String(), tt.wantText)
		}
		if run.ran || got != nil {
			t.Errorf("CI=%q: got tests run %v, cluster %v; want neither", tt.ci, run.ran, got)
		}
	}
}

func TestStartRefusesNonEmptyBaseDir(t *testing.T) {
	base, err := os.MkdirTemp("", "pgswitch-given-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	keep := base + "/primary"
	if err := os.WriteFile(keep, []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}

	c, err := Start(testContext(t), Options{BaseDir: base})
	if err == nil {
		c.Stop()
		t.Fatal("got a cluster in a non-empty BaseDir, want an error")
	}
	if got, err := os.ReadFile(keep); err != nil || string(got) != "not ours" {
		t.Errorf("got %q, %v for the caller's file, want it untouched", got, err)
	}
}

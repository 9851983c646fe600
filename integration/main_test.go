// Package integration runs pgswitch end to end against a real PostgreSQL
// primary and two streaming replicas started by the cluster harness.
package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/integration/cluster"
	"github.com/pgswitch/pgswitch/router"
)

var cl *cluster.Cluster

func TestMain(m *testing.M) { os.Exit(cluster.Main(m, cluster.Options{}, &cl)) }

var dbSeq atomic.Int64

// newDatabase creates a database of its own for the test on the primary, so
// tests can run in parallel without seeing each other's tables.
func newDatabase(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t_%s_%d", strings.ToLower(sanitize(t.Name())), dbSeq.Add(1))
	if len(name) > 60 {
		name = name[len(name)-60:]
		name = "t" + name[1:]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := primaryConn(t, cl.Database)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	// Replicas can serve it once they replayed its creation.
	if err := cl.WaitReplicated(ctx); err != nil {
		t.Fatal(err)
	}
	return name
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// primaryConn connects straight to the primary, bypassing pgswitch.
func primaryConn(t *testing.T, db string) *pgx.Conn {
	t.Helper()
	return directConn(t, cl.Primary, db)
}

func directConn(t *testing.T, s *cluster.Server, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN(cl.User, cl.Password, db))
	if err != nil {
		t.Fatalf("connect to %s: %v", s.Name, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// proxy is a pgswitch router running in the test process.
type proxy struct {
	addr string
	r    *router.Router
	cfg  *config.Config
}

// proxyOptions shape the configuration of startProxy.
type proxyOptions struct {
	mode     config.PoolMode
	poolSize int
	dbs      []string // databases to publish; each points at the same name on the servers
	yaml     string   // extra top-level YAML
	primary  bool     // only the primary as server (no replicas)
	// extraUsers are more entries for the users map, indented as its children.
	extraUsers string
	// aliases publish more database names: name → "route dbname".
	aliases map[string][2]string
}

// startProxy runs pgswitch in front of the cluster on a free loopback port.
func startProxy(t *testing.T, o proxyOptions) *proxy {
	t.Helper()
	if o.mode == "" {
		o.mode = config.PoolModeTransaction
	}
	if o.poolSize == 0 {
		o.poolSize = 10
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\npool_mode: %s\npool:\n  size: %d\n", o.mode, o.poolSize)
	if !strings.Contains(o.yaml, "timeouts:") {
		b.WriteString("timeouts:\n  query_wait: 20s\n")
	}
	b.WriteString(o.yaml)
	b.WriteString("databases:\n")
	type published struct{ name, route, dbname string }
	var pubs []published
	for _, db := range o.dbs {
		pubs = append(pubs, published{db, "auto", db})
	}
	for name, a := range o.aliases {
		pubs = append(pubs, published{name, a[0], a[1]})
	}
	for _, pub := range pubs {
		fmt.Fprintf(&b, "  %s:\n    route: %s\n    dbname: %s\n    servers:\n", pub.name, pub.route, pub.dbname)
		for _, s := range cl.Servers() {
			role := "replica"
			if s == cl.Primary {
				role = "primary"
			} else if o.primary {
				continue
			}
			fmt.Fprintf(&b, "      - {host: %q, port: %d, role: %s}\n", s.Host, s.Port, role)
		}
	}
	fmt.Fprintf(&b, "users:\n  %s:\n    password: %q\n", cl.User, cl.Password)
	b.WriteString(strings.TrimPrefix(o.extraUsers, "users:\n"))
	cfg, err := config.Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("PGSWITCH_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r, err := router.New(cfg, logger)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Serve(ln)
	}()
	t.Cleanup(func() {
		r.Close()
		<-done
	})
	return &proxy{addr: ln.Addr().String(), r: r, cfg: cfg}
}

// url returns a connection URL through pgswitch.
func (p *proxy) url(db string) string {
	return p.urlAs(cl.User, cl.Password, db)
}

func (p *proxy) urlAs(user, password, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: p.addr, Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// connect opens a pgx connection through pgswitch.
func (p *proxy) connect(t testing.TB, db string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(p.url(db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect through pgswitch: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// ctx returns a context bounded generously for a loaded 2-core machine.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls check until it returns nil or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, check func() error) {
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

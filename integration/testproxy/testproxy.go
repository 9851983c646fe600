// Package testproxy runs a pgswitch router in a test process in front of a
// cluster started by the cluster harness, on a free loopback port.
//
// It is for tests only; it does not start PostgreSQL.
package testproxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/internal/pgcluster"
	"github.com/pgswitch/pgswitch/router"
)

// Options shape the configuration of Start.
type Options struct {
	Mode      config.PoolMode // default transaction
	PoolSize  int             // default 10
	PoolExtra string          // more keys under pool:, each line indented by two spaces
	DBs       []string        // databases to publish, auto route, same name on the servers
	YAML      string          // extra top-level YAML
	Primary   bool            // only the primary as server (no replicas)
	// ExtraUsers are more entries for the users map, indented as its children.
	ExtraUsers string
	// Aliases publish more database names: name → {route, dbname}.
	Aliases map[string][2]string
	// Consistency is routing.consistency (default: pgswitch's, causal).
	// Tests that check where reads land by their classification alone say
	// eventual: under causal a read may wait for, or go past, a replica
	// that has not replayed the test's writes yet.
	Consistency config.Consistency
	// Log, when set, receives pgswitch's log at debug level.
	Log io.Writer
}

// Proxy is a pgswitch router running in the test process.
type Proxy struct {
	Addr string
	R    *router.Router
	Cfg  *config.Config
	Text string // the configuration as written, for a test to edit and reload
	cl   *pgcluster.Cluster
}

// Start runs pgswitch in front of cl until the test ends.
func Start(t testing.TB, cl *pgcluster.Cluster, o Options) *Proxy {
	t.Helper()
	if o.Mode == "" {
		o.Mode = config.PoolModeTransaction
	}
	if o.PoolSize == 0 {
		o.PoolSize = 10
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\npool_mode: %s\npool:\n  size: %d\n", o.Mode, o.PoolSize)
	b.WriteString(o.PoolExtra)
	if !strings.Contains(o.YAML, "timeouts:") {
		b.WriteString("timeouts:\n  query_wait: 20s\n")
	}
	yaml := o.YAML
	if o.Consistency != "" {
		line := "  consistency: " + string(o.Consistency) + "\n"
		if strings.Contains(yaml, "routing:\n") {
			yaml = strings.Replace(yaml, "routing:\n", "routing:\n"+line, 1)
		} else {
			yaml += "routing:\n" + line
		}
	}
	b.WriteString(yaml)
	b.WriteString("databases:\n")
	type published struct{ name, route, dbname string }
	var pubs []published
	for _, db := range o.DBs {
		pubs = append(pubs, published{db, "auto", db})
	}
	for name, a := range o.Aliases {
		pubs = append(pubs, published{name, a[0], a[1]})
	}
	for _, pub := range pubs {
		fmt.Fprintf(&b, "  %s:\n    route: %s\n    dbname: %s\n    servers:\n", pub.name, pub.route, pub.dbname)
		// Named as they start (primary, replica1, replica2), for
		// routing.rules to name.
		n := 0
		for _, s := range cl.Servers() {
			role, name := "replica", "primary"
			if s == cl.Primary {
				role = "primary"
			} else if o.Primary {
				continue
			} else {
				n++
				name = fmt.Sprintf("replica%d", n)
			}
			fmt.Fprintf(&b, "      - {host: %q, port: %d, role: %s, name: %s}\n", s.Host, s.Port, role, name)
		}
	}
	fmt.Fprintf(&b, "users:\n  %s:\n    password: %q\n", cl.User, cl.Password)
	b.WriteString(strings.TrimPrefix(o.ExtraUsers, "users:\n"))
	cfg, err := config.Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("PGSWITCH_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.Log != nil {
		logger = slog.New(slog.NewTextHandler(o.Log, &slog.HandlerOptions{Level: slog.LevelDebug}))
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
	return &Proxy{Addr: ln.Addr().String(), R: r, Cfg: cfg, Text: b.String(), cl: cl}
}

// URL returns a connection URL through pgswitch as the cluster's user.
func (p *Proxy) URL(db string) string { return p.URLAs(p.cl.User, p.cl.Password, db) }

// URLAs returns a connection URL through pgswitch.
func (p *Proxy) URLAs(user, password, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: p.Addr, Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Connect opens a pgx connection through pgswitch, closed when the test ends.
func (p *Proxy) Connect(t testing.TB, db string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(p.URL(db))
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

// Eventually polls check until it returns nil or within passes.
func Eventually(t testing.TB, within time.Duration, what string, check func() error) {
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

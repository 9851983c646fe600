package integration

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pgswitch/pgswitch/admin"
	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/router"
)

// serveMetrics runs the metrics listener of r on a free loopback port.
func serveMetrics(t *testing.T, r *router.Router) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := admin.NewMetricsServer(r)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrape fetches /metrics and parses it with Prometheus's text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d\n%s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return families
}

// value returns the value of the series of family name whose labels
// include want, or -1 when there is none.
func value(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := families[name]
	if f == nil {
		return -1
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startAdminProxy(t, proxyOptions{DBs: []string{db}, PoolSize: 1})
	base := serveMetrics(t, p.R)
	ctx := testCtx(t)
	primary := net.JoinHostPort(cl.Primary.Host, fmt.Sprint(cl.Primary.Port))
	replica := net.JoinHostPort(cl.Replicas[0].Host, fmt.Sprint(cl.Replicas[0].Port))

	before := scrape(t, base)
	for _, name := range []string{"pgswitch_clients", "pgswitch_queries_total", "pgswitch_server_up",
		"pgswitch_server_role", "pgswitch_replica_lag_bytes", "pgswitch_replica_lag_seconds",
		"pgswitch_server_role_changes_total", "pgswitch_wait_seconds", "pgswitch_database_paused"} {
		if before[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if v := value(before, "pgswitch_wait_seconds", map[string]string{"database": db}); v != 0 {
		t.Errorf("wait histogram count before any wait = %v, want 0", v)
	}
	if before["pgswitch_wait_seconds"].GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("pgswitch_wait_seconds is a %v, want a histogram", before["pgswitch_wait_seconds"].GetType())
	}
	eventually(t, time.Minute, "health checks see the servers", func() error {
		m := scrape(t, base)
		if value(m, "pgswitch_server_up", map[string]string{"server": primary}) != 1 ||
			value(m, "pgswitch_server_role", map[string]string{"server": primary, "role": "primary"}) != 1 ||
			value(m, "pgswitch_server_role", map[string]string{"server": replica, "role": "replica"}) != 1 {
			return fmt.Errorf("primary or replica not seen up in its role yet")
		}
		return nil
	})
	reads0 := value(before, "pgswitch_queries_total", map[string]string{"database": db, "route": "read"})
	writes0 := value(before, "pgswitch_queries_total", map[string]string{"database": db, "route": "write"})

	app := p.Connect(t, db, pgx.QueryExecModeExec)
	for range 5 {
		if _, err := app.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := app.Exec(ctx, "CREATE TABLE m (id int)"); err != nil {
		t.Fatal(err)
	}
	// Two clients on a pool of one server connection: one waits.
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO m VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	other := p.Connect(t, db, pgx.QueryExecModeExec)
	done := async(func() error { _, err := other.Exec(ctx, "INSERT INTO m VALUES (2)"); return err })
	eventually(t, time.Minute, "a client waiting", func() error {
		if v := value(scrape(t, base), "pgswitch_waiting_clients", map[string]string{"database": db}); v != 1 {
			return fmt.Errorf("waiting clients %v", v)
		}
		return nil
	})
	after := scrape(t, base)
	if v := value(after, "pgswitch_server_connections", map[string]string{"database": db, "server": primary, "state": "active"}); v != 1 {
		t.Errorf("active server connections to the primary = %v, want 1", v)
	}
	if v := value(after, "pgswitch_clients", map[string]string{"database": db}); v != 2 {
		t.Errorf("pgswitch_clients = %v, want 2", v)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(t, done, "waiting INSERT"); err != nil {
		t.Fatal(err)
	}
	after = scrape(t, base)
	if r := value(after, "pgswitch_queries_total", map[string]string{"database": db, "route": "read"}); r < reads0+5 {
		t.Errorf("read queries went from %v to %v, want +5", reads0, r)
	}
	if w := value(after, "pgswitch_queries_total", map[string]string{"database": db, "route": "write"}); w < writes0+3 {
		t.Errorf("write queries went from %v to %v, want +3", writes0, w)
	}
	if v := value(after, "pgswitch_wait_seconds", map[string]string{"database": db}); v < 1 {
		t.Errorf("wait histogram count = %v, want at least 1 wait", v)
	}
	if v := value(after, "pgswitch_client_sent_bytes_total", map[string]string{"database": db}); v <= 0 {
		t.Errorf("bytes sent = %v, want > 0", v)
	}

	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with the cluster up: %d", code)
	}
}

// TestReadyzWithoutServers: /readyz fails while no server is fit.
func TestReadyzWithoutServers(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`health: {inter: 100ms, fall: 1, timeout: 1s}
databases:
  nowhere:
    servers: [{host: 127.0.0.1, port: %d, role: primary}]
users:
  u:
    password: p
`, dead)))
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	base := serveMetrics(t, r)
	eventually(t, time.Minute, "/readyz 503", func() error {
		if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("status %d", code)
		}
		return nil
	})
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200 while the process runs", code)
	}
}

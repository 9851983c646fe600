package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestHealthDownUpAndBackup: a server whose /health fails is marked down
// (after fall checks), gets no traffic while the backup serves, and comes
// back after rise checks; with nothing up, clients get 503 at once.
func TestHealthDownUpAndBackup(t *testing.T) {
	primary := startApp(t, "app01")
	backup := startApp(t, "app02")
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
admin: {listen: 127.0.0.1:0}
defaults:
  check: {inter: 30ms, downinter: 30ms, fall: 3, rise: 2, timeout: 5s}
listens:
  myapp:
    binds: [127.0.0.1:0]
    http_check: {method: GET, path: /health, expect_status: 200}
    servers:
      - {name: app01, addr: %q}
      - {name: app02, addr: %q, backup: true}
`, primary.addr, backup.addr))
	addr := "http://" + p.addr(t, "myapp", 0)
	client := plainClient()
	isUp := func(name string) bool { up, _ := p.serverUp("myapp", name); return up }

	waitFor(t, func() bool { return primary.checks.Load() >= 2 && backup.checks.Load() >= 2 }, "first checks")
	for range 4 {
		if _, body := get(t, client, addr+"/x"); body != "app01 /x" {
			t.Fatalf("while app01 is up: %q, want app01 (the backup idle)", body)
		}
	}

	primary.healthy.Store(false)
	before := primary.checks.Load()
	waitFor(t, func() bool { return !isUp("app01") }, "app01 marked down")
	if n := primary.checks.Load() - before; n < 3 {
		t.Fatalf("app01 marked down after %d failed checks, want at least fall = 3", n)
	}
	if !strings.Contains(p.log.String(), `msg="server marked down" listen=myapp server=app01`) ||
		!strings.Contains(p.log.String(), "failed_checks=3") {
		t.Fatalf("no log line saying app01 went down after 3 failed checks:\n%s", p.log.String())
	}
	seen := primary.requests.Load()
	for range 4 {
		if status, body := get(t, client, addr+"/x"); status != 200 || body != "app02 /x" {
			t.Fatalf("app01 down: %d %q, want the backup app02", status, body)
		}
	}
	if primary.requests.Load() != seen {
		t.Fatal("a server marked down still got requests")
	}

	// Nothing up: 503 at once, not after a queue timeout.
	backup.healthy.Store(false)
	waitFor(t, func() bool { return !isUp("app02") }, "app02 marked down")
	start := time.Now()
	if status, body := get(t, client, addr+"/x"); status != 503 || !strings.Contains(body, "No server is available") {
		t.Fatalf("nothing up: %d %q, want 503", status, body)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("nothing up: 503 after %v, want it at once (queue timeout is 5s)", d)
	}

	primary.healthy.Store(true)
	backup.healthy.Store(true)
	waitFor(t, func() bool { return isUp("app01") && isUp("app02") }, "app01 and app02 back up")
	if _, body := get(t, client, addr+"/x"); body != "app01 /x" {
		t.Fatalf("app01 back: %q, want app01", body)
	}
	_, metrics := get(t, client, "http://"+p.AdminAddr()+"/metrics")
	for _, want := range []string{
		`pgswitch_edge_server_up{listen="myapp",server="app01"} 1`,
		`pgswitch_edge_http_requests_total{code="2xx",listen="myapp",server="app02"} 4`,
		`pgswitch_edge_http_requests_total{code="5xx",listen="myapp",server="<NOSRV>"} 1`,
		`pgswitch_edge_http_request_duration_seconds_count{listen="myapp"}`,
		`pgswitch_edge_server_checks_total{listen="myapp",server="app01"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	_, table := get(t, client, "http://"+p.AdminAddr()+"/")
	if !strings.Contains(table, "app02") || !strings.Contains(table, "UP (backup)") {
		t.Errorf("status page:\n%s", table)
	}
}

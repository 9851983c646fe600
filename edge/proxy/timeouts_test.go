package proxy

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestServerTimeoutsAndFailures: a server slower than timeouts.server gets
// 504; a server that refuses connections gets 503; both say why in the log.
func TestServerTimeoutsAndFailures(t *testing.T) {
	a := startApp(t, "app01")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
listens:
  slow:
    binds: [127.0.0.1:0]
    timeouts: {server: 200ms}
    servers: [{name: app01, addr: %q, check: false}]
  gone:
    binds: [127.0.0.1:0]
    servers: [{name: gone01, addr: %q, check: false}]
`, a.addr, refused))
	client := plainClient()
	start := time.Now()
	status, body := get(t, client, "http://"+p.addr(t, "slow", 0)+"/slow")
	if status != 504 || !strings.Contains(body, "didn't respond in time") {
		t.Fatalf("slow server: %d %q, want 504", status, body)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("504 after %v, before timeouts.server", d)
	}
	status, _ = get(t, client, "http://"+p.addr(t, "gone", 0)+"/")
	if status != 503 {
		t.Fatalf("refused connection: %d, want 503", status)
	}
	log := p.log.String()
	if !strings.Contains(log, `msg="server timeout: 504" listen=slow server=app01`) ||
		!strings.Contains(log, `msg="server connection failed: 503" listen=gone server=gone01`) {
		t.Fatalf("log lacks the reasons:\n%s", log)
	}
}

// TestKeepAliveTimeout: an idle keep-alive connection is closed after
// http_keep_alive, without an answer.
func TestKeepAliveTimeout(t *testing.T) {
	a := startApp(t, "app01")
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
defaults:
  timeouts: {http_request: 10s, http_keep_alive: 200ms}
listens:
  myapp:
    binds: [127.0.0.1:0]
    servers: [{name: app01, addr: %q, check: false}]
`, a.addr))
	c, err := net.Dial("tcp", p.addr(t, "myapp", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Before the request: the proxy's keep-alive wait starts after its
	// answer, which the test goroutine may be descheduled past.
	start := time.Now()
	io.WriteString(c, "GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(c) // the answer, then EOF when the proxy closes
	if err != nil {
		t.Fatalf("read: %v (the proxy never closed the idle connection)", err)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.1 200 OK") || !strings.HasSuffix(string(got), "app01 /k") {
		t.Fatalf("got %q, want one answer and nothing after it", got)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("closed after %v, before http_keep_alive", d)
	}
}

// TestSlowBodyGets408: a client that stops sending its request body for
// longer than timeouts.client gets 408, not a server error.
func TestSlowBodyGets408(t *testing.T) {
	a := startApp(t, "app01")
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
defaults:
  timeouts: {client: 300ms, server: 1m}
listens:
  myapp:
    binds: [127.0.0.1:0]
    servers: [{name: app01, addr: %q, check: false}]
`, a.addr))
	c, err := net.Dial("tcp", p.addr(t, "myapp", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /echo-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(got), "HTTP/1.1 408 ") {
		t.Fatalf("stalled body: %q, want 408\n%s", got, p.log.String())
	}
}

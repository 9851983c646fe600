package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/edge/internal/testpki"
)

// TestSlowlorisGets408 dribbles request headers one byte at a time: the
// client gets 408 and a close once http_request has passed, while a normal
// client is served meanwhile.
func TestSlowlorisGets408(t *testing.T) {
	a := startApp(t, "app01")
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: %q}
defaults:
  timeouts: {http_request: 700ms, http_keep_alive: 700ms}
listens:
  myapp:
    binds: [127.0.0.1:0]
    servers: [{name: app01, addr: %q, check: false}]
`, logPath, a.addr))
	addr := p.addr(t, "myapp", 0)

	start := time.Now() // before the proxy can have accepted
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	answer := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c) // until the proxy closes
		answer <- string(b)
	}()
	// The request line arrives at once, then a header that never ends.
	io.WriteString(c, "GET /slow-loris HTTP/1.1\r\nHost: x\r\n")
	dribble := "X-Dribble: " + strings.Repeat("a", 10000)
	client := plainClient()
	served := 0
	var got string
loop:
	for i := 0; ; i++ {
		select {
		case got = <-answer:
			break loop
		case <-time.After(20 * time.Millisecond):
		}
		if i < len(dribble) {
			if _, err := c.Write([]byte{dribble[i]}); err != nil {
				got = <-answer
				break loop
			}
		}
		if i%5 == 0 {
			if status, body := get(t, client, "http://"+addr+"/normal"); status != 200 || body != "app01 /normal" {
				t.Fatalf("normal client meanwhile: %d %q", status, body)
			}
			served++
		}
		if time.Since(start) > time.Minute {
			t.Fatal("no answer to the slow client within a minute")
		}
	}
	elapsed := time.Since(start)
	if !strings.HasPrefix(got, "HTTP/1.1 408 ") || !strings.Contains(got, "Connection: close") {
		t.Fatalf("slow client got %q, want a 408 and close", got)
	}
	if elapsed < 700*time.Millisecond {
		t.Fatalf("408 after %v, before http_request (700ms)", elapsed)
	}
	if served == 0 {
		t.Fatal("no normal request was served while the slow client dribbled")
	}
	if n := a.requests.Load(); n != int64(served) {
		t.Fatalf("the app saw %d requests, want the %d normal ones only", n, served)
	}
	waitFor(t, func() bool {
		return strings.Contains(readFile(t, logPath), `"GET /slow-loris HTTP/1.1" 408 `)
	}, "the 408 in the access log")
}

// TestAccessLogCLF: each request leaves one CLF line with its status and
// body size; connections that never sent a request leave none
// (dontlognull), nor does one that sent nothing until http_request.
func TestAccessLogCLF(t *testing.T) {
	a := startApp(t, "app01")
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: %q, format: clf, dontlognull: true}
defaults:
  timeouts: {http_request: 300ms}
  limits: {max_header_bytes: 8192}
listens:
  myapp:
    binds: [127.0.0.1:0]
    servers: [{name: app01, addr: %q, check: false}]
`, logPath, a.addr))
	addr := p.addr(t, "myapp", 0)

	// Empty connections first: one closed at once, one left silent.
	c1, _ := net.Dial("tcp", addr)
	c1.Close()
	c2, _ := net.Dial("tcp", addr)
	c2.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("silent connection: read %d, %v; want it closed without an answer", n, err)
	}
	c2.Close()

	client := plainClient()
	want := []struct {
		path   string
		status int
		bytes  string
	}{
		{"/bytes?n=1234", 200, "1234"},
		{"/bytes?n=0", 200, "-"},
		{"/hello", 200, strconv.Itoa(len("app01 /hello"))},
	}
	for _, w := range want {
		if status, _ := get(t, client, "http://"+addr+w.path); status != w.status {
			t.Fatalf("%s: %d", w.path, status)
		}
	}
	// A request too large: 431 from the proxy, logged without a server.
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/big", nil)
	for i := range 150 {
		req.Header.Add(fmt.Sprintf("X-H%d", i), "v")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("150 headers: %d, want 431", resp.StatusCode)
	}

	// Headers larger than max_header_bytes: 431 from net/http, before the
	// handler; the proxy keeps serving.
	status, _ := rawRequest(t, addr, "GET /huge HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 32<<10)+"\r\n\r\n")
	if !strings.Contains(status, " 431 ") {
		t.Fatalf("32 KiB header: %q, want 431", status)
	}

	clf := regexp.MustCompile(`^(\S+) (\S+) (\S+) \[(\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "([^"]*)" (\d{3}) (\d+|-)$`)
	var lines []string
	waitFor(t, func() bool {
		lines = strings.Split(strings.TrimSpace(readFile(t, logPath)), "\n")
		return len(lines) >= 4
	}, "4 access log lines")
	if len(lines) != 4 {
		t.Fatalf("access log has %d lines, want 4 (no line for empty connections):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for i, line := range lines {
		m := clf.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("line %d is not CLF: %q", i, line)
		}
		if _, err := time.Parse("02/Jan/2006:15:04:05 -0700", m[4]); err != nil {
			t.Fatalf("line %d: date %q: %v", i, m[4], err)
		}
		if m[1] != "127.0.0.1" || m[2] != "-" || m[3] != "-" {
			t.Fatalf("line %d: host/ident/user %q %q %q", i, m[1], m[2], m[3])
		}
		wantReq, wantStatus, wantBytes := "", 0, ""
		if i < 3 {
			wantReq, wantStatus, wantBytes = "GET "+want[i].path+" HTTP/1.1", want[i].status, want[i].bytes
		} else {
			body := "<html><body><h1>431 Request Header Fields Too Large</h1>\nYour browser sent too many header fields.\n</body></html>\n"
			wantReq, wantStatus, wantBytes = "GET /big HTTP/1.1", 431, strconv.Itoa(len(body))
		}
		if m[5] != wantReq || m[6] != strconv.Itoa(wantStatus) || m[7] != wantBytes {
			t.Fatalf("line %d: %q, want request %q status %d bytes %s", i, line, wantReq, wantStatus, wantBytes)
		}
	}
}

// TestMaxConnQueue: with maxconn 2, ten concurrent slow requests reach the
// app at most two at a time and all succeed; the queue length shows in
// the metrics. With a short queue timeout the excess gets 503.
func TestMaxConnQueue(t *testing.T) {
	a := startApp(t, "app01")
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
admin: {listen: 127.0.0.1:0}
listens:
  myapp:
    binds: [127.0.0.1:0]
    timeouts: {queue: 1m, server: 1m}
    servers: [{name: app01, addr: %q, check: false, maxconn: 2}]
  short:
    binds: [127.0.0.1:0]
    timeouts: {queue: 200ms, server: 1m}
    servers: [{name: app01, addr: %q, check: false, maxconn: 2}]
`, a.addr, a.addr))
	client := plainClient()
	run := func(addr string, n int) []int {
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				resp, err := client.Get("http://" + addr + "/slow")
				if err != nil {
					t.Errorf("request %d: %v", i, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			})
		}
		wg.Wait()
		return statuses
	}
	metricsURL := "http://" + p.AdminAddr() + "/metrics"
	done := make(chan []int)
	go func() { done <- run(p.addr(t, "myapp", 0), 10) }()
	waitFor(t, func() bool {
		_, body := get(t, client, metricsURL)
		return a.inFlight.Load() == 2 && strings.Contains(body, `pgswitch_edge_queue_length{listen="myapp"} 8`)
	}, "2 requests at the app and 8 queued in the metrics")
	a.open()
	statuses := <-done
	for i, s := range statuses {
		if s != 200 {
			t.Fatalf("request %d: status %d, want 200 (all: %v)", i, s, statuses)
		}
	}
	if m := a.maxSeen.Load(); m != 2 {
		t.Fatalf("the app saw up to %d requests at once, want 2", m)
	}

	// Short queue timeout: the gate is closed again, two requests hold
	// both slots, the other eight wait 200ms and get 503.
	a.mu.Lock()
	a.gate = make(chan struct{})
	a.mu.Unlock()
	go func() { done <- run(p.addr(t, "short", 0), 10) }()
	var s503 int
	waitFor(t, func() bool {
		_, body := get(t, client, metricsURL)
		return strings.Contains(body, `pgswitch_edge_refused_total{listen="short",reason="queue_timeout"} 8`)
	}, "8 queue timeouts")
	a.open()
	for _, s := range <-done {
		if s == 503 {
			s503++
		} else if s != 200 {
			t.Fatalf("status %d", s)
		}
	}
	if s503 != 8 {
		t.Fatalf("%d requests got 503, want 8", s503)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestClientLeavesQueue: a request waiting in the queue is dropped when its
// client closes the connection (plainly, or over TLS with a close_notify),
// so the server never sees it; a request pipelined behind a queued one is
// served in turn.
func TestClientLeavesQueue(t *testing.T) {
	a := startApp(t, "app01")
	ca := testpki.NewCA(t, "edge test CA")
	dir := t.TempDir()
	ca.Issue(t, []string{"a.test"}, time.Time{}, time.Time{}).WriteCombined(t, filepath.Join(dir, "a.pem"))
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: %q}
admin: {listen: 127.0.0.1:0}
listens:
  myapp:
    binds:
      - 127.0.0.1:0
      - addr: 127.0.0.1:0
        tls: {cert_dir: %q}
    timeouts: {queue: 1m, server: 1m}
    servers: [{name: app01, addr: %q, check: false, maxconn: 1}]
`, logPath, dir, a.addr))
	plainAddr, tlsAddr := p.addr(t, "myapp", 0), p.addr(t, "myapp", 1)
	client := plainClient()
	metricsURL := "http://" + p.AdminAddr() + "/metrics"
	queued := func(n int) func() bool {
		return func() bool {
			_, body := get(t, client, metricsURL)
			return strings.Contains(body, fmt.Sprintf(`pgswitch_edge_queue_length{listen="myapp"} %d`, n))
		}
	}

	// One slow request holds the only slot.
	held := make(chan int, 1)
	go func() {
		resp, err := client.Get("http://" + plainAddr + "/slow")
		if err != nil {
			t.Error(err)
			held <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	waitFor(t, func() bool { return a.inFlight.Load() == 1 }, "the slow request at the app")

	plain, err := net.Dial("tcp", plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(plain, "GET /left-plain HTTP/1.1\r\nHost: x\r\n\r\n")
	tc, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(tc, "GET /left-tls HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, queued(2), "2 requests queued")
	plain.Close()
	tc.Close() // sends close_notify first
	waitFor(t, queued(0), "the queue empty once both clients left")

	// A pipelined request behind a queued one: both answered, in order.
	pc, err := net.Dial("tcp", plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	io.WriteString(pc, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, queued(1), "the first pipelined request queued")
	io.WriteString(pc, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	a.open()
	if s := <-held; s != 200 {
		t.Fatalf("the slow request: status %d", s)
	}
	pc.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(pc)
	for _, want := range []string{"app01 /first", "app01 /second"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
	if n := a.requests.Load(); n != 3 {
		t.Fatalf("the app saw %d requests, want 3 (the two abandoned ones never reach it)", n)
	}
	waitFor(t, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), `"GET /left-plain HTTP/1.1" 499`) && strings.Contains(string(b), `"GET /left-tls HTTP/1.1" 499`)
	}, "both abandoned requests logged with 499")
}

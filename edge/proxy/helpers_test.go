package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/edge/config"
)

// app is a real HTTP server on loopback standing for the application. It
// names itself in every answer, counts requests, and can hold requests at
// a gate to keep them in flight.
type app struct {
	name    string
	addr    string
	healthy atomic.Bool
	// requests counts requests other than health checks.
	requests atomic.Int64
	checks   atomic.Int64
	inFlight atomic.Int64
	maxSeen  atomic.Int64

	mu       sync.Mutex
	gate     chan struct{} // /slow waits for it to close
	lastHdr  http.Header
	lastHost string
}

func startApp(t *testing.T, name string) *app {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &app{name: name, addr: ln.Addr().String(), gate: make(chan struct{})}
	a.healthy.Store(true)
	srv := &http.Server{Handler: a}
	go srv.Serve(ln)
	t.Cleanup(func() {
		a.open()
		srv.Close()
	})
	return a
}

// open lets held requests go on, and later ones pass at once.
func (a *app) open() {
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-a.gate:
	default:
		close(a.gate)
	}
}

func (a *app) header() (http.Header, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastHdr, a.lastHost
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		a.checks.Add(1)
		if !a.healthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
		return
	}
	a.requests.Add(1)
	n := a.inFlight.Add(1)
	defer a.inFlight.Add(-1)
	for {
		m := a.maxSeen.Load()
		if n <= m || a.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	a.mu.Lock()
	a.lastHdr, a.lastHost = r.Header.Clone(), r.Host
	gate := a.gate
	a.mu.Unlock()
	switch r.URL.Path {
	case "/slow":
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	case "/bytes":
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(bytes.Repeat([]byte("x"), n))
		return
	case "/ws":
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		// Echo, upper-cased, line by line.
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString(strings.ToUpper(line))
			brw.Flush()
		}
	case "/echo-body":
		body, _ := io.ReadAll(r.Body)
		w.Write(body)
		return
	}
	fmt.Fprintf(w, "%s %s", a.name, r.URL.Path)
}

// logBuffer collects pgswitch-edge's own log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// running is a proxy started in the test.
type running struct {
	*Proxy
	log *logBuffer
}

// startProxy parses cfgText and starts a proxy, stopped when the test ends.
func startProxy(t *testing.T, cfgText string) *running {
	t.Helper()
	cfg, err := config.Parse([]byte(cfgText))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, cfgText)
	}
	lb := &logBuffer{}
	p, err := Start(cfg, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	return &running{Proxy: p, log: lb}
}

// addr returns the i-th bind address of a listen.
func (r *running) addr(t *testing.T, listen string, i int) string {
	t.Helper()
	addrs := r.Addrs()[listen]
	if len(addrs) <= i {
		t.Fatalf("listen %s has binds %v", listen, addrs)
	}
	return addrs[i]
}

// serverUp reports a server's state from the proxy's status.
func (r *running) serverUp(listen, server string) (up, found bool) {
	for _, l := range r.Status().Listens {
		for _, s := range l.Servers {
			if l.Name == listen && s.Name == server {
				return s.Up, true
			}
		}
	}
	return false, false
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// get fetches url and returns its status and body.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// plainClient is an HTTP/1.1 client with keep-alive.
func plainClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 60 * time.Second}
}

// rawRequest sends raw bytes on a new connection and returns the answer's
// status line and the rest.
func rawRequest(t *testing.T, addr, req string) (string, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading answer: %v", err)
	}
	rest, _ := io.ReadAll(br)
	return strings.TrimSpace(status), string(rest)
}

// startProxyErr tries to start a proxy that must fail.
func startProxyErr(cfgText string) (*Proxy, error) {
	cfg, err := config.Parse([]byte(cfgText))
	if err != nil {
		return nil, err
	}
	p, err := Start(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		p.Shutdown(context.Background())
	}
	return p, err
}

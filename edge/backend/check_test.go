package backend

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/edge/config"
)

// manualClock fires timers only when the test advances it.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	pending []pendingTimer
	asked   []time.Duration // every wait asked for, in order
}

type pendingTimer struct {
	at time.Time
	ch chan time.Time
}

func newManualClock() *manualClock {
	return &manualClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.pending = append(c.pending, pendingTimer{c.now.Add(d), ch})
	c.asked = append(c.asked, d)
	return ch
}

// advance moves time on by d and fires the timers due.
func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.pending[:0]
	for _, p := range c.pending {
		if p.at.After(c.now) {
			kept = append(kept, p)
			continue
		}
		p.ch <- c.now
	}
	c.pending = kept
}

// lastAsked returns the latest wait asked for and how many were asked.
func (c *manualClock) lastAsked() (time.Duration, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.asked) == 0 {
		return 0, 0
	}
	return c.asked[len(c.asked)-1], len(c.asked)
}

// healthServer is a real HTTP server on loopback whose /health answers
// 200 or 500 as the test says, counting the checks it sees.
type healthServer struct {
	addr   string
	ok     atomic.Bool
	checks atomic.Int64
}

func startHealthServer(t *testing.T) *healthServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &healthServer{addr: ln.Addr().String()}
	h.ok.Store(true)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		h.checks.Add(1)
		if !h.ok.Load() {
			http.Error(w, "failing", http.StatusInternalServerError)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

// TestHTTPCheckFallRise drives real HTTP checks on a manual clock: the
// server goes down after exactly fall failed checks and comes back after
// exactly rise successful ones, waiting inter while up and downinter while
// down.
func TestHTTPCheckFallRise(t *testing.T) {
	h := startHealthServer(t)
	l := &config.Listen{Name: "app", Mode: config.ModeHTTP,
		Settings: config.Settings{
			Timeouts:  config.Timeouts{Connect: 5 * time.Second},
			Check:     config.Check{Inter: time.Second, DownInter: 7 * time.Second, Fall: 3, Rise: 2, Timeout: 10 * time.Second},
			HTTPCheck: config.HTTPCheck{Method: "GET", Path: "/health"},
		},
		Servers: []*config.Server{{Name: "app01", Addr: h.addr, Weight: 1}},
	}
	clock := newManualClock()
	p, err := NewPool(l, Options{Clock: clock, NewProber: NewProber})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	checks := 0
	// step advances the clock by the wait the loop asked for, then waits
	// until the check ran and the loop asked for its next wait.
	step := func() time.Duration {
		t.Helper()
		wait, n := clock.lastAsked()
		clock.advance(wait)
		checks++
		waitFor(t, func() bool { _, m := clock.lastAsked(); return m == n+1 }, "the next check")
		if got := h.checks.Load(); got != int64(checks) {
			t.Fatalf("server saw %d checks, want %d", got, checks)
		}
		next, _ := clock.lastAsked()
		return next
	}
	// The first check runs at once.
	checks = 1
	waitFor(t, func() bool { _, n := clock.lastAsked(); return n == 1 }, "the first check")
	if st := p.Status()[0]; !st.Up || st.Checks != 1 {
		t.Fatalf("after a good first check: %+v", st)
	}

	h.ok.Store(false)
	for i := 1; i <= 3; i++ {
		next := step()
		up := p.Status()[0].Up
		if want := i < 3; up != want {
			t.Fatalf("after %d failed checks: up %v, want %v", i, up, want)
		}
		if want := map[bool]time.Duration{true: time.Second, false: 7 * time.Second}[up]; next != want {
			t.Fatalf("after %d failed checks: next check in %v, want %v", i, next, want)
		}
	}
	if _, err := p.Acquire(context.Background(), time.Second); err != ErrNoServer {
		t.Fatalf("down server: acquire got %v, want ErrNoServer", err)
	}
	st := p.Status()[0]
	if st.LastErr == "" || st.Failures != 3 || !st.Since.Equal(clock.Now()) {
		t.Fatalf("down status %+v lacks the reason, count or time", st)
	}

	h.ok.Store(true)
	if step(); p.Status()[0].Up {
		t.Fatal("up after 1 successful check, want rise = 2")
	}
	if next := step(); !p.Status()[0].Up || next != time.Second {
		t.Fatalf("after 2 successful checks: up %v next %v, want up, 1s", p.Status()[0].Up, next)
	}
}

func TestTCPCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	l := &config.Listen{Name: "redis", Mode: config.ModeTCP,
		Settings: config.Settings{Timeouts: config.Timeouts{Connect: time.Second}}}
	probe, err := NewProber(l, &config.Server{Addr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := probe(context.Background()); err != nil {
		t.Fatalf("listening server: %v", err)
	}
	ln.Close()
	if err := probe(context.Background()); err == nil {
		t.Fatal("closed port: check passed")
	}
}

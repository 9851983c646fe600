package backend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/edge/config"
)

// listenOf is a listen of servers named by spec: "a" a server, "b!" a
// backup, "c:2" maxconn 2. Checks are off unless a test turns them on.
func listenOf(specs ...string) *config.Listen {
	l := &config.Listen{Name: "test", Mode: config.ModeHTTP}
	l.Check = config.Check{Inter: time.Second, DownInter: 5 * time.Second, Fall: 3, Rise: 2, Timeout: time.Second}
	off := false
	for i, spec := range specs {
		s := &config.Server{Addr: fmt.Sprintf("127.0.0.1:%d", 10000+i), Weight: 1, Check: &off}
		var name string
		var maxconn int
		switch {
		case len(spec) > 1 && spec[len(spec)-1] == '!':
			name, s.Backup = spec[:len(spec)-1], true
		default:
			if n, _ := fmt.Sscanf(spec, "%1s:%d", &name, &maxconn); n == 2 {
				s.MaxConn = maxconn
			} else {
				name = spec
			}
		}
		s.Name = name
		l.Servers = append(l.Servers, s)
	}
	return l
}

func newTestPool(t *testing.T, l *config.Listen) *Pool {
	t.Helper()
	p, err := NewPool(l, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// setUp forces a server's health as if checks had decided it.
func setUp(p *Pool, name string, up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.servers {
		if s.Name == name {
			s.Checked = true
			for s.check.Up() != up {
				s.check.Observe(up)
			}
		}
	}
	p.dispatchLocked()
}

func acquireName(t *testing.T, p *Pool) string {
	t.Helper()
	s, err := p.Acquire(context.Background(), time.Second)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	p.Release(s)
	return s.Name
}

func TestRoundRobinAndBackups(t *testing.T) {
	p := newTestPool(t, listenOf("a", "b", "x!", "y!"))
	got := ""
	for range 4 {
		got += acquireName(t, p)
	}
	if got != "abab" {
		t.Fatalf("round robin: got %s, want abab", got)
	}
	setUp(p, "a", false)
	if n := acquireName(t, p) + acquireName(t, p); n != "bb" {
		t.Fatalf("a down: got %s, want bb", n)
	}
	setUp(p, "b", false)
	if n := acquireName(t, p) + acquireName(t, p); n != "xx" {
		t.Fatalf("all primaries down: got %s, want the first backup twice", n)
	}
	p.allBackups = true
	if n := acquireName(t, p) + acquireName(t, p); n != "yx" && n != "xy" {
		t.Fatalf("all_backups: got %s, want both backups", n)
	}
	setUp(p, "x", false)
	setUp(p, "y", false)
	start := time.Now()
	if _, err := p.Acquire(context.Background(), time.Minute); !errors.Is(err, ErrNoServer) {
		t.Fatalf("nothing up: got %v, want ErrNoServer", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("nothing up: waited %v, want an answer at once", d)
	}
	setUp(p, "a", true)
	if n := acquireName(t, p); n != "a" {
		t.Fatalf("a back up: got %s", n)
	}
}

func TestWeights(t *testing.T) {
	l := listenOf("a", "b")
	l.Servers[0].Weight = 3
	p := newTestPool(t, l)
	counts := map[string]int{}
	for range 8 {
		counts[acquireName(t, p)]++
	}
	if counts["a"] != 6 || counts["b"] != 2 {
		t.Fatalf("weights 3:1 over 8 requests: got %v, want a 6 b 2", counts)
	}
}

func TestMaxConnQueueIsFIFO(t *testing.T) {
	p := newTestPool(t, listenOf("a:1"))
	first, err := p.Acquire(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Three waiters, queued one after the other.
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			s, err := p.Acquire(context.Background(), time.Minute)
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			p.Release(s)
		})
		waitFor(t, func() bool { return p.QueueLen() == i+1 }, fmt.Sprintf("waiter %d queued", i))
	}
	p.Release(first)
	wg.Wait()
	if fmt.Sprint(order) != "[0 1 2]" {
		t.Fatalf("served in order %v, want [0 1 2]", order)
	}
	if n := p.QueueLen(); n != 0 {
		t.Fatalf("queue length %d after all were served", n)
	}
}

func TestQueueTimeoutAndServerDown(t *testing.T) {
	p := newTestPool(t, listenOf("a:1"))
	held, err := p.Acquire(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Acquire(context.Background(), 20*time.Millisecond); !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("full server: got %v, want ErrQueueTimeout", err)
	}
	if n := p.QueueLen(); n != 0 {
		t.Fatalf("timed-out waiter left in the queue: length %d", n)
	}
	// A waiter whose only server goes down is told at once.
	errc := make(chan error, 1)
	go func() {
		_, err := p.Acquire(context.Background(), time.Minute)
		errc <- err
	}()
	waitFor(t, func() bool { return p.QueueLen() == 1 }, "waiter queued")
	setUp(p, "a", false)
	select {
	case err := <-errc:
		if !errors.Is(err, ErrNoServer) {
			t.Fatalf("got %v, want ErrNoServer", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("waiter not told that no server is up")
	}
	p.Release(held)
	if st := p.Status()[0]; st.InFlight != 0 {
		t.Fatalf("in flight %d after release", st.InFlight)
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestTryAcquire: a free server at once, nil without an error when every
// server is full (and nobody is queued), ErrNoServer when none is up.
func TestTryAcquire(t *testing.T) {
	p := newTestPool(t, listenOf("a:1"))
	s, err := p.TryAcquire()
	if s == nil || err != nil {
		t.Fatalf("free server: got %v, %v", s, err)
	}
	if s2, err := p.TryAcquire(); s2 != nil || err != nil {
		t.Fatalf("full server: got %v, %v, want nil, nil", s2, err)
	}
	if n := p.QueueLen(); n != 0 {
		t.Fatalf("TryAcquire queued: queue length %d", n)
	}
	p.Release(s)
	setUp(p, "a", false)
	if s, err := p.TryAcquire(); s != nil || !errors.Is(err, ErrNoServer) {
		t.Fatalf("no server up: got %v, %v, want ErrNoServer", s, err)
	}
}

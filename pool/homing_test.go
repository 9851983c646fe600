package pool

import (
	"context"
	"testing"
	"time"
)

// endLease does what the pump does when a server reports ReadyForQuery 'I':
// it ends c's link to its client (which the client's session can see at
// once) and leaves the release to the caller, so that a test can act in
// between, as a session that leases again at once does.
func endLease(t *testing.T, c *Conn) {
	t.Helper()
	c.mu.Lock()
	c.holding = false
	ended := c.unlinkIfIdleLocked()
	c.mu.Unlock()
	if !ended {
		t.Fatal("the lease did not end at rest")
	}
}

type acquired struct {
	c   *Conn
	err error
}

func acquireAsync(p *Pool) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		c, err := p.Acquire(context.Background(), 10*time.Second)
		ch <- acquired{c, err}
	}()
	return ch
}

// homingWithWaiter makes a pool of size with one connection whose lease
// just ended (endLease) and a newcomer queued for it.
func homingWithWaiter(t *testing.T, size int) (*fakeServer, *Pool, *Conn, <-chan acquired) {
	t.Helper()
	fs := newFakeServer(t, echoScript)
	_, p := newTestPool(t, fs, size)
	tc := newTestClient(t)
	c := acquire(t, p)
	c.Link(tc.c, false)
	endLease(t, c)
	w := acquireAsync(p)
	waitFor(t, p, "a waiter for the homing connection", func(s Stats) bool { return s.Waiting == 1 })
	return fs, p, c, w
}

// TestHomingConnectionIsWaitedFor: between the end of a lease and the
// connection's return to the pool, a newcomer waits for that connection
// instead of dialing a second one (a pool of 2 had opened two for one
// client); a second newcomer, with no connection coming back for it, dials.
func TestHomingConnectionIsWaitedFor(t *testing.T) {
	fs, p, c, first := homingWithWaiter(t, 2)
	if s := p.Stats(); s.Total != 1 {
		t.Fatalf("the pool dialed while a connection was coming back: %+v", s)
	}
	second := acquireAsync(p)
	r2 := <-second
	if r2.err != nil || r2.c == c {
		t.Fatalf("second newcomer: got %p, %v; want a new connection", r2.c, r2.err)
	}
	p.release(c, true)
	r1 := <-first
	if r1.err != nil || r1.c != c {
		t.Fatalf("first newcomer: got %p, %v; want the homing connection %p", r1.c, r1.err, c)
	}
	if n := fs.connCount(); n != 2 {
		t.Fatalf("server saw %d connections, want 2", n)
	}
	if h := p.homing.Load(); h != 0 {
		t.Fatalf("homing count %d after the release, want 0", h)
	}
}

// TestHomingConnectionClosed: a waiter that waited for a connection coming
// back gets a new one when that connection closes instead, with a pool of 1
// (room comes with the pump's removal) and of 2 (room is there already).
func TestHomingConnectionClosed(t *testing.T) {
	for _, size := range []int{1, 2} {
		_, p, c, w := homingWithWaiter(t, size)
		c.Close()
		p.release(c, true)
		r := <-w
		if r.err != nil || r.c == c {
			t.Fatalf("pool of %d: the waiter got %p, %v; want a new connection", size, r.c, r.err)
		}
		if h := p.homing.Load(); h != 0 {
			t.Fatalf("pool of %d: homing count %d, want 0", size, h)
		}
		r.c.Release()
	}
}

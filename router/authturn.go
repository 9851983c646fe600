package router

import (
	"context"
	"net"
	"sync"
)

// loginTurns bounds how many logins compute their authentication at once
// (limits.max_concurrent_auth). What a login flood takes from forwarding is
// the process's CPU, so one bound serves every Router of the process (there
// is one, but in tests).
var loginTurns turnstile

// turnstile hands out turns in arrival order, at most limit at a time.
type turnstile struct {
	mu      sync.Mutex
	busy    int             // turns held
	limit   int             // as last asked for: a reload may change it
	waiters []chan struct{} // in arrival order; closed when given a turn
}

// enter waits for a turn until ctx ends. limit is the bound in force.
func (t *turnstile) enter(ctx context.Context, limit int) error {
	t.mu.Lock()
	t.limit = limit
	t.handOver()
	if t.busy < t.limit {
		t.busy++
		t.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	t.waiters = append(t.waiters, ch)
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	for i, w := range t.waiters {
		if w == ch {
			t.waiters = append(t.waiters[:i], t.waiters[i+1:]...)
			t.mu.Unlock()
			return ctx.Err()
		}
	}
	t.mu.Unlock()
	t.leave() // given a turn as the wait ended: pass it on
	return ctx.Err()
}

// leave gives a turn back.
func (t *turnstile) leave() {
	t.mu.Lock()
	t.busy--
	t.handOver()
	t.mu.Unlock()
}

// handOver gives free turns to waiters, first come first served. t.mu is
// held.
func (t *turnstile) handOver() {
	for len(t.waiters) > 0 && t.busy < t.limit {
		close(t.waiters[0])
		t.waiters[0] = nil
		t.waiters = t.waiters[1:]
		t.busy++
	}
}

// turnConn is a client connection during authentication. It holds a turn
// of loginTurns while the login computes and none while it waits for the
// client: the turn is given up before each read or write and taken again
// once it returns. A client that is slow to answer therefore holds no turn,
// and one that never answers cannot keep others out.
type turnConn struct {
	net.Conn
	turns *turnstile
	ctx   context.Context // ends the waits for a turn
	limit int
	held  bool
	err   error // why a turn could not be had, if so
}

func (c *turnConn) Read(p []byte) (int, error) {
	c.release()
	n, err := c.Conn.Read(p)
	if err == nil {
		err = c.take()
	}
	return n, err
}

func (c *turnConn) Write(p []byte) (int, error) {
	c.release()
	n, err := c.Conn.Write(p)
	if err == nil {
		err = c.take()
	}
	return n, err
}

func (c *turnConn) take() error {
	if err := c.turns.enter(c.ctx, c.limit); err != nil {
		c.err = err
		return err
	}
	c.held = true
	return nil
}

func (c *turnConn) release() {
	if c.held {
		c.held = false
		c.turns.leave()
	}
}

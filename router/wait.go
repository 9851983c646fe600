package router

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgswitch/pgswitch/pool"
)

// queueWait is a session's wait in a pool's queue, which the client's
// cancel request (another goroutine) may end. The context it waits on
// lives as long as the session unless a cancel used it up, so that a wait
// that is not cancelled costs no allocation.
type queueWait struct {
	waiting atomic.Bool // in the queue now, for SHOW CLIENTS

	mu        sync.Mutex // guards the fields below
	ctx       context.Context
	cancel    context.CancelFunc
	inAcquire bool // a cancel request now ends the wait
	cancelled bool // a cancel request ended the wait
}

// acquire takes a connection from p within wait; cancelled reports that a
// cancel request ended the wait (a connection handed over meanwhile is
// returned too, for the caller to give back).
func (q *queueWait) acquire(parent context.Context, p *pool.Pool, wait time.Duration) (c *pool.Conn, cancelled bool, err error) {
	q.mu.Lock()
	if q.ctx == nil {
		q.ctx, q.cancel = context.WithCancel(parent)
	}
	ctx := q.ctx
	q.inAcquire = true
	q.mu.Unlock()
	q.waiting.Store(true)
	c, err = p.Acquire(ctx, wait)
	q.waiting.Store(false)
	q.mu.Lock()
	q.inAcquire = false
	cancelled = q.cancelled
	if cancelled {
		q.cancelled, q.ctx = false, nil
	}
	q.mu.Unlock()
	return c, cancelled, err
}

// cancelWait ends the wait in progress, if any; it reports whether there
// was one.
func (q *queueWait) cancelWait() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.inAcquire {
		return false
	}
	q.cancelled = true
	q.cancel()
	return true
}

// release frees the wait's context while the session parks; the next wait
// makes another.
func (q *queueWait) release() {
	q.mu.Lock()
	if q.cancel != nil && !q.inAcquire {
		q.cancel()
		q.ctx, q.cancel = nil, nil
	}
	q.mu.Unlock()
}

// stop frees the wait's context when the session ends.
func (q *queueWait) stop() {
	q.mu.Lock()
	if q.cancel != nil {
		q.cancel()
	}
	q.mu.Unlock()
}

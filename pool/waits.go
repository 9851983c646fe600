package pool

import (
	"sync/atomic"
	"time"
)

// WaitBuckets are the upper bounds of the wait-time histogram.
var WaitBuckets = []time.Duration{
	time.Millisecond, 5 * time.Millisecond, 25 * time.Millisecond, 100 * time.Millisecond,
	500 * time.Millisecond, time.Second, 5 * time.Second, 30 * time.Second,
}

// WaitHistogram counts the waits of clients that queued for a connection.
type WaitHistogram struct {
	Counts []uint64 // per bucket of WaitBuckets, not cumulative, then one for larger waits
	Sum    time.Duration
	Count  uint64
}

// waitHistogram is a pool's; guarded by its mutex.
type waitHistogram struct {
	counts [9]uint64 // len(WaitBuckets) + 1
	sum    time.Duration
	n      uint64
}

func (h *waitHistogram) observe(d time.Duration) {
	i := 0
	for i < len(WaitBuckets) && d > WaitBuckets[i] {
		i++
	}
	h.counts[i]++
	h.sum += d
	h.n++
}

// WaitHistogram returns the pool's histogram of queue waits.
func (p *Pool) WaitHistogram() WaitHistogram {
	p.mu.Lock()
	defer p.mu.Unlock()
	return WaitHistogram{Counts: append([]uint64(nil), p.hist.counts[:]...), Sum: p.hist.sum, Count: p.hist.n}
}

// busyTime sums how long connections were given to clients: from Link to
// their release, i.e. transactions in transaction pooling. Guarded by the
// pool's mutex.
type busyTime struct {
	total time.Duration
	n     uint64
}

// noteBusy records a connection linked at linked and released at now
// (monotime; linked 0: not linked); p.mu is held.
func (p *Pool) noteBusy(linked, now int64) {
	if linked == 0 {
		return
	}
	p.busy.total += time.Duration(now - linked)
	p.busy.n++
}

// leaving reads what release needs in one hold of c.mu: whether the
// connection is closed, when it was last linked (monotime, 0: not since the
// last call; forgotten now) and whether it must not be handed on.
func (c *Conn) leaving() (closed bool, linked int64, discard bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	linked, c.linked = c.linked, 0
	return c.closed, linked, c.discard
}

// BusyTime is how long the pool's connections served clients in total,
// over n releases (transactions, in transaction pooling).
func (p *Pool) BusyTime() (total time.Duration, n uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy.total, p.busy.n
}

// queryTime sums how long servers took to answer: from the first message of
// a batch to the ReadyForQuery that ends it.
type queryTime struct {
	nanos atomic.Int64
	n     atomic.Uint64
}

// QueryTime is how long the pool's servers spent answering, over n batches
// (simple Queries and extended-protocol batches up to Sync).
func (p *Pool) QueryTime() (total time.Duration, n uint64) {
	return time.Duration(p.qtime.nanos.Load()), p.qtime.n.Load()
}

// startQueryLocked notes when a batch starts; c.mu is held.
func (c *Conn) startQueryLocked() {
	if c.qstart == 0 && c.pending == 0 && !c.unsynced {
		c.qstart = monotime()
	}
}

// endQueryLocked records the batch's time once nothing is owed; c.mu is held.
func (c *Conn) endQueryLocked() {
	if c.pending == 0 && c.qstart != 0 {
		c.pool.qtime.nanos.Add(monotime() - c.qstart)
		c.pool.qtime.n.Add(1)
		c.qstart = 0
	}
}

package pool

import "time"

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

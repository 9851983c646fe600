package health

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeReplicas replay at the positions the test sets.
type fakeReplicas struct {
	mu     sync.Mutex
	lsn    map[string]int64
	polled map[string]int
	polls  atomic.Int64
}

func (f *fakeReplicas) poll(ctx context.Context, addr string) (int64, error) {
	f.polls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polled[addr]++
	return f.lsn[addr], nil
}

func (f *fakeReplicas) pollsOf(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polled[addr]
}

func (f *fakeReplicas) set(addr string, lsn int64) {
	f.mu.Lock()
	f.lsn[addr] = lsn
	f.mu.Unlock()
}

func TestReplayWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		f := &fakeReplicas{lsn: map[string]int64{"a": 100, "b": 50}, polled: map[string]int{}}
		r := NewReplay(ctx, f.poll)
		defer func() { cancel(); r.Close() }()

		// Nothing polled while nobody waits.
		time.Sleep(time.Second)
		if n := f.polls.Load(); n != 0 {
			t.Fatalf("%d polls with nobody waiting", n)
		}
		// A replica already past the mark is found by its first poll.
		if addr, ok := r.Wait([]string{"a", "b"}, 80, 20*time.Millisecond); !ok || addr != "a" {
			t.Fatalf("Wait(80) = %q, %v; want a", addr, ok)
		}
		// A read waits on the replica furthest along (a) alone at first; b,
		// which gets there while the read waits, is polled from othersAfter.
		go func() {
			time.Sleep(othersAfter - time.Microsecond)
			if n := f.pollsOf("b"); n != 0 {
				t.Errorf("b polled %d times before othersAfter", n)
			}
		}()
		go func() {
			time.Sleep(5 * time.Millisecond)
			f.set("b", 200)
		}()
		start := time.Now()
		if addr, ok := r.Wait([]string{"a", "b"}, 150, 20*time.Millisecond); !ok || addr != "b" {
			t.Fatalf("Wait(150) = %q, %v; want b", addr, ok)
		}
		if d := time.Since(start); d < 5*time.Millisecond || d > 6*time.Millisecond {
			t.Fatalf("found after %v, want one poll interval after the replica moved at 5ms", d)
		}
		// None in time.
		start = time.Now()
		if _, ok := r.Wait([]string{"a", "b"}, 1000, 20*time.Millisecond); ok {
			t.Fatal("Wait(1000) found a replica that never got there")
		}
		if d := time.Since(start); d != 20*time.Millisecond {
			t.Fatalf("gave up after %v, want 20ms", d)
		}
		// Polling stops once nobody waits.
		synctest.Wait()
		n := f.polls.Load()
		time.Sleep(time.Second)
		if f.polls.Load() != n {
			t.Fatal("still polling with nobody waiting")
		}
		if r.Known("b") != 200 || r.Known("c") != 0 {
			t.Fatalf("known positions %d and %d", r.Known("b"), r.Known("c"))
		}
	})
}

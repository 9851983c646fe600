package threads

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// load is what a test's process does: its waits and CPU time so far,
// and the threads it was given.
type load struct {
	mu      sync.Mutex
	queued  uint64
	cpu     time.Duration
	threads int
	most    int // the runtime's default
	sets    int // changes of threads
}

func (l *load) control() *Control {
	c := New(func() uint64 { l.mu.Lock(); defer l.mu.Unlock(); return l.queued }, slog.New(slog.DiscardHandler))
	c.cpu = func() (time.Duration, bool) { l.mu.Lock(); defer l.mu.Unlock(); return l.cpu, true }
	c.procs = func(n int) int {
		l.mu.Lock()
		defer l.mu.Unlock()
		if n == 0 {
			n = l.most
		}
		if n != l.threads {
			l.sets++
		}
		l.threads = n
		return n
	}
	return c
}

// tick adds a tick's load: waits, and CPU time as a share of one CPU.
func (l *load) tick(waits uint64, share float64) {
	l.mu.Lock()
	l.queued += waits
	l.cpu += time.Duration(share * float64(Tick))
	l.mu.Unlock()
	time.Sleep(Tick)
}

func (l *load) now() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.threads
}

func (l *load) changes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sets
}

// run starts Run on a fresh load with workers 0 and stops it at the end of
// the synctest bubble's function.
func run(t *testing.T, most int) (*load, *Control, func()) {
	env := envProcs
	t.Cleanup(func() { envProcs = env })
	envProcs = false // as if GOMAXPROCS were not in the test's environment
	l := &load{most: most, threads: most}
	c := l.control()
	c.Set(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	time.Sleep(Tick / 2) // ticks fall between the test's steps
	return l, c, func() { cancel(); <-done }
}

// TestWorkloads: the loads issue 14 measured get the threads that served
// them best.
func TestWorkloads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _, stop := run(t, 4)
		defer stop()
		if got := l.now(); got != 1 {
			t.Fatalf("workers 0 starts on %d threads, want 1", got)
		}
		// 16 clients over a pool of 20, saturated: half a CPU, no waits.
		for range 50 {
			l.tick(0, 0.5)
			if got := l.now(); got != 1 {
				t.Fatalf("no waits, half a CPU: %d threads, want 1", got)
			}
		}
		// 200 clients over a pool of 20: as much CPU, thousands of waits.
		l.tick(1000, 0.5)
		if got := l.now(); got != 4 {
			t.Fatalf("clients queued for connections: %d threads, want 4", got)
		}
		for range 50 {
			l.tick(1000, 0.5)
			if got := l.now(); got != 4 {
				t.Fatalf("still queued: %d threads, want 4", got)
			}
		}
		// The queue ends: one thread again after a second's calm.
		for i := range calmTicks - 1 {
			l.tick(0, 0.3)
			if got := l.now(); got != 4 {
				t.Fatalf("%d calm ticks: %d threads, want 4 until %d", i+1, got, calmTicks)
			}
		}
		l.tick(0, 0.3)
		if got := l.now(); got != 1 {
			t.Fatalf("after %d calm ticks: %d threads, want 1", calmTicks, got)
		}
		// A login flood: one thread busy, no waits.
		l.tick(0, 0.95)
		if got := l.now(); got != 4 {
			t.Fatalf("one thread nearly saturated: %d threads, want 4", got)
		}
		// Between the two thresholds the threads stay as they are.
		for range 3 * calmTicks {
			l.tick(0, 0.7)
		}
		if got := l.now(); got != 4 {
			t.Fatalf("0.7 of a CPU on all threads: %d threads, want 4", got)
		}
	})
}

// TestAgainstModel: random loads, tick by tick, against the rule written
// out apart: widen at a tick with 10 waits or 0.8 of a CPU; narrow after
// 10 ticks in a row with fewer waits and under 0.65 of a CPU.
func TestAgainstModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _, stop := run(t, 2)
		defer stop()
		rng := rand.New(rand.NewPCG(14, 2026))
		wide, calm, changes := false, 0, 0
		for i := range 5000 {
			// Runs of a load: calm loads often enough for narrowing to happen.
			waits := uint64(0)
			if rng.IntN(8) == 0 {
				waits = uint64(rng.IntN(20))
			}
			share := rng.Float64() * 0.7
			if rng.IntN(10) == 0 {
				share = rng.Float64()
			}
			l.tick(waits, share)
			busy := waits >= 10 || share >= 0.8
			switch {
			case !wide && busy:
				wide, calm, changes = true, 0, changes+1
			case wide && (waits >= 10 || share >= 0.65):
				calm = 0
			case wide:
				if calm++; calm == 10 {
					wide, calm, changes = false, 0, changes+1
				}
			}
			want := 1
			if wide {
				want = 2
			}
			if got := l.now(); got != want {
				t.Fatalf("tick %d (waits %d, %.2f of a CPU): %d threads, want %d", i, waits, share, got, want)
			}
		}
		if changes < 20 {
			t.Fatalf("only %d changes in 5000 ticks: the loads did not test the rule", changes)
		}
	})
}

// TestFixedWorkers: workers > 0 fixes the threads whatever the load; back
// to 0, they adapt again, and 0 again while adapting keeps the state.
func TestFixedWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, c, stop := run(t, 4)
		defer stop()
		c.Set(3)
		for range 20 {
			l.tick(100, 0.1)
		}
		if got := l.now(); got != 3 {
			t.Fatalf("workers 3 under waits: %d threads", got)
		}
		c.Set(0)
		if got := l.now(); got != 1 {
			t.Fatalf("workers back to 0: %d threads, want 1", got)
		}
		l.tick(100, 0.1)
		if got := l.now(); got != 4 {
			t.Fatalf("adapting again, under waits: %d threads, want 4", got)
		}
		sets := l.changes()
		c.Set(0) // a reload that keeps workers 0
		if got := l.now(); got != 4 || l.changes() != sets {
			t.Fatalf("workers 0 again while adapting: %d threads after %d changes, want 4 after %d", got, l.changes(), sets)
		}
	})
}

// TestOneCPU: with one CPU there is nothing to adapt.
func TestOneCPU(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _, stop := run(t, 1)
		defer stop()
		l.tick(1000, 1)
		if got := l.now(); got != 1 || l.changes() != 0 {
			t.Fatalf("one CPU: %d threads after %d changes, want 1 after none", got, l.changes())
		}
	})
}

// TestEnvironmentFixes: with GOMAXPROCS in the environment, workers 0 keeps
// its threads under any load.
func TestEnvironmentFixes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, c, stop := run(t, 4)
		defer stop()
		envProcs = true
		c.Set(5) // leave adapting first: Set(0) while adapting changes nothing
		c.Set(0)
		for range 2 * calmTicks {
			l.tick(0, 0.1)
		}
		l.tick(1000, 0.9)
		if got := l.now(); got != 4 || l.changes() != 3 {
			t.Fatalf("GOMAXPROCS in the environment: %d threads after %d changes, want 4 after 3", got, l.changes())
		}
	})
}

package threads

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"
)

// Tick is how often Run reads the load.
const Tick = 100 * time.Millisecond

// The load that needs more than one thread, per tick. Measured on two
// cores shared with PostgreSQL and pgbench (issue 14): one thread cost
// 15 % less CPU per transaction than two at 8 clients paced, and 8 % less
// for as many transactions at 16 clients saturated; with 200 clients
// queued for a pool of 20 it gave 10 % fewer transactions. Past most of a
// CPU, one thread would be the bottleneck.
const (
	widenWaits = 10   // acquisitions that waited for a server connection: 100 a second
	widenCPU   = 0.8  // of one CPU, while one thread runs
	narrowCPU  = 0.65 // of one CPU, while all run: two threads cost more CPU than one for the same work
	calmTicks  = 10   // ticks without that load before going back to one thread
)

// Control sets the threads: Set applies the configuration's workers, Run
// adapts them while workers is 0.
type Control struct {
	queued func() uint64 // acquisitions that waited so far, in every pool
	logger *slog.Logger

	// Seams for tests: the process's CPU time, and setting the threads
	// (0: the runtime's default, which follows the CPUs pgswitch may use).
	cpu   func() (time.Duration, bool)
	procs func(n int) int

	mu       sync.Mutex
	workers  int  // as configured last; -1 before Set
	threads  int  // as set last
	adaptive bool // workers 0, GOMAXPROCS not in the environment, more than one CPU
	calm     int  // ticks in a row, on more than one thread, without the load that needs them
	lastQ    uint64
	lastCPU  time.Duration
	lastAt   time.Time
}

// New returns a Control that reads waits from queued.
func New(queued func() uint64, logger *slog.Logger) *Control {
	return &Control{queued: queued, logger: logger, cpu: processCPU, procs: setProcs,
		workers: -1, threads: runtime.GOMAXPROCS(0)}
}

// StartProcs is GOMAXPROCS as the process started: the runtime's default,
// or the GOMAXPROCS environment variable's; the most threads workers 0
// runs, while fewer may run now.
var StartProcs = runtime.GOMAXPROCS(0)

// envProcs: the GOMAXPROCS environment variable fixes the threads for
// workers 0.
var envProcs = os.Getenv("GOMAXPROCS") != ""

func setProcs(n int) int {
	switch {
	case n > 0:
		runtime.GOMAXPROCS(n)
	case envProcs:
		runtime.GOMAXPROCS(StartProcs)
	default:
		runtime.SetDefaultGOMAXPROCS()
	}
	return runtime.GOMAXPROCS(0)
}

// Set applies workers: n > 0 threads, fixed; 0, adapted to the load
// between one and the runtime's default (fixed at GOMAXPROCS when the
// environment sets it). Setting 0 again while adapting changes nothing.
func (c *Control) Set(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n == 0 && c.adaptive {
		return
	}
	before, was := c.threads, c.workers
	c.workers = n
	c.threads = c.procs(n)
	c.adaptive = n == 0 && !envProcs && c.threads > 1
	if c.adaptive {
		// Start on one thread: a login flood widens within a tick.
		c.calm = 0
		c.threads = c.procs(1)
		c.lastQ, c.lastAt = c.queued(), time.Now()
		c.lastCPU, _ = c.cpu()
	}
	if c.threads != before || n != was {
		c.logger.Info("workers", "threads", c.threads, "adaptive", c.adaptive)
	}
}

// Run adapts the threads every Tick until ctx ends.
func (c *Control) Run(ctx context.Context) {
	t := time.NewTicker(Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.step()
		}
	}
}

// step reads the load since the last tick and widens or narrows.
func (c *Control) step() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.adaptive {
		return
	}
	q := c.queued()
	cpu, cpuOK := c.cpu()
	now := time.Now()
	waits, used, elapsed := q-c.lastQ, cpu-c.lastCPU, now.Sub(c.lastAt)
	c.lastQ, c.lastCPU, c.lastAt = q, cpu, now
	if elapsed <= 0 {
		return
	}
	share := float64(used) / float64(elapsed) // CPUs busy with pgswitch
	if c.threads == 1 {
		if waits >= widenWaits || (cpuOK && share >= widenCPU) {
			c.calm = 0
			c.threads = c.procs(0)
			c.logger.Debug("workers widened", "threads", c.threads, "waits", waits, "cpu", share)
		}
		return
	}
	if waits >= widenWaits || (cpuOK && share >= narrowCPU) {
		c.calm = 0
		return
	}
	if c.calm++; c.calm >= calmTicks {
		c.calm = 0
		c.threads = c.procs(1)
		c.logger.Debug("workers narrowed", "threads", 1, "cpu", share)
	}
}

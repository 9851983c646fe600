// Command compare is where pgswitch's performance figures come from: it
// starts a PostgreSQL primary with two streaming replicas, PgBouncer (when
// installed), HAProxy in TCP mode (when installed, for the one-client row)
// and pgswitch, runs every workload against every target interleaved in one
// run, and prints one markdown table.
//
//	go run ./bench/compare -T 20 -rounds 2 > table.md
//
// Targets: direct (the primary itself), PgBouncer (transaction pooling, a
// pool of -pool), pgswitch with the read/write split (database "app",
// route auto, the primary and both replicas), pgswitch with route primary
// (database "app_rw" of the same process, same servers), and HAProxy
// forwarding TCP to the primary for the -S -c 1 row. -base adds a second
// pgswitch binary (for example one built from main) as two more targets, so
// that a change and what it changes are measured in one run.
//
// Rows (-rows picks them, in this order): S16 (pgbench -S -c 16), N16 (-N
// -c 16), S200 (-S -c 200 over the pool), S1 (-S -c 1: latency added per
// query), idle (RSS per idle client: -idle clients log in, each runs
// SELECT 1 once and stays), prepared (-S -M prepared -c 16). For each row
// the targets run one after another; -rounds repeats the whole sequence,
// each round starting at the next target, and the table shows the mean, and
// for TPS and CPU the spread (min–max).
//
// For each pgbench run it reads, before and after, the user+system CPU time
// of the router's process (pgswitch, PgBouncer or HAProxy; none for direct)
// and of the cluster's PostgreSQL processes, and divides each by the
// transactions pgbench reports. Latency average and p99 come from pgbench's
// per-transaction log (-l). The idle row starts a fresh process of each
// router, so that earlier rows leave nothing behind in its memory, and reads
// its RSS until it stops falling (the Go runtime collects the logins'
// garbage at its next GC, forced two minutes after the last one when idle:
// -idle-gc; bounded by -idle-settle).
//
// -pairs N adds, after the table, N paired runs of this tree's pgswitch
// (route primary) beside PgBouncer and beside -base's: both routers at
// once, each with its own pgbench -S at a fixed rate (-pair-rate,
// -pair-clients), and the ratio of their CPU per transaction. Run one after
// the other, CPU per transaction drifts by ±10 % on a shared machine; side
// by side it does not, and a change of 3 % shows (pairs.go).
//
// Run it from the repository's root as root or as a user that can run
// PostgreSQL; as root, PostgreSQL and PgBouncer run as the "postgres" user.
// Everything listens on 127.0.0.1 only. Ctrl-C stops every process it
// started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

var (
	duration    = flag.Int("T", 20, "pgbench duration of each run, in seconds")
	rounds      = flag.Int("rounds", 1, "how many times the whole interleaved sequence runs")
	rowsFlag    = flag.String("rows", "S16,N16,S200,S1,idle,prepared", "comma-separated rows to run: "+rowKeys())
	scale       = flag.Int("s", 10, "pgbench scale")
	threads     = flag.Int("j", 2, "pgbench threads for the rows with many clients")
	poolSize    = flag.Int("pool", 20, "server connections per pool, for pgswitch and PgBouncer")
	idleClients = flag.Int("idle", 10000, "idle clients for the RSS row")
	idleGC      = flag.Duration("idle-gc", 130*time.Second, "shortest wait before pgswitch's RSS with idle clients counts (Go's forced GC comes every 2 minutes)")
	idleSettle  = flag.Duration("idle-settle", 3*time.Minute, "longest wait for the RSS of idle clients to stop falling")
	warmup      = flag.Int("warmup", 2, "seconds of pgbench -S against each target before the first round (0: none)")
	baseBin     = flag.String("base", "", "a second pgswitch binary to measure beside this tree's (e.g. built from main)")
	cpuProfile  = flag.String("cpuprofile", "", "write this tree's pgswitch's Go CPU profile of the whole run here")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func run() error {
	rows, err := pickRows(*rowsFlag)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The first Ctrl-C cancels the run and lets every started process be
	// stopped; the ones after it are only acknowledged, so that cleanup is
	// not cut short.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			fmt.Fprintf(os.Stderr, "compare: %v: stopping everything started\n", sig)
			cancel()
		}
	}()

	if err := raiseFileLimit(*idleClients + 1000); err != nil {
		return err
	}
	b, err := setUp(ctx, rows)
	if b != nil {
		defer b.tearDown()
	}
	if err != nil {
		return err
	}
	res := newResults()
	if err := b.measureAll(ctx, rows, res); err != nil {
		// What was measured before the error is still worth printing.
		if len(res.samples) > 0 {
			b.printTable(os.Stdout, rows, res)
		}
		return err
	}
	b.printTable(os.Stdout, rows, res)
	if *pairs > 0 {
		return b.measurePairs(ctx, os.Stdout)
	}
	return nil
}

// raiseFileLimit sets RLIMIT_NOFILE's soft limit to its hard limit. Go does
// this for its own process anyway, but restores the old limit for the
// processes it starts unless the program sets the limit itself; PgBouncer
// needs a descriptor per idle client.
func raiseFileLimit(want int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
	}
	if lim.Cur < uint64(want) {
		fmt.Fprintf(os.Stderr, "compare: RLIMIT_NOFILE hard limit %d is below %d: idle clients may be refused\n", lim.Cur, want)
	}
	return nil
}

func rowKeys() string {
	var keys []string
	for _, r := range allRows {
		keys = append(keys, r.key)
	}
	return strings.Join(keys, ",")
}

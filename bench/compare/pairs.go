package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/pgswitch/pgswitch/bench/internal/proc"
)

var (
	pairs       = flag.Int("pairs", 0, "after the table, this many paired runs of this tree's pgswitch (route: primary) beside PgBouncer and beside -base, at a fixed rate (0: none)")
	pairRate    = flag.Int("pair-rate", 3500, "transactions per second each router gets in a paired run")
	pairClients = flag.Int("pair-clients", 8, "pgbench clients per router in a paired run")
)

// measurePairs compares this tree's pgswitch with PgBouncer and with the
// base build by running two routers at once, each with its own
// pgbench -S at the same fixed rate, and printing the ratio of their CPU
// per transaction. Why: run one after the other on a shared two-core
// machine, CPU per transaction drifts by ±10 % between runs, which hides a
// change of a few per cent; side by side both routers see the same drift,
// and at a fixed rate the same load. Which router's pgbench starts first
// alternates, as the first one measured a few per cent more.
func (b *bench) measurePairs(ctx context.Context, w io.Writer) error {
	var mine *target
	var others []*target
	for _, t := range b.targets {
		switch {
		case t.name == "pgswitch route: primary":
			mine = t
		case t.name == "PgBouncer" || t.name == "pgswitch@base route: primary":
			others = append(others, t)
		}
	}
	if mine == nil || len(others) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nPaired runs: two routers at once, each with `pgbench -S -c %d -j 1 -R %d` for %d s; CPU per transaction of the other router ÷ this tree's pgswitch (route: primary), one figure per run, which router's pgbench starts first alternating.\n\n",
		*pairClients, *pairRate, *duration)
	fmt.Fprintln(w, "| beside | CPU ÷ this tree's | runs | this tree's CPU/txn | its CPU/txn |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|")
	for _, o := range others {
		var ratios []string
		var sumLog, mineUs, otherUs float64
		for i := range *pairs {
			a, c := mine, o
			if i%2 == 1 {
				a, c = o, mine
			}
			fmt.Fprintf(os.Stderr, "compare: pair %d/%d, %s beside %s\n", i+1, *pairs, a.name, c.name)
			us, err := b.pairRun(ctx, a, c)
			if err != nil {
				return err
			}
			m, x := us[0], us[1]
			if i%2 == 1 {
				m, x = x, m
			}
			ratios = append(ratios, fmt.Sprintf("%.3f", x/m))
			sumLog += math.Log(x / m)
			mineUs += m
			otherUs += x
		}
		n := float64(*pairs)
		fmt.Fprintf(w, "| %s | %.3f× | %s | %s | %s |\n", o.name, math.Exp(sumLog/n), strings.Join(ratios, ", "), micro(mineUs/n), micro(otherUs/n))
	}
	return nil
}

// pairRun runs a's and c's pgbench at once and returns each router's CPU
// per transaction, in µs.
func (b *bench) pairRun(ctx context.Context, a, c *target) ([2]float64, error) {
	ts := [2]*target{a, c}
	var cpu0 [2]uint64
	for i, t := range ts {
		v, err := proc.CPU(t.proc.pid())
		if err != nil {
			return [2]float64{}, fmt.Errorf("%s: %w", t.name, err)
		}
		cpu0[i] = v
	}
	type out struct {
		text string
		err  error
	}
	done := make([]chan out, 2)
	for i, t := range ts {
		done[i] = make(chan out, 1)
		go func() {
			text, err := b.pgbench(ctx, t, "-n", "-S", "-c", strconv.Itoa(*pairClients), "-j", "1",
				"-R", strconv.Itoa(*pairRate), "-T", strconv.Itoa(*duration))
			done[i] <- out{text, err}
		}()
	}
	var us [2]float64
	for i, t := range ts {
		o := <-done[i]
		if o.err != nil {
			return us, o.err
		}
		cpu1, err := proc.CPU(t.proc.pid())
		if err != nil {
			return us, fmt.Errorf("%s: %w", t.name, err)
		}
		txns := parseFloat(txnRe, o.text)
		if txns == 0 {
			return us, fmt.Errorf("pgbench against %s: no transaction", t.name)
		}
		us[i] = float64(cpu1-cpu0[i]) * float64(proc.Tick.Microseconds()) / txns
	}
	return us, nil
}

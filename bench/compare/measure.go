package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// cell is one line of the table: a row measured on a target.
type cell struct{ row, target string }

// results collect every round's samples, and why cells have none.
type results struct {
	samples map[cell][]sample
	skipped map[cell]string   // why the row does not run on the target
	failed  map[cell][]string // errors of runs that failed
	idle    []string          // what the idle row read, run by run
}

func newResults() *results {
	return &results{samples: map[cell][]sample{}, skipped: map[cell]string{}, failed: map[cell][]string{}}
}

// measureAll warms the targets up, then runs the rows -rounds times: in
// each round, each row on each of its targets in turn, each round starting
// one target later than the one before, so that no target always runs
// right after another row's load.
func (b *bench) measureAll(ctx context.Context, rows []row, res *results) error {
	if *warmup > 0 {
		for _, t := range b.targets {
			if t.kind == haproxy {
				continue
			}
			fmt.Fprintf(os.Stderr, "compare: warming up %s\n", t.name)
			if _, err := b.pgbench(ctx, t, "-n", "-S", "-c", "16", "-j", strconv.Itoa(*threads), "-T", strconv.Itoa(*warmup)); err != nil {
				return err
			}
		}
	}
	for round := 1; round <= *rounds; round++ {
		for _, r := range rows {
			var ts []*target
			for _, t := range b.targets {
				ok, why := r.runsOn(t)
				if ok {
					ts = append(ts, t)
				} else if why != "" {
					res.skipped[cell{r.key, t.name}] = why
				}
			}
			if len(ts) == 0 {
				continue
			}
			if !r.idle {
				// Replicas that lag after a write row would make the
				// split's reads wait in the next one.
				if err := b.cl.WaitReplicated(ctx); err != nil {
					return err
				}
			}
			k := (round - 1) % len(ts)
			ts = append(ts[k:], ts[:k]...)
			for _, t := range ts {
				fmt.Fprintf(os.Stderr, "compare: round %d/%d, %s, %s\n", round, *rounds, r.title(), t.name)
				var (
					s      sample
					detail string
					err    error
				)
				if r.idle {
					s, detail, err = b.idle(ctx, t)
				} else {
					s, err = b.run(ctx, r, t)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				c := cell{r.key, t.name}
				if err != nil {
					fmt.Fprintf(os.Stderr, "compare:   failed: %v\n", err)
					res.failed[c] = append(res.failed[c], fmt.Sprintf("round %d: %s", round, strings.SplitN(err.Error(), "\n", 2)[0]))
					continue
				}
				res.samples[c] = append(res.samples[c], s)
				if r.idle {
					res.idle = append(res.idle, fmt.Sprintf("round %d, %s", round, detail))
					fmt.Fprintf(os.Stderr, "compare:   %.2f KiB per idle client\n", s.idleKiB)
				} else {
					fmt.Fprintf(os.Stderr, "compare:   %.0f TPS, latency avg %.3f ms, p99 %.3f ms, router CPU %s (user %s), PostgreSQL CPU %.1f µs/txn, logins %.0f ms\n",
						s.tps, s.avgUs/1000, s.p99Us/1000, cpuText(s.routerUs), cpuText(s.userUs), s.postgreUs, s.loginMs)
				}
			}
		}
	}
	return nil
}

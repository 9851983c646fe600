package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"time"
)

// printTable writes the header lines, the markdown table and its notes.
func (b *bench) printTable(w io.Writer, rows []row, res *results) {
	fmt.Fprintf(w, "pgbench scale %d, %d s per run, %d interleaved round(s): means, (min–max) over rounds; pool of %d server connections (PgBouncer and pgswitch, transaction pooling); %d CPUs, load average %s at the start, %s at the end; %s\n\n",
		*scale, *duration, *rounds, *poolSize, runtime.NumCPU(), b.load, loadAvg(), time.Now().Format(time.RFC3339))
	for _, h := range b.header {
		fmt.Fprintf(w, "- %s\n", h)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | target | TPS | TPS ÷ direct | TPS ÷ PgBouncer | latency avg | latency p99 | avg − direct | router CPU/txn | of which user | CPU ÷ PgBouncer | PostgreSQL CPU/txn | RSS per idle client |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	var notes []string
	for _, r := range rows {
		var directS, bouncerS []sample
		for _, t := range b.targets {
			switch t.kind {
			case direct:
				directS = res.samples[cell{r.key, t.name}]
			case pgbouncer:
				bouncerS = res.samples[cell{r.key, t.name}]
			}
		}
		for _, t := range b.targets {
			c := cell{r.key, t.name}
			ss := res.samples[c]
			why, skipped := res.skipped[c]
			failures := res.failed[c]
			if len(ss) == 0 && !skipped && len(failures) == 0 {
				continue // the target has no place in the row
			}
			cols := make([]string, 11)
			switch {
			case skipped:
				cols[0] = "—"
				notes = append(notes, fmt.Sprintf("%s, %s: %s.", r.title(), t.name, why))
			case len(ss) == 0:
				cols[0] = "failed"
			case r.idle:
				v := mean(ss, func(s sample) float64 { return s.idleKiB })
				cols[10] = fmt.Sprintf("%.2f KiB", v)
				if t.kind != pgbouncer && len(bouncerS) > 0 {
					cols[10] += fmt.Sprintf(" (%.1f× PgBouncer)", v/mean(bouncerS, idleOf))
				}
			default:
				tps := mean(ss, tpsOf)
				cols[0] = fmt.Sprintf("%.0f", tps) + spread(ss, tpsOf, "%.0f")
				if t.kind != direct && len(directS) > 0 {
					cols[1] = fmt.Sprintf("%.2f×", tps/mean(directS, tpsOf))
				}
				if t.kind != pgbouncer && len(bouncerS) > 0 {
					cols[2] = fmt.Sprintf("%.2f×", tps/mean(bouncerS, tpsOf))
				}
				avg := mean(ss, func(s sample) float64 { return s.avgUs })
				cols[3] = fmt.Sprintf("%.3f ms", avg/1000)
				cols[4] = fmt.Sprintf("%.3f ms", mean(ss, func(s sample) float64 { return s.p99Us })/1000)
				if t.kind != direct && len(directS) > 0 {
					cols[5] = fmt.Sprintf("%+.0f µs", avg-mean(directS, func(s sample) float64 { return s.avgUs }))
				}
				if t.kind != direct {
					cpu := mean(ss, cpuOf)
					cols[6] = micro(cpu) + spread(ss, cpuOf, "%.1f")
					cols[7] = micro(mean(ss, func(s sample) float64 { return s.userUs }))
					if t.kind != pgbouncer && len(bouncerS) > 0 {
						cols[8] = fmt.Sprintf("%.2f×", cpu/mean(bouncerS, cpuOf))
					}
				}
				cols[9] = micro(mean(ss, func(s sample) float64 { return s.postgreUs }))
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", r.title(), t.name, strings.Join(cols, " | "))
			for _, f := range failures {
				notes = append(notes, fmt.Sprintf("%s, %s failed in %s", r.title(), t.name, f))
			}
		}
	}
	fmt.Fprintln(w)
	notes = append(b.notes, notes...)
	notes = append(notes,
		"Router CPU/txn: user+system CPU time of the router's process during the run (/proc/PID/stat, 10 ms ticks) ÷ the transactions pgbench reports, so the clients' logins are in it (they count for little but at `-c 200`); of which user: its user-mode part, the router's own code and runtime (the rest is the kernel's, mostly its system calls); PostgreSQL CPU/txn: the same for the primary's and the replicas' postmasters and backends. TPS: pgbench's, without the initial connection time. Latencies: from pgbench's per-transaction log.")
	for _, r := range rows {
		if r.idle {
			notes = append(notes, fmt.Sprintf("RSS per idle client: a fresh router process each time; its RSS once the %d clients logged in, ran SELECT 1 and its RSS stopped falling (read every %v; for pgswitch no sooner than %v, past the Go runtime's forced GC), minus its RSS before, ÷ the clients.", *idleClients, settlePoll, *idleGC))
			notes = append(notes, res.idle...)
		}
	}
	for _, n := range notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
}

func tpsOf(s sample) float64  { return s.tps }
func cpuOf(s sample) float64  { return s.routerUs }
func idleOf(s sample) float64 { return s.idleKiB }

func mean(ss []sample, f func(sample) float64) float64 {
	sum := 0.0
	for _, s := range ss {
		sum += f(s)
	}
	return sum / float64(len(ss))
}

// spread is " (min–max)" over more than one sample, else nothing.
func spread(ss []sample, f func(sample) float64, format string) string {
	if len(ss) < 2 {
		return ""
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		lo, hi = math.Min(lo, f(s)), math.Max(hi, f(s))
	}
	return " (" + fmt.Sprintf(format, lo) + "–" + fmt.Sprintf(format, hi) + ")"
}

func micro(us float64) string {
	if math.IsNaN(us) {
		return ""
	}
	return fmt.Sprintf("%.1f µs", us)
}

// cpuText is micro for the progress lines: "none" where nothing was measured.
func cpuText(us float64) string {
	if math.IsNaN(us) {
		return "none"
	}
	return micro(us) + "/txn"
}

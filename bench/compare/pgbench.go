package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/pgswitch/pgswitch/bench/internal/proc"
)

// sample is what one run of one row on one target measured. CPU figures are
// NaN where there is nothing to measure (no router for direct).
type sample struct {
	tps       float64
	txns      uint64
	avgUs     float64 // mean transaction latency, µs
	p99Us     float64
	routerUs  float64 // router CPU per transaction, µs
	userUs    float64 // the user-mode part of routerUs
	postgreUs float64 // the cluster's PostgreSQL CPU per transaction, µs
	idleKiB   float64 // RSS per idle client (idle row only)
	loginMs   float64 // pgbench's initial connection time
}

// pgbench runs pgbench against t and returns its output.
func (b *bench) pgbench(ctx context.Context, t *target, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "pgbench", args...)
	port := b.cl.Primary.Port
	database := b.cl.Database
	if t.proc != nil {
		port, database = t.proc.port, t.database
	}
	cmd.Env = append(os.Environ(), "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(port), "PGUSER="+b.cl.User,
		"PGPASSWORD="+b.cl.Password, "PGDATABASE="+database, "PGSSLMODE=disable")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("pgbench %s against %s: %v\n%s", strings.Join(args, " "), t.name, err, tail(out.String(), 20))
	}
	if m := failedRe.FindStringSubmatch(out.String()); m != nil && m[1] != "0" {
		return "", fmt.Errorf("pgbench %s against %s: %s failed transactions\n%s", strings.Join(args, " "), t.name, m[1], tail(out.String(), 20))
	}
	return out.String(), nil
}

// run runs row r once on t and measures it.
func (b *bench) run(ctx context.Context, r row, t *target) (sample, error) {
	logs, err := os.MkdirTemp(b.work, "log-")
	if err != nil {
		return sample{}, err
	}
	defer os.RemoveAll(logs)

	dataDirs := make([]string, 0, 1+len(b.cl.Replicas))
	for _, s := range b.cl.Servers() {
		dataDirs = append(dataDirs, s.DataDir)
	}
	var user0, sys0, user1, sys1 uint64
	if t.proc != nil {
		if user0, sys0, err = proc.Times(t.proc.pid()); err != nil {
			return sample{}, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	pg0, err := proc.ServerCPU(dataDirs)
	if err != nil {
		return sample{}, err
	}
	args := append(r.pgbenchArgs(), "-l", "--log-prefix", filepath.Join(logs, "tx"))
	out, err := b.pgbench(ctx, t, args...)
	if err != nil {
		if t.proc != nil && t.proc.exited() != nil {
			err = fmt.Errorf("%w\n%v", err, t.proc.exited())
		}
		return sample{}, err
	}
	if t.proc != nil {
		if user1, sys1, err = proc.Times(t.proc.pid()); err != nil {
			return sample{}, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	pg1, err := proc.ServerCPU(dataDirs)
	if err != nil {
		return sample{}, err
	}

	s := sample{tps: parseFloat(tpsRe, out), txns: uint64(parseFloat(txnRe, out)), routerUs: math.NaN(), userUs: math.NaN()}
	s.loginMs = parseFloat(loginRe, out)
	if s.txns == 0 {
		return sample{}, fmt.Errorf("pgbench against %s: no transaction in %d s, its %d clients' logins took %.0f ms of them: a longer -T helps",
			t.name, *duration, r.clients, s.loginMs)
	}
	perTxn := func(ticks uint64) float64 {
		return float64(ticks) * float64(proc.Tick.Microseconds()) / float64(s.txns)
	}
	if t.proc != nil {
		s.routerUs = perTxn(user1 + sys1 - user0 - sys0)
		s.userUs = perTxn(user1 - user0)
	}
	s.postgreUs = perTxn(pg1 - pg0)
	if s.avgUs, s.p99Us, err = latencies(logs); err != nil {
		return sample{}, fmt.Errorf("pgbench log of %s: %w", t.name, err)
	}
	return s, nil
}

// latencies reads pgbench's per-transaction logs (one file per thread:
// client, transaction, latency in µs, …) and returns the mean latency and
// the 99th percentile (the smallest latency that 99 % of transactions do
// not exceed).
func latencies(dir string) (avg, p99 float64, err error) {
	files, err := filepath.Glob(filepath.Join(dir, "tx.*"))
	if err != nil {
		return 0, 0, err
	}
	var all []uint32
	var sum float64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return 0, 0, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseUint(fields[2], 10, 32)
			if err != nil {
				continue // "failed" or "skipped"
			}
			all = append(all, uint32(us))
			sum += float64(us)
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return 0, 0, err
		}
	}
	if len(all) == 0 {
		return 0, 0, errors.New("no transactions logged")
	}
	slices.Sort(all)
	rank := int(math.Ceil(0.99*float64(len(all)))) - 1
	return sum / float64(len(all)), float64(all[max(rank, 0)]), nil
}

var (
	tpsRe    = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	txnRe    = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	failedRe = regexp.MustCompile(`number of failed transactions: (\d+)`)
	loginRe  = regexp.MustCompile(`initial connection time = ([0-9.]+) ms`)
)

func parseFloat(re *regexp.Regexp, out string) float64 {
	if m := re.FindStringSubmatch(out); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	return 0
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// prefixed is a writer for a router's stderr: each line goes to our stderr
// with the router's name in front.
func prefixed(name string) io.Writer {
	return &linePrefixer{prefix: name + ": "}
}

type linePrefixer struct {
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *linePrefixer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(os.Stderr, "%s%s\n", w.prefix, w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

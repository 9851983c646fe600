// Command consistency measures what read-your-writes costs: pgbench's
// select-only and simple-update scripts mixed 90/10 through pgswitch with the
// read/write split, routing.consistency causal against eventual, interleaved
// in one run against a cluster it starts itself (a primary and two streaming
// replicas). It reports TPS, the share of reads that reached a replica, the
// reads that waited for one or went to the primary, and pgswitch's CPU per
// transaction.
//
//	go run ./bench/consistency -T 20 -c 16 -rounds 2
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgswitch/pgswitch/bench/internal/proc"
	"github.com/pgswitch/pgswitch/internal/pgcluster"
)

var (
	duration = flag.Int("T", 20, "pgbench duration in seconds per run")
	clients  = flag.Int("c", 16, "pgbench clients")
	scale    = flag.Int("s", 10, "pgbench scale")
	rounds   = flag.Int("rounds", 2, "interleaved rounds")
	poolSize = flag.Int("pool", 20, "server connections per pool")
	mix      = flag.String("mix", "select-only@9,simple-update@1", "pgbench built-in scripts with weights")
	profile  = flag.String("profile", "", "write each pgswitch's Go CPU profile into this directory")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "consistency:", err)
		os.Exit(1)
	}
}

type target struct {
	name, consistency string
	port, pid         int
	admin             string // console URL
}

// counts are what a target's console says, summed.
type counts struct {
	replicaReads, primaryReads, waited, primary uint64
	checked, behind                             uint64
	cpuTicks                                    uint64
}

func run() error {
	ctx := context.Background()
	cl, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return err
	}
	defer cl.Stop()
	work, err := os.MkdirTemp("", "pgswitch-consistency-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "pgswitch")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/pgswitch").CombinedOutput(); err != nil {
		return fmt.Errorf("build pgswitch: %v\n%s", err, out)
	}
	var targets []*target
	for _, c := range []string{"causal", "eventual"} {
		t, stop, err := start(bin, work, cl, c)
		if err != nil {
			return err
		}
		defer stop()
		targets = append(targets, t)
	}
	if _, err := pgbench(cl, cl.Primary.Port, "-i", "-q", "-s", strconv.Itoa(*scale)); err != nil {
		return err
	}
	if err := cl.WaitReplicated(ctx); err != nil {
		return err
	}
	var scripts []string
	for _, s := range strings.Split(*mix, ",") {
		scripts = append(scripts, "-b", s)
	}
	fmt.Printf("pgbench %s -c %d -j 2 -T %d -M simple, scale %d, pool %d, %d interleaved rounds, %s\n",
		strings.Join(scripts, " "), *clients, *duration, *scale, *poolSize, *rounds, time.Now().Format(time.RFC3339))
	fmt.Println("| round | consistency | TPS | reads on replicas | checked on a replica | check found it behind | waited for a replica | sent to the primary | pgswitch CPU µs/transaction | PostgreSQL CPU µs/transaction |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	tps := map[string][]float64{}
	share := map[string][]float64{}
	for r := 1; r <= *rounds; r++ {
		for _, t := range targets {
			before, err := t.read(ctx)
			if err != nil {
				return err
			}
			pgBefore, err := serverTicks(cl)
			if err != nil {
				return err
			}
			args := append([]string{"-n", "-c", strconv.Itoa(*clients), "-j", "2", "-T", strconv.Itoa(*duration), "-M", "simple"}, scripts...)
			out, err := pgbench(cl, t.port, args...)
			if err != nil {
				return err
			}
			after, err := t.read(ctx)
			if err != nil {
				return err
			}
			pgAfter, err := serverTicks(cl)
			if err != nil {
				return err
			}
			v := parseTPS(out)
			n := parseTxns(out)
			rr, pr := after.replicaReads-before.replicaReads, after.primaryReads-before.primaryReads
			sh := 0.0
			if rr+pr > 0 {
				sh = float64(rr) / float64(rr+pr)
			}
			cpu, pgCPU := 0.0, 0.0
			if n > 0 {
				tick := float64(proc.Tick.Microseconds())
				cpu = float64(after.cpuTicks-before.cpuTicks) * tick / float64(n)
				pgCPU = float64(pgAfter-pgBefore) * tick / float64(n)
			}
			tps[t.name] = append(tps[t.name], v)
			share[t.name] = append(share[t.name], sh)
			fmt.Printf("| %d | %s | %.0f | %.1f %% (%d of %d) | %d | %d | %d | %d | %.1f | %.1f |\n", r, t.consistency, v, 100*sh, rr, rr+pr,
				after.checked-before.checked, after.behind-before.behind, after.waited-before.waited, after.primary-before.primary, cpu, pgCPU)
		}
	}
	c, e := mean(tps["causal"]), mean(tps["eventual"])
	fmt.Printf("\ncausal: %.0f TPS, %.1f %% of reads on replicas; eventual: %.0f TPS, %.1f %%; causal/eventual TPS %.2f×\n",
		c, 100*mean(share["causal"]), e, 100*mean(share["eventual"]), c/e)
	return nil
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(max(len(v), 1))
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func start(bin, work string, cl *pgcluster.Cluster, consistency string) (*target, func(), error) {
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\npool_mode: transaction\npool:\n  size: %d\n", port, *poolSize)
	fmt.Fprintf(&b, "routing:\n  consistency: %s\n", consistency)
	fmt.Fprintf(&b, "admin:\n  admin_users: [%q]\n", cl.User)
	fmt.Fprintf(&b, "databases:\n  %s:\n    servers:\n", cl.Database)
	fmt.Fprintf(&b, "      - {host: %s, port: %d, role: primary}\n", cl.Primary.Host, cl.Primary.Port)
	for _, r := range cl.Replicas {
		fmt.Fprintf(&b, "      - {host: %s, port: %d, role: replica}\n", r.Host, r.Port)
	}
	fmt.Fprintf(&b, "users:\n  %s:\n    password: %q\n", cl.User, cl.Password)
	path := filepath.Join(work, consistency+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return nil, nil, err
	}
	args := []string{"serve", "--config", path, "--log-level", "warn"}
	if *profile != "" {
		args = append(args, "--cpu-profile", filepath.Join(*profile, consistency+".pprof"))
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop := func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("pgswitch (%s) does not listen", consistency)
		}
		time.Sleep(50 * time.Millisecond)
	}
	admin := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/pgswitch?sslmode=disable", cl.User, cl.Password, port)
	return &target{name: consistency, consistency: consistency, port: port, pid: cmd.Process.Pid, admin: admin}, stop, nil
}

// read takes the target's counters from its console and /proc.
func (t *target) read(ctx context.Context) (counts, error) {
	var c counts
	conn, err := pgx.Connect(ctx, t.admin)
	if err != nil {
		return c, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SHOW HEALTH", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return c, err
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return c, err
		}
		m := map[string]any{}
		for i, f := range rows.FieldDescriptions() {
			m[f.Name] = vals[i]
		}
		reads := toUint(m["reads_routed"])
		if fmt.Sprint(m["role"]) == "replica" {
			c.replicaReads += reads
		} else {
			c.primaryReads += reads
		}
	}
	rows.Close()
	rows, err = conn.Query(ctx, "SHOW STATS", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return c, err
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return c, err
		}
		for i, f := range rows.FieldDescriptions() {
			switch f.Name {
			case "causal_waits":
				c.waited += toUint(vals[i])
			case "causal_primary":
				c.primary += toUint(vals[i])
			case "causal_checked":
				c.checked += toUint(vals[i])
			case "causal_behind":
				c.behind += toUint(vals[i])
			}
		}
	}
	rows.Close()
	if c.cpuTicks, err = proc.CPU(t.pid); err != nil {
		return c, err
	}
	return c, nil
}

// serverTicks is the CPU time, in clock ticks, that the cluster's
// PostgreSQL processes have used: each postmaster with its exited children,
// and its live children.
func serverTicks(cl *pgcluster.Cluster) (uint64, error) {
	var dirs []string
	for _, srv := range cl.Servers() {
		dirs = append(dirs, srv.DataDir)
	}
	return proc.ServerCPU(dirs)
}

func toUint(v any) uint64 {
	n, _ := strconv.ParseUint(fmt.Sprint(v), 10, 64)
	return n
}

func pgbench(cl *pgcluster.Cluster, port int, args ...string) (string, error) {
	cmd := exec.Command("pgbench", args...)
	cmd.Env = append(os.Environ(), "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(port), "PGUSER="+cl.User,
		"PGPASSWORD="+cl.Password, "PGDATABASE="+cl.Database, "PGSSLMODE=disable")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if m := failedRe.FindStringSubmatch(string(out)); m != nil && m[1] != "0" {
		return "", fmt.Errorf("pgbench: %s failed transactions\n%s", m[1], out)
	}
	return string(out), nil
}

var (
	tpsRe    = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	txnRe    = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	failedRe = regexp.MustCompile(`number of failed transactions: (\d+)`)
)

func parseTPS(out string) float64 {
	if m := tpsRe.FindStringSubmatch(out); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	return 0
}

func parseTxns(out string) uint64 {
	if m := txnRe.FindStringSubmatch(out); m != nil {
		v, _ := strconv.ParseUint(m[1], 10, 64)
		return v
	}
	return 0
}

// Command compare measures pgswitch side by side with a direct connection and
// PgBouncer (when installed) in one run, against a cluster it starts itself:
// pgbench TPS and the memory of 1,000 idle client connections.
//
//	go run ./bench/compare -T 20 -c 16
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/integration/cluster"
)

var (
	duration = flag.Int("T", 20, "pgbench duration in seconds per run")
	clients  = flag.Int("c", 16, "pgbench clients")
	scale    = flag.Int("s", 10, "pgbench scale")
	idle     = flag.Int("idle", 1000, "idle client connections for the memory figure")
	modes    = flag.String("M", "simple", "comma-separated pgbench protocols")
	split    = flag.Bool("split", false, "also run pgswitch with the replicas configured (read/write split)")
	poolSize = flag.Int("pool", 20, "server connections per pool, for pgswitch and PgBouncer")
	profile  = flag.String("cpuprofile", "", "write pgswitch's CPU profile here")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

type target struct {
	name string
	host string
	port int
	pid  int // process to measure, 0 for none
}

func run() error {
	ctx := context.Background()
	cl, err := cluster.Start(ctx, cluster.Options{})
	if err != nil {
		return err
	}
	defer cl.Stop()
	work, err := os.MkdirTemp("", "pgswitch-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	os.Chmod(work, 0o777)

	bin := filepath.Join(work, "pgswitch")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/pgswitch").CombinedOutput(); err != nil {
		return fmt.Errorf("build pgswitch: %v\n%s", err, out)
	}

	targets := []target{{name: "direct", host: cl.Primary.Host, port: cl.Primary.Port}}
	sw, stop, err := startPgswitch(bin, work, cl, "pgswitch", false)
	if err != nil {
		return err
	}
	defer stop()
	targets = append(targets, sw)
	if *split {
		ss, stop, err := startPgswitch(bin, work, cl, "pgswitch-split", true)
		if err != nil {
			return err
		}
		defer stop()
		targets = append(targets, ss)
	}
	if pb, stop, err := startPgbouncer(work, cl); err != nil {
		fmt.Fprintln(os.Stderr, "PgBouncer not measured:", err)
	} else {
		defer stop()
		targets = append(targets, pb)
	}

	if _, err := pgbench(cl, targets[0], "-i", "-q", "-s", strconv.Itoa(*scale)); err != nil {
		return err
	}
	if err := cl.WaitReplicated(ctx); err != nil {
		return err
	}
	fmt.Printf("pgbench -S -c %d -j 2 -T %d, scale %d, pool %d, %s\n", *clients, *duration, *scale, *poolSize, time.Now().Format(time.RFC3339))
	for _, m := range strings.Split(*modes, ",") {
		tps := map[string]float64{}
		for _, t := range targets {
			if m == "prepared" && t.name == "pgbouncer" {
				continue
			}
			out, err := pgbench(cl, t, "-S", "-n", "-c", strconv.Itoa(*clients), "-j", "2", "-T", strconv.Itoa(*duration), "-M", m)
			if err != nil {
				return err
			}
			tps[t.name] = parseTPS(out)
			fmt.Printf("  -M %-8s %-15s %10.0f tps  failed=%s\n", m, t.name, tps[t.name], failed(out))
		}
		for _, t := range targets[1:] {
			if tps[t.name] == 0 {
				continue
			}
			line := fmt.Sprintf("  -M %-8s %-15s %.2f× direct", m, t.name, tps[t.name]/tps["direct"])
			if pb := tps["pgbouncer"]; pb > 0 && t.name != "pgbouncer" {
				line += fmt.Sprintf(", %.2f× pgbouncer", tps[t.name]/pb)
			}
			fmt.Println(line)
		}
	}
	for _, t := range targets[1:] {
		rss, err := idleRSS(ctx, cl, t, *idle)
		if err != nil {
			return err
		}
		fmt.Printf("  %-15s RSS with %d idle clients: %.1f MiB\n", t.name, *idle, float64(rss)/1024)
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func startPgswitch(bin, work string, cl *cluster.Cluster, name string, withReplicas bool) (target, func(), error) {
	port, err := freePort()
	if err != nil {
		return target{}, nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\npool_mode: transaction\npool:\n  size: %d\n", port, *poolSize)
	fmt.Fprintf(&b, "databases:\n  %s:\n    servers:\n", cl.Database)
	fmt.Fprintf(&b, "      - {host: %s, port: %d, role: primary}\n", cl.Primary.Host, cl.Primary.Port)
	if withReplicas {
		for _, r := range cl.Replicas {
			fmt.Fprintf(&b, "      - {host: %s, port: %d, role: replica}\n", r.Host, r.Port)
		}
	}
	fmt.Fprintf(&b, "users:\n  %s:\n    password: %q\n", cl.User, cl.Password)
	path := filepath.Join(work, name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return target{}, nil, err
	}
	args := []string{"serve", "--config", path, "--log-level", "warn"}
	if *profile != "" && !withReplicas {
		args = append(args, "--cpu-profile", *profile)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return target{}, nil, err
	}
	stop := func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	if err := waitPort(port); err != nil {
		stop()
		return target{}, nil, err
	}
	return target{name: name, host: "127.0.0.1", port: port, pid: cmd.Process.Pid}, stop, nil
}

func startPgbouncer(work string, cl *cluster.Cluster) (target, func(), error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/pgbouncer"); e != nil {
			return target{}, nil, err
		}
		bin = "/usr/sbin/pgbouncer"
	}
	port, err := freePort()
	if err != nil {
		return target{}, nil, err
	}
	dir := filepath.Join(work, "pgbouncer")
	os.MkdirAll(dir, 0o700)
	ini := fmt.Sprintf(`[databases]
%s = host=%s port=%d dbname=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s/userlist.txt
pool_mode = transaction
default_pool_size = %d
max_client_conn = 5000
log_connections = 0
log_disconnections = 0
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
`, cl.Database, cl.Primary.Host, cl.Primary.Port, cl.Database, port, dir, *poolSize, dir, dir)
	os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o600)
	os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(fmt.Sprintf("%q %q\n", cl.User, cl.Password)), 0o600)
	cmd := exec.Command(bin, "-q", filepath.Join(dir, "pgbouncer.ini"))
	if os.Geteuid() == 0 { // PgBouncer refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			return target{}, nil, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, gid) })
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return target{}, nil, err
	}
	stop := func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	if err := waitPort(port); err != nil {
		stop()
		return target{}, nil, err
	}
	return target{name: "pgbouncer", host: "127.0.0.1", port: port, pid: cmd.Process.Pid}, stop, nil
}

func waitPort(port int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on port %d", port)
}

func pgbench(cl *cluster.Cluster, t target, args ...string) (string, error) {
	cmd := exec.Command("pgbench", args...)
	cmd.Env = append(os.Environ(), "PGHOST="+t.host, "PGPORT="+strconv.Itoa(t.port), "PGUSER="+cl.User,
		"PGPASSWORD="+cl.Password, "PGDATABASE="+cl.Database, "PGSSLMODE=disable")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pgbench %s against %s: %v\n%s", strings.Join(args, " "), t.name, err, out)
	}
	return string(out), nil
}

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
var failedRe = regexp.MustCompile(`number of failed transactions: (\d+)`)

func parseTPS(out string) float64 {
	m := tpsRe.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func failed(out string) string {
	if m := failedRe.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return "?"
}

// idleRSS opens n logged-in idle connections and reads the process's RSS (KiB).
func idleRSS(ctx context.Context, cl *cluster.Cluster, t target, n int) (int64, error) {
	dsn := fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable", t.host, t.port, cl.User, cl.Password, cl.Database)
	conns := make([]*pgconn.PgConn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close(ctx)
		}
	}()
	for i := 0; i < n; i++ {
		c, err := pgconn.Connect(ctx, dsn)
		if err != nil {
			return 0, fmt.Errorf("idle connection %d to %s: %w", i, t.name, err)
		}
		conns = append(conns, c)
	}
	time.Sleep(time.Second)
	return rssKiB(t.pid)
}

func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgswitch/pgswitch/internal/pgcluster"
)

type kind int

const (
	direct kind = iota
	pgbouncer
	pgswitch
	haproxy
)

// target is one column of the table: where pgbench connects.
type target struct {
	name     string
	kind     kind
	database string   // the database name clients ask for
	proc     *process // the router; nil for direct
	// fresh starts another router process like proc, on its own port, for
	// the idle row; nil for direct.
	fresh func(ctx context.Context) (*process, error)

	version  string // PgBouncer's, for the notes
	prepared bool   // PgBouncer keeps prepared statements (1.21 and later)
}

func (t *target) port(cl *pgcluster.Cluster) int {
	if t.proc == nil {
		return cl.Primary.Port
	}
	return t.proc.port
}

// bench is one run's environment: the cluster, the routers, what was
// skipped and why.
type bench struct {
	cl      *pgcluster.Cluster
	work    string
	targets []*target
	procs   []*process // every router process started, stopped by tearDown
	notes   []string   // for under the table
	header  []string   // versions and settings, for above the table
	load    string     // /proc/loadavg at the start
}

// setUp starts the cluster, fills it with pgbench's tables and starts the
// routers. Whatever it returns, tearDown stops what was started.
func setUp(ctx context.Context, rows []row) (*bench, error) {
	b := &bench{load: loadAvg()}
	began := time.Now()
	// Direct at -c 200 needs 200 backends beside the routers' pools and
	// checks; the cluster's default is 200 in all.
	cl, err := pgcluster.Start(ctx, pgcluster.Options{ExtraConf: []string{"max_connections = 400"}})
	if err != nil {
		return nil, fmt.Errorf("start the cluster: %w", err)
	}
	b.cl = cl
	fmt.Fprintf(os.Stderr, "compare: primary and %d replicas started in %v\n", len(cl.Replicas), time.Since(began).Round(time.Millisecond))

	if b.work, err = os.MkdirTemp("", "pgswitch-compare-"); err != nil {
		return b, err
	}
	// PgBouncer runs as postgres under root and must reach its directory.
	if err := os.Chmod(b.work, 0o755); err != nil {
		return b, err
	}
	bin := filepath.Join(b.work, "pgswitch")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/pgswitch").CombinedOutput(); err != nil {
		return b, fmt.Errorf("build pgswitch (run from the repository's root): %v\n%s", err, out)
	}
	fmt.Fprintln(os.Stderr, "compare: filling pgbench's tables")
	if _, err := b.pgbench(ctx, &target{name: "direct"}, "-i", "-q", "-s", strconv.Itoa(*scale)); err != nil {
		return b, err
	}
	if err := cl.WaitReplicated(ctx); err != nil {
		return b, err
	}

	b.targets = append(b.targets, &target{name: "direct", kind: direct, database: cl.Database})
	if err := b.addPgbouncer(ctx); err != nil {
		return b, err
	}
	if err := b.addPgswitch(ctx, "pgswitch", bin, *cpuProfile); err != nil {
		return b, err
	}
	if *baseBin != "" {
		abs, err := filepath.Abs(*baseBin)
		if err != nil {
			return b, err
		}
		if err := b.addPgswitch(ctx, "pgswitch@base", abs, ""); err != nil {
			return b, err
		}
	}
	for _, r := range rows {
		if r.haproxy {
			if err := b.addHaproxy(ctx); err != nil {
				return b, err
			}
			break
		}
	}
	b.header = append(b.header, b.versions(bin)...)
	return b, nil
}

// tearDown stops the routers, then the cluster, and removes the files.
func (b *bench) tearDown() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop()
	}
	if b.cl != nil {
		if err := b.cl.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "compare: stop the cluster:", err)
		}
	}
	if b.work != "" {
		os.RemoveAll(b.work)
	}
}

func (b *bench) note(format string, args ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, args...))
}

// start starts a router and remembers it for tearDown.
func (b *bench) start(ctx context.Context, name string, port int, cmd *exec.Cmd) (*process, error) {
	p, err := startProcess(ctx, name, port, cmd)
	if err != nil {
		return nil, err
	}
	b.procs = append(b.procs, p)
	return p, nil
}

// addPgswitch starts bin serving "app" (the split: the primary and the
// replicas, route auto) and "app_rw" (the same servers, route primary), and
// adds a target for each.
func (b *bench) addPgswitch(ctx context.Context, name, bin, profile string) error {
	launch := func(ctx context.Context, profile string) (*process, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		conf := filepath.Join(b.work, fmt.Sprintf("%s.%d.yaml", name, port))
		if err := os.WriteFile(conf, []byte(b.pgswitchConfig(port)), 0o600); err != nil {
			return nil, err
		}
		args := []string{"serve", "--config", conf, "--log-level", "warn"}
		if profile != "" {
			args = append(args, "--cpu-profile", profile)
		}
		cmd := exec.Command(bin, args...)
		cmd.Stderr = prefixed(name)
		return b.start(ctx, name, port, cmd)
	}
	p, err := launch(ctx, profile)
	if err != nil {
		return err
	}
	fresh := func(ctx context.Context) (*process, error) { return launch(ctx, "") }
	b.targets = append(b.targets,
		&target{name: name + " split", kind: pgswitch, database: b.cl.Database, proc: p, fresh: fresh},
		&target{name: name + " route: primary", kind: pgswitch, database: b.cl.Database + "_rw", proc: p, fresh: fresh})
	return nil
}

func (b *bench) pgswitchConfig(port int) string {
	cl := b.cl
	var s strings.Builder
	fmt.Fprintf(&s, "listen: 127.0.0.1:%d\npool_mode: transaction\n", port)
	fmt.Fprintf(&s, "pool:\n  size: %d\n  max_client_conn: %d\n", *poolSize, *idleClients+1000)
	s.WriteString("timeouts:\n  shutdown: 2s\n")
	fmt.Fprintf(&s, "databases:\n  %s:\n    route: auto\n    servers: &servers\n", cl.Database)
	fmt.Fprintf(&s, "      - {host: %s, port: %d, role: primary}\n", cl.Primary.Host, cl.Primary.Port)
	for _, r := range cl.Replicas {
		fmt.Fprintf(&s, "      - {host: %s, port: %d, role: replica}\n", r.Host, r.Port)
	}
	fmt.Fprintf(&s, "  %s_rw:\n    dbname: %s\n    route: primary\n    servers: *servers\n", cl.Database, cl.Database)
	fmt.Fprintf(&s, "users:\n  %s:\n    password: %q\n", cl.User, cl.Password)
	return s.String()
}

// addPgbouncer starts PgBouncer in transaction pooling in front of the
// primary, as the postgres user when we are root (it refuses to run as
// root). Not installed: a note, no target.
func (b *bench) addPgbouncer(ctx context.Context) error {
	bin, err := lookPath("pgbouncer")
	if err != nil {
		b.note("PgBouncer is not installed (no `pgbouncer` on PATH or in /usr/sbin): its column is empty. `apt-get install pgbouncer` adds it.")
		fmt.Fprintln(os.Stderr, "compare: PgBouncer is not installed: not measured")
		return nil
	}
	t := &target{name: "PgBouncer", kind: pgbouncer, database: b.cl.Database}
	out, _ := exec.Command(bin, "--version").CombinedOutput()
	t.version = strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
	if m := regexp.MustCompile(`(\d+)\.(\d+)`).FindStringSubmatch(t.version); m != nil {
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		t.prepared = major > 1 || major == 1 && minor >= 21
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("PgBouncer refuses to run as root, and there is no postgres user to run it as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	n := 0
	launch := func(ctx context.Context) (*process, error) {
		n++
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(b.work, fmt.Sprintf("pgbouncer%d", n))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(b.pgbouncerConfig(dir, port, t.prepared)), 0o600); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "userlist.txt"), fmt.Appendf(nil, "%q %q\n", b.cl.User, b.cl.Password), 0o600); err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "-q", filepath.Join(dir, "pgbouncer.ini"))
		if cred != nil {
			for _, f := range []string{dir, filepath.Join(dir, "pgbouncer.ini"), filepath.Join(dir, "userlist.txt")} {
				if err := os.Chown(f, int(cred.Uid), int(cred.Gid)); err != nil {
					return nil, err
				}
			}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		cmd.Stderr = prefixed("PgBouncer")
		p, err := b.start(ctx, "PgBouncer", port, cmd)
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			return nil, fmt.Errorf("%w\n%s", err, log)
		}
		return p, nil
	}
	if t.proc, err = launch(ctx); err != nil {
		return err
	}
	t.fresh = launch
	b.targets = append(b.targets, t)
	return nil
}

func (b *bench) pgbouncerConfig(dir string, port int, prepared bool) string {
	cl := b.cl
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
max_client_conn = %d
log_connections = 0
log_disconnections = 0
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
`, cl.Database, cl.Primary.Host, cl.Primary.Port, cl.Database, port, dir, *poolSize, *idleClients+1000, dir, dir)
	if prepared {
		ini += "max_prepared_statements = 200\n"
	}
	return ini
}

// addHaproxy starts HAProxy forwarding TCP to the primary: the yardstick of
// the latency a proxy adds. Not installed: a note, no target.
func (b *bench) addHaproxy(ctx context.Context) error {
	bin, err := lookPath("haproxy")
	if err != nil {
		b.note("HAProxy is not installed (no `haproxy` on PATH or in /usr/sbin): the `-S -c 1` row has no TCP yardstick.")
		fmt.Fprintln(os.Stderr, "compare: HAProxy is not installed: not measured")
		return nil
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	conf := filepath.Join(b.work, "haproxy.cfg")
	text := fmt.Sprintf(`global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend pg
    bind 127.0.0.1:%d
    default_backend primary
backend primary
    server primary %s:%d
`, port, b.cl.Primary.Host, b.cl.Primary.Port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(bin, "-db", "-f", conf)
	cmd.Stderr = prefixed("HAProxy")
	p, err := b.start(ctx, "HAProxy", port, cmd)
	if err != nil {
		return err
	}
	b.targets = append(b.targets, &target{name: "HAProxy TCP", kind: haproxy, database: b.cl.Database, proc: p})
	return nil
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/sbin", name)
	if _, err := os.Stat(p); err != nil {
		return "", errors.New(name + " not found")
	}
	return p, nil
}

// versions describes what is measured, for above the table.
func (b *bench) versions(bin string) []string {
	first := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return ""
		}
		return strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
	}
	v := []string{
		first(filepath.Join(b.cl.BinDir, "postgres"), "--version") + ", a primary and 2 streaming replicas",
		first("pgbench", "--version"),
	}
	commit := first("git", "describe", "--always", "--dirty")
	v = append(v, fmt.Sprintf("pgswitch built from %s with %s", orDash(commit), runtime.Version()))
	if *baseBin != "" {
		v = append(v, "pgswitch@base: "+*baseBin)
	}
	for _, t := range b.targets {
		switch t.kind {
		case pgbouncer:
			v = append(v, t.version)
		case haproxy:
			v = append(v, first(t.proc.cmd.Path, "-v"))
		}
	}
	return v
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

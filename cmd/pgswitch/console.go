package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/wire"
)

// adminURLEnv names the environment variable with the admin console's URL.
const adminURLEnv = "PGSWITCH_ADMIN_URL"

// consoleFlags say how the console commands reach the admin console, or
// the consoles of several instances run as one.
type consoleFlags struct {
	urls       []string // --admin-url, repeated
	configPath string   // --config
	user       string   // --user, with --config
	json       bool
	timeout    time.Duration
	// lookup resolves a host name to its addresses (tests replace it).
	lookup func(ctx context.Context, host string) ([]string, error)
}

func (f *consoleFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.urls, "admin-url", nil, "admin console URL (default $"+adminURLEnv+"); repeat it, or give a host name with several addresses, to address several instances")
	cmd.Flags().StringVarP(&f.configPath, "config", "c", "", "take the address and an admin user's password from this configuration file")
	cmd.Flags().StringVar(&f.user, "user", "", "with --config: the admin user to log in as (default: the first of admin.admin_users)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON instead of a table")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 70*time.Second, "give up after this long")
}

// connStrings works out the admin consoles' URLs: --admin-url, then
// $PGSWITCH_ADMIN_URL, then --config.
func (f *consoleFlags) connStrings() ([]string, error) {
	if len(f.urls) > 0 {
		return f.urls, nil
	}
	if f.configPath == "" {
		if u := os.Getenv(adminURLEnv); u != "" {
			return []string{u}, nil
		}
		return nil, fmt.Errorf("no admin console given: use --admin-url, $%s or --config", adminURLEnv)
	}
	cfg, err := config.Load(f.configPath)
	if err != nil {
		return nil, errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	name := f.user
	if name == "" {
		if len(cfg.Admin.Users) == 0 {
			return nil, fmt.Errorf("%s: admin.admin_users is empty; add a user or pass --admin-url", f.configPath)
		}
		name = cfg.Admin.Users[0]
	}
	u := cfg.Users[name]
	if u == nil {
		return nil, fmt.Errorf("%s: no user %q", f.configPath, name)
	}
	if cfg.AuthFor(u) == config.AuthPeer && cfg.UnixSocketDir != "" {
		// A peer user logs in over the Unix socket, as who runs the CLI.
		_, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("%s: listen: %w", f.configPath, err)
		}
		return []string{fmt.Sprintf("host=%s port=%s user=%s dbname=pgswitch", wire.QuoteConnValue(cfg.UnixSocketDir), port, wire.QuoteConnValue(name))}, nil
	}
	if u.PasswordKind() != config.PasswordPlain {
		return nil, fmt.Errorf("%s: the password of %q is a verifier, not usable to log in; pass --admin-url", f.configPath, name)
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("%s: listen: %w", f.configPath, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	cu := url.URL{Scheme: "postgres", User: url.UserPassword(name, u.Password), Host: net.JoinHostPort(host, port),
		Path: "/pgswitch", RawQuery: "sslmode=disable"}
	return []string{cu.String()}, nil
}

// instance is one pgswitch's admin console.
type instance struct {
	name string // host:port, the instance column
	cfg  *pgx.ConnConfig
}

// instances parses the consoles' URLs. A host name with several addresses
// (a Kubernetes headless Service, a DNS round robin) is one instance per
// address: its IPv4 addresses when it has any, else its IPv6 ones, so that
// a dual-stack name does not count each instance twice, nor "localhost"
// (127.0.0.1 and ::1) one instance as two.
func (f *consoleFlags) instances(ctx context.Context) ([]instance, error) {
	strs, err := f.connStrings()
	if err != nil {
		return nil, err
	}
	lookup := f.lookup
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	var out []instance
	seen := map[string]bool{}
	add := func(in instance) {
		if !seen[in.name] {
			seen[in.name] = true
			out = append(out, in)
		}
	}
	for _, s := range strs {
		cfg, err := pgx.ParseConfig(s)
		if err != nil {
			return nil, fmt.Errorf("admin URL: %s", oneLine(err))
		}
		// The console speaks only the simple query protocol, as PgBouncer's.
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		port := strconv.Itoa(int(cfg.Port))
		addrs := []string{cfg.Host}
		if !strings.HasPrefix(cfg.Host, "/") && net.ParseIP(cfg.Host) == nil && oneHost(cfg) {
			if found, err := lookup(ctx, cfg.Host); err == nil {
				addrs = oneFamily(found)
			}
		}
		if len(addrs) <= 1 {
			add(instance{name: net.JoinHostPort(cfg.Host, port), cfg: cfg})
			continue
		}
		for _, a := range addrs {
			c := cfg.Copy()
			c.Host = a // TLS still verifies the name: ParseConfig set ServerName
			for _, fb := range c.Fallbacks {
				fb.Host = a // sslmode=prefer's second try, without TLS
			}
			add(instance{name: net.JoinHostPort(a, port), cfg: c})
		}
	}
	return out, nil
}

// oneHost reports whether cfg names one host: a URL with several
// (postgres://a,b/…) is libpq's failover list, one instance.
func oneHost(cfg *pgx.ConnConfig) bool {
	for _, fb := range cfg.Fallbacks {
		if fb.Host != cfg.Host || fb.Port != cfg.Port {
			return false
		}
	}
	return true
}

// oneFamily returns the IPv4 addresses of addrs if there are any, else the
// others.
func oneFamily(addrs []string) []string {
	var v4, other []string
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && ip.To4() != nil {
			v4 = append(v4, a)
		} else {
			other = append(other, a)
		}
	}
	if len(v4) > 0 {
		return v4
	}
	return other
}

// console is a connection to the admin console.
type console struct {
	conn *pgx.Conn
	ctx  context.Context
}

// outcome is what one instance answered.
type outcome[T any] struct {
	instance string
	val      T
	err      error
}

// onEach connects to every instance's console at once, runs fn on each and
// disconnects; the outcomes are in the order the instances were given.
func onEach[T any](cmd *cobra.Command, f *consoleFlags, fn func(ctx context.Context, c *console) (T, error)) ([]outcome[T], error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	ins, err := f.instances(ctx)
	if err != nil {
		return nil, err
	}
	outs := make([]outcome[T], len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		outs[i].instance = in.name
		wg.Go(func() {
			c, err := connect(ctx, in.cfg)
			if err != nil {
				outs[i].err = err
				return
			}
			defer c.conn.Close(context.Background())
			outs[i].val, outs[i].err = fn(ctx, c)
		})
	}
	wg.Wait()
	return outs, nil
}

// run runs fn on the one instance the flags name: for commands that act on
// a single process (upgrade), where several would be a mistake.
func (f *consoleFlags) run(cmd *cobra.Command, fn func(ctx context.Context, c *console) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	ins, err := f.instances(ctx)
	if err != nil {
		return err
	}
	if len(ins) != 1 {
		return fmt.Errorf("%d instances given: %s addresses one pgswitch at a time", len(ins), cmd.Name())
	}
	c, err := connect(ctx, ins[0].cfg)
	if err != nil {
		return err
	}
	defer c.conn.Close(context.Background())
	return fn(ctx, c)
}

// failures prints each instance's error on a line of its own and returns
// errPrinted if there was one: the other instances' rows are printed, and
// the command still fails.
func failures[T any](cmd *cobra.Command, outs []outcome[T]) error {
	failed := 0
	for _, o := range outs {
		if o.err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "pgswitch: %s: %s\n", o.instance, o.err)
			failed++
		}
	}
	if failed > 0 {
		return errPrinted
	}
	return nil
}

func connect(ctx context.Context, cfg *pgx.ConnConfig) (*console, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the admin console at %s: %s", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), oneLine(err))
	}
	return &console{conn: conn, ctx: ctx}, nil
}

// oneLine shortens an error to one line; a server error keeps its SQLSTATE.
func oneLine(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// answer is a SHOW result.
type answer struct {
	cols  []string
	types []uint32
	rows  [][]*string // nil: NULL
}

func (c *console) show(what string) (*answer, error) {
	rows, err := c.conn.Query(c.ctx, "SHOW "+what)
	if err != nil {
		return nil, fmt.Errorf("SHOW %s: %s", what, oneLine(err))
	}
	defer rows.Close()
	a := &answer{}
	for _, fd := range rows.FieldDescriptions() {
		a.cols = append(a.cols, fd.Name)
		a.types = append(a.types, fd.DataTypeOID)
	}
	for rows.Next() {
		row := make([]*string, len(a.cols))
		for i, v := range rows.RawValues() {
			if v != nil {
				s := string(v)
				row[i] = &s
			}
		}
		a.rows = append(a.rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("SHOW %s: %s", what, oneLine(err))
	}
	return a, nil
}

// value returns row's value of column col ("" for NULL or no such column).
func (a *answer) value(row []*string, col string) string {
	for i, c := range a.cols {
		if c == col && row[i] != nil {
			return *row[i]
		}
	}
	return ""
}

// records turns rows into JSON objects: numbers as numbers, NULL as null.
func (a *answer) records() []map[string]any {
	out := make([]map[string]any, 0, len(a.rows))
	for _, row := range a.rows {
		m := make(map[string]any, len(a.cols))
		for i, c := range a.cols {
			v := row[i]
			switch {
			case v == nil:
				m[c] = nil
			case a.types[i] == 20 || a.types[i] == 701:
				if _, err := strconv.ParseFloat(*v, 64); err == nil {
					m[c] = json.Number(*v)
				} else {
					m[c] = *v
				}
			default:
				m[c] = *v
			}
		}
		out = append(out, m)
	}
	return out
}

// printTable prints the columns cols of a as an aligned table.
func printTable(w io.Writer, a *answer, cols []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
	for _, row := range a.rows {
		vals := make([]string, len(cols))
		for i, c := range cols {
			vals[i] = a.value(row, c)
			if vals[i] == "" {
				vals[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(vals, "\t"))
	}
	tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// merged puts the answers of several instances into one, with an instance
// column first; rows follow the columns of the first instance that
// answered, by name, so an instance of another version cannot shift them.
func merged(outs []outcome[*answer]) *answer {
	m := &answer{}
	for _, o := range outs {
		if o.err != nil {
			continue
		}
		if m.cols == nil {
			m.cols = append([]string{"instance"}, o.val.cols...)
			m.types = append([]uint32{25}, o.val.types...)
		}
		at := make(map[string]int, len(o.val.cols))
		for i, c := range o.val.cols {
			at[c] = i
		}
		for _, row := range o.val.rows {
			name := o.instance
			out := make([]*string, len(m.cols))
			out[0] = &name
			for i, c := range m.cols[1:] {
				if j, ok := at[c]; ok {
					out[i+1] = row[j]
				}
			}
			m.rows = append(m.rows, out)
		}
	}
	return m
}

// answered reports whether any instance answered.
func answered[T any](outs []outcome[T]) bool {
	for _, o := range outs {
		if o.err == nil {
			return true
		}
	}
	return false
}

// listCommand makes `pgswitch pools` and its kind: one SHOW, some columns.
// Over several instances, their rows are merged under an instance column.
func listCommand(use, short, what string, cols []string) *cobra.Command {
	var f consoleFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + ` (the admin console's SHOW ` + what + `). It connects with --admin-url,
$` + adminURLEnv + ` or the address and first admin user of --config.
--json prints every column of SHOW ` + what + `. With --admin-url repeated, or
a host name with several addresses, it asks every instance and merges their
rows under an INSTANCE column; an instance that fails is named on stderr,
the others' rows are printed, and the exit code is 1.`,
		Example: "  PGSWITCH_ADMIN_URL=postgres://admin:secret@127.0.0.1:6432/pgswitch pgswitch " + use + `
  pgswitch ` + use + ` --admin-url postgres://admin:secret@10.0.0.1:6432/pgswitch --admin-url postgres://admin:secret@10.0.0.2:6432/pgswitch`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			outs, err := onEach(cmd, &f, func(ctx context.Context, c *console) (*answer, error) { return c.show(what) })
			if err != nil {
				return err
			}
			a, shown := outs[0].val, cols
			if len(outs) == 1 {
				if outs[0].err != nil {
					return outs[0].err
				}
			} else {
				a, shown = merged(outs), append([]string{"instance"}, cols...)
			}
			if answered(outs) {
				if f.json {
					if err := printJSON(cmd.OutOrStdout(), a.records()); err != nil {
						return err
					}
				} else {
					printTable(cmd.OutOrStdout(), a, shown)
				}
			}
			return failures(cmd, outs)
		},
	}
	f.register(cmd)
	return cmd
}

func newPoolsCommand() *cobra.Command {
	return listCommand("pools", "Show the pools: clients and server connections per database and user", "POOLS",
		[]string{"database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_login", "maxwait", "pool_mode", "paused"})
}

func newServersCommand() *cobra.Command {
	return listCommand("servers", "Show the servers: role, health, lag, connections, queries routed", "HEALTH",
		[]string{"server", "role", "state", "lag_bytes", "lag_seconds", "connections", "reads_routed", "writes_routed", "reason"})
}

func newClientsCommand() *cobra.Command {
	return listCommand("clients", "Show the connected clients", "CLIENTS",
		[]string{"user", "database", "state", "addr", "port", "connect_time", "pool_mode", "pinned", "server", "application_name"})
}

func newStatsCommand() *cobra.Command {
	return listCommand("stats", "Show per-database statistics", "STATS",
		[]string{"database", "total_xact_count", "total_query_count", "reads_routed", "writes_routed", "total_received", "total_sent", "avg_wait_time"})
}

// actionCommand makes `pgswitch pause [db]` and its kind. Over several
// instances it runs on all of them at once and says how each went.
func actionCommand(verb, short, long string, maxArgs int) *cobra.Command {
	var f consoleFlags
	use := strings.ToLower(verb)
	if maxArgs > 0 {
		use += " [database]"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: long + `

With --admin-url repeated, or a host name with several addresses, it runs
on every instance at once; an instance that fails is named on stderr and the
exit code is 1.`,
		Args: cobra.MaximumNArgs(maxArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			sql := verb
			for _, a := range args {
				sql += " " + pgx.Identifier{a}.Sanitize()
			}
			outs, err := onEach(cmd, &f, func(ctx context.Context, c *console) (struct{}, error) {
				if _, err := c.conn.Exec(ctx, sql); err != nil {
					return struct{}{}, fmt.Errorf("%s: %s", verb, oneLine(err))
				}
				return struct{}{}, nil
			})
			if err != nil {
				return err
			}
			if len(outs) == 1 && outs[0].err != nil {
				return outs[0].err
			}
			target := "all databases"
			if len(args) > 0 {
				target = args[0]
			}
			done := strings.ToLower(verb) + "d: " + target
			if verb == "RELOAD" {
				done = "configuration reloaded"
			}
			out := cmd.OutOrStdout()
			switch {
			case f.json && len(outs) == 1:
				return printJSON(out, map[string]any{"command": verb, "databases": args, "ok": true})
			case f.json:
				var each []map[string]any
				for _, o := range outs {
					m := map[string]any{"instance": o.instance, "command": verb, "databases": args, "ok": o.err == nil}
					if o.err != nil {
						m["error"] = o.err.Error()
					}
					each = append(each, m)
				}
				if err := printJSON(out, each); err != nil {
					return err
				}
			case len(outs) == 1:
				fmt.Fprintln(out, done)
			default:
				for _, o := range outs {
					if o.err == nil {
						fmt.Fprintf(out, "%s: %s\n", o.instance, done)
					}
				}
			}
			return failures(cmd, outs)
		},
	}
	f.register(cmd)
	return cmd
}

func newPauseCommand() *cobra.Command {
	return actionCommand("PAUSE", "Hold new work and close server connections, for maintenance",
		`Pause a database (or all): wait for transactions in flight to finish (up to
timeouts.pause), close the database's server connections and hold new work
from clients until "pgswitch resume". Clients see a delay, not an error.`, 1)
}

func newResumeCommand() *cobra.Command {
	return actionCommand("RESUME", "Let held work go on after pause",
		`Resume a paused database (or all): held work goes on, on new server connections.`, 1)
}

func newReloadCommand() *cobra.Command {
	return actionCommand("RELOAD", "Reload pgswitch's configuration file",
		`Make the running pgswitch read its configuration file again. A file with
errors is refused whole; the running configuration stays.`, 0)
}

// status is what `pgswitch status` reads from one instance.
type status struct {
	version     string
	health, dbs *answer
}

func (c *console) status() (status, error) {
	var st status
	ver, err := c.show("VERSION")
	if err != nil {
		return st, err
	}
	if len(ver.rows) > 0 {
		st.version = ver.value(ver.rows[0], "version")
	}
	if st.health, err = c.show("HEALTH"); err != nil {
		return st, err
	}
	st.dbs, err = c.show("DATABASES")
	return st, err
}

var (
	statusServerCols   = []string{"server", "role", "state", "lag_bytes", "connections", "reads_routed", "writes_routed", "reason"}
	statusDatabaseCols = []string{"name", "host", "port", "route", "current_client_connections", "current_connections", "paused", "disabled"}
)

func newStatusCommand() *cobra.Command {
	var f consoleFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "One-screen summary: servers, databases, clients, paused or not",
		Long: `Print a summary of a running pgswitch: its version, each server's role,
health and lag, each database's clients, server connections and whether it
is paused or disabled. It connects with --admin-url, $` + adminURLEnv + ` or --config.

With --admin-url repeated, or a host name with several addresses (a
Kubernetes headless Service), it summarizes every instance in one screen:
each table gains an INSTANCE column. An instance that cannot be reached is
named on stderr, the others are shown, and the exit code is 1.`,
		Example: `  pgswitch status --admin-url postgres://admin:secret@pgswitch-peers:6432/pgswitch`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			outs, err := onEach(cmd, &f, func(ctx context.Context, c *console) (status, error) { return c.status() })
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(outs) == 1 {
				st, err := outs[0].val, outs[0].err
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(out, map[string]any{"version": st.version, "servers": st.health.records(), "databases": st.dbs.records()})
				}
				fmt.Fprintln(out, st.version)
				fmt.Fprintln(out)
				printTable(out, st.health, statusServerCols)
				fmt.Fprintln(out)
				printTable(out, st.dbs, statusDatabaseCols)
				return nil
			}
			versions := &answer{cols: []string{"instance", "version", "error"}, types: []uint32{25, 25, 25}}
			var health, dbs []outcome[*answer]
			for _, o := range outs {
				name, ver, msg := o.instance, o.val.version, ""
				row := []*string{&name, &ver, nil}
				if o.err != nil {
					msg = o.err.Error()
					row = []*string{&name, nil, &msg}
				}
				versions.rows = append(versions.rows, row)
				health = append(health, outcome[*answer]{o.instance, o.val.health, o.err})
				dbs = append(dbs, outcome[*answer]{o.instance, o.val.dbs, o.err})
			}
			if f.json {
				if err := printJSON(out, map[string]any{"instances": versions.records(), "servers": merged(health).records(),
					"databases": merged(dbs).records()}); err != nil {
					return err
				}
				return failures(cmd, outs)
			}
			printTable(out, versions, []string{"instance", "version"})
			if answered(outs) {
				fmt.Fprintln(out)
				printTable(out, merged(health), append([]string{"instance"}, statusServerCols...))
				fmt.Fprintln(out)
				printTable(out, merged(dbs), append([]string{"instance"}, statusDatabaseCols...))
			}
			return failures(cmd, outs)
		},
	}
	f.register(cmd)
	return cmd
}

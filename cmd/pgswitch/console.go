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

// consoleFlags say how the console commands reach the admin console.
type consoleFlags struct {
	url        string // --admin-url
	configPath string // --config
	user       string // --user, with --config
	json       bool
	timeout    time.Duration
}

func (f *consoleFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.url, "admin-url", "", "admin console URL (default $"+adminURLEnv+")")
	cmd.Flags().StringVarP(&f.configPath, "config", "c", "", "take the address and an admin user's password from this configuration file")
	cmd.Flags().StringVar(&f.user, "user", "", "with --config: the admin user to log in as (default: the first of admin.admin_users)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON instead of a table")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 70*time.Second, "give up after this long")
}

// connString works out the admin console's URL: --admin-url, then
// $PGSWITCH_ADMIN_URL, then --config.
func (f *consoleFlags) connString() (string, error) {
	if f.url != "" {
		return f.url, nil
	}
	if f.configPath == "" {
		if u := os.Getenv(adminURLEnv); u != "" {
			return u, nil
		}
		return "", fmt.Errorf("no admin console given: use --admin-url, $%s or --config", adminURLEnv)
	}
	cfg, err := config.Load(f.configPath)
	if err != nil {
		return "", errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	name := f.user
	if name == "" {
		if len(cfg.Admin.Users) == 0 {
			return "", fmt.Errorf("%s: admin.admin_users is empty; add a user or pass --admin-url", f.configPath)
		}
		name = cfg.Admin.Users[0]
	}
	u := cfg.Users[name]
	if u == nil {
		return "", fmt.Errorf("%s: no user %q", f.configPath, name)
	}
	if cfg.AuthFor(u) == config.AuthPeer && cfg.UnixSocketDir != "" {
		// A peer user logs in over the Unix socket, as who runs the CLI.
		_, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return "", fmt.Errorf("%s: listen: %w", f.configPath, err)
		}
		return fmt.Sprintf("host=%s port=%s user=%s dbname=pgswitch", wire.QuoteConnValue(cfg.UnixSocketDir), port, wire.QuoteConnValue(name)), nil
	}
	if u.PasswordKind() != config.PasswordPlain {
		return "", fmt.Errorf("%s: the password of %q is a verifier, not usable to log in; pass --admin-url", f.configPath, name)
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return "", fmt.Errorf("%s: listen: %w", f.configPath, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	cu := url.URL{Scheme: "postgres", User: url.UserPassword(name, u.Password), Host: net.JoinHostPort(host, port),
		Path: "/pgswitch", RawQuery: "sslmode=disable"}
	return cu.String(), nil
}

// console is a connection to the admin console.
type console struct {
	conn *pgx.Conn
	ctx  context.Context
}

// run connects to the console for one command, runs fn and disconnects.
func (f *consoleFlags) run(cmd *cobra.Command, fn func(ctx context.Context, c *console) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	c, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer c.conn.Close(context.Background())
	return fn(ctx, c)
}

func (f *consoleFlags) connect(ctx context.Context) (*console, error) {
	s, err := f.connString()
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(s)
	if err != nil {
		return nil, fmt.Errorf("admin URL: %s", oneLine(err))
	}
	// The console speaks only the simple query protocol, as PgBouncer's.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the admin console at %s: %s", cfg.Host+":"+strconv.Itoa(int(cfg.Port)), oneLine(err))
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

// listCommand makes `pgswitch pools` and its kind: one SHOW, some columns.
func listCommand(use, short, what string, cols []string) *cobra.Command {
	var f consoleFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + ` (the admin console's SHOW ` + what + `). It connects with --admin-url,
$` + adminURLEnv + ` or the address and first admin user of --config.
--json prints every column of SHOW ` + what + `.`,
		Example: "  PGSWITCH_ADMIN_URL=postgres://admin:secret@127.0.0.1:6432/pgswitch pgswitch " + use,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, func(ctx context.Context, c *console) error {
				a, err := c.show(what)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), a.records())
				}
				printTable(cmd.OutOrStdout(), a, cols)
				return nil
			})
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

// actionCommand makes `pgswitch pause [db]` and its kind.
func actionCommand(verb, short, long string, maxArgs int) *cobra.Command {
	var f consoleFlags
	use := strings.ToLower(verb)
	if maxArgs > 0 {
		use += " [database]"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.MaximumNArgs(maxArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, func(ctx context.Context, c *console) error {
				sql := verb
				for _, a := range args {
					sql += " " + pgx.Identifier{a}.Sanitize()
				}
				if _, err := c.conn.Exec(ctx, sql); err != nil {
					return fmt.Errorf("%s: %s", verb, oneLine(err))
				}
				target := "all databases"
				if len(args) > 0 {
					target = args[0]
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), map[string]any{"command": verb, "databases": args, "ok": true})
				}
				switch verb {
				case "RELOAD":
					fmt.Fprintln(cmd.OutOrStdout(), "configuration reloaded")
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", strings.ToLower(verb)+"d", target)
				}
				return nil
			})
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

func newStatusCommand() *cobra.Command {
	var f consoleFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "One-screen summary: servers, databases, clients, paused or not",
		Long: `Print a summary of a running pgswitch: its version, each server's role,
health and lag, each database's clients, server connections and whether it
is paused or disabled. It connects with --admin-url, $` + adminURLEnv + ` or --config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, func(ctx context.Context, c *console) error {
				ver, err := c.show("VERSION")
				if err != nil {
					return err
				}
				health, err := c.show("HEALTH")
				if err != nil {
					return err
				}
				dbs, err := c.show("DATABASES")
				if err != nil {
					return err
				}
				version := ""
				if len(ver.rows) > 0 {
					version = ver.value(ver.rows[0], "version")
				}
				out := cmd.OutOrStdout()
				if f.json {
					return printJSON(out, map[string]any{"version": version, "servers": health.records(), "databases": dbs.records()})
				}
				fmt.Fprintln(out, version)
				fmt.Fprintln(out)
				printTable(out, health, []string{"server", "role", "state", "lag_bytes", "connections", "reads_routed", "writes_routed", "reason"})
				fmt.Fprintln(out)
				printTable(out, dbs, []string{"name", "host", "port", "route", "current_client_connections", "current_connections", "paused", "disabled"})
				return nil
			})
		},
	}
	f.register(cmd)
	return cmd
}

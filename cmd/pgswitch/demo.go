package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/internal/pgcluster"
)

func newDemoCommand() *cobra.Command {
	var listen, logLevel string
	var replicas int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a local primary + replicas and pgswitch in front of them",
		Long: `Start a throw-away PostgreSQL cluster (a primary and streaming hot-standby
replicas, in a temporary directory, on free loopback ports) and pgswitch in
front of it in transaction pooling mode. It prints the DATABASE_URL to use and
one line per server with its role, address and data directory, so you can try
a failover by hand. ADMIN_URL is the admin console's URL, for psql or
PGSWITCH_ADMIN_URL (pgswitch status, pools, pause, …). Ctrl-C stops everything and removes the files.

Needs the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) on PATH
or under /usr/lib/postgresql/*/bin.`,
		Example: `  pgswitch demo
  psql "$(pgswitch demo | grep ^DATABASE_URL= | cut -d= -f2-)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			cl, err := pgcluster.Start(startCtx, pgcluster.Options{Replicas: replicas})
			if err != nil {
				return fmt.Errorf("start cluster: %w", err)
			}
			defer cl.Stop()
			cfg, err := config.Parse([]byte(demoConfig(cl, listen)))
			if err != nil {
				return fmt.Errorf("demo configuration: %w", err)
			}
			out := cmd.OutOrStdout()
			return serve(ctx, cfg, nil, logger, func(addr string) {
				u := url.URL{Scheme: "postgres", User: url.UserPassword(cl.User, cl.Password), Host: addr,
					Path: "/" + cl.Database, RawQuery: "sslmode=disable"}
				fmt.Fprintf(out, "DATABASE_URL=%s\n", u.String())
				u.Path = "/pgswitch"
				fmt.Fprintf(out, "ADMIN_URL=%s\n", u.String())
				for _, s := range cl.Servers() {
					role := "replica"
					if s == cl.Primary {
						role = "primary"
					}
					fmt.Fprintf(out, "SERVER %s role=%s addr=%s:%d datadir=%s\n", s.Name, role, s.Host, s.Port, s.DataDir)
				}
				fmt.Fprintln(out, "pgswitch is running; press Ctrl-C to stop it and remove the cluster.")
			})
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:6432", "address pgswitch listens on")
	cmd.Flags().IntVar(&replicas, "replicas", 2, "number of streaming replicas")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// demoConfig is the configuration pgswitch runs with in front of cl.
func demoConfig(cl *pgcluster.Cluster, listen string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %q\npool_mode: transaction\n", listen)
	fmt.Fprintf(&b, "databases:\n  %s:\n    servers:\n", cl.Database)
	for _, s := range cl.Servers() {
		role := "replica"
		if s == cl.Primary {
			role = "primary"
		}
		fmt.Fprintf(&b, "      - {host: %q, port: %d, role: %s}\n", s.Host, s.Port, role)
	}
	fmt.Fprintf(&b, "users:\n  %s:\n    password: %q\n", cl.User, cl.Password)
	// The demo's user runs the admin console too (ADMIN_URL).
	fmt.Fprintf(&b, "admin:\n  admin_users: [%q]\n", cl.User)
	return b.String()
}

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
	var listen, logLevel, envFile string
	var replicas int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a local primary + replicas and pgswitch in front of them",
		Long: `Start a throw-away PostgreSQL cluster (a primary and streaming hot-standby
replicas, in a temporary directory, on free loopback ports) and pgswitch in
front of it in transaction pooling mode. Once it is ready it prints two
lines to paste into a shell, DATABASE_URL (for psql, pgbench or your
application) and PGSWITCH_ADMIN_URL (the admin console, which pgswitch
status, pools, pause, … read), then one line per server with its role,
address and data directory, so you can try a failover by hand. With
--env-file it also writes the two lines to a file, for another terminal to
source. Ctrl-C stops everything and removes the files.

Needs the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) on PATH
or under /usr/lib/postgresql/*/bin.`,
		Example: `  # Terminal 1: the demo, which writes its URLs to a file once it is ready
  pgswitch demo --env-file /tmp/pgswitch-demo.env

  # Terminal 2
  . /tmp/pgswitch-demo.env
  psql "$DATABASE_URL"
  pgswitch status`,
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
			wroteEnv := false // serve calls ready before it returns
			defer func() {
				if wroteEnv {
					os.Remove(envFile) // its URLs die with the demo
				}
			}()
			cfg, err := config.Parse([]byte(demoConfig(cl, listen)))
			if err != nil {
				return fmt.Errorf("demo configuration: %w", err)
			}
			out := cmd.OutOrStdout()
			return serve(ctx, cfg, nil, logger, func(addr string) {
				u := url.URL{Scheme: "postgres", User: url.UserPassword(cl.User, cl.Password), Host: addr,
					Path: "/" + cl.Database, RawQuery: "sslmode=disable"}
				env := "export DATABASE_URL=" + shellQuote(u.String()) + "\n"
				u.Path = "/pgswitch"
				env += "export " + adminURLEnv + "=" + shellQuote(u.String()) + "\n"
				fmt.Fprint(out, env)
				for _, s := range cl.Servers() {
					role := "replica"
					if s == cl.Primary {
						role = "primary"
					}
					fmt.Fprintf(out, "SERVER %s role=%s addr=%s:%d datadir=%s\n", s.Name, role, s.Host, s.Port, s.DataDir)
				}
				if envFile != "" {
					if err := writeEnvFile(envFile, env); err != nil {
						logger.Error("demo: --env-file", "err", err)
					} else {
						wroteEnv = true
						fmt.Fprintf(out, "Wrote these URLs to %s: source it in another shell (. %s).\n", envFile, envFile)
					}
				}
				fmt.Fprintln(out, "pgswitch is running; press Ctrl-C to stop it and remove the cluster.")
			})
		},
	}
	cmd.Flags().StringVar(&envFile, "env-file", "", "once ready, write DATABASE_URL and "+adminURLEnv+" to this file as shell exports; removed on exit")
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

// writeEnvFile writes env to path whole or not at all, so that a shell
// waiting for the file never sources half of it.
func writeEnvFile(path, env string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(env), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

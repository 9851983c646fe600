package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/router"
)

func newServeCommand() *cobra.Command {
	var path, logLevel, cpuProfile string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run pgswitch with a configuration file",
		Long: `Run pgswitch in the foreground with the given YAML configuration
(see pgswitch.yaml in the repository for every key). It stops on SIGINT or
SIGTERM, telling connected clients 57P01.`,
		Example: "  pgswitch serve --config /etc/pgswitch/pgswitch.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, logger, nil)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "pgswitch.yaml", "configuration file")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&cpuProfile, "cpu-profile", "", "write a Go CPU profile to this file (for benchmarks)")
	cmd.Flags().MarkHidden("cpu-profile")
	return cmd
}

// serve runs a router on cfg.Listen until ctx ends. ready, if not nil, is
// called with the bound address once clients can connect.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger, ready func(addr string)) error {
	r, err := router.New(cfg, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		r.Close()
		return fmt.Errorf("listen: %w", err)
	}
	logger.Info("pgswitch listening", "addr", ln.Addr().String(), "version", version)
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Serve(ln) }()
	select {
	case <-ctx.Done():
		logger.Info("pgswitch shutting down")
		r.Close()
		return nil
	case err := <-errc:
		r.Close()
		return err
	}
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
	slog.SetDefault(logger)
	return logger, nil
}

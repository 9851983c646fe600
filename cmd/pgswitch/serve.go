package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgswitch/pgswitch/admin"
	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/internal/threads"
	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router"
	"github.com/pgswitch/pgswitch/upgrade"
)

func newServeCommand() *cobra.Command {
	var path, logLevel, cpuProfile string
	var watch time.Duration
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run pgswitch with a configuration file",
		Long: `Run pgswitch in the foreground with the given YAML configuration
(see pgswitch.yaml in the repository for every key). SIGHUP (or RELOAD on
the admin console) reloads the file; a file with errors is refused and the
running configuration stays. With --watch-config, a change of the file's
content reloads it too, as SIGHUP (a Kubernetes ConfigMap mounted as a
volume, not with subPath, is seen within the kubelet's sync period plus
the interval). SIGINT or SIGTERM (or SHUTDOWN) stop accepting
clients, let transactions in flight finish for up to timeouts.shutdown, then
tell the remaining clients 57P01 and exit 0. SIGUSR2 (or pgswitch upgrade)
starts the binary on disk with the same arguments and hands it the
listening sockets; this process then serves the clients it has until they
leave, for up to timeouts.upgrade_drain, and exits 0.`,
		Example: "  pgswitch serve --config /etc/pgswitch/pgswitch.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			checkFiles := fileLimitCheck(logger)
			load := func() (*config.Config, error) {
				cfg, err := config.Load(path)
				if err == nil {
					checkFiles(cfg)
				}
				return cfg, err
			}
			// What the file held before the first load: the watch compares
			// with it, so that an edit made while pgswitch starts is seen.
			loaded, _ := digest(path)
			cfg, err := load()
			if err != nil {
				return printConfigErrors(cmd.ErrOrStderr(), err)
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
			var changed chan struct{}
			if watch > 0 {
				changed = make(chan struct{}, 1)
				ticker := time.NewTicker(watch)
				defer ticker.Stop()
				wctx, stopWatch := context.WithCancel(ctx)
				done := make(chan struct{})
				defer func() {
					stopWatch()
					<-done
				}()
				go func() {
					defer close(done)
					watchConfig(wctx, path, loaded, ticker.C, changed)
				}()
			}
			return serve(ctx, cfg, load, logger, nil, changed)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "pgswitch.yaml", "configuration file")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().DurationVar(&watch, "watch-config", 0, "read the file this often and reload it when its content changed (0: only on SIGHUP or RELOAD)")
	cmd.Flags().StringVar(&cpuProfile, "cpu-profile", "", "write a Go CPU profile to this file (for benchmarks)")
	cmd.Flags().MarkHidden("cpu-profile")
	return cmd
}

// serve runs a router on cfg.Listen and, with unix_socket_dir, on its Unix
// socket, with its admin console, until ctx ends or SHUTDOWN, or until it
// has handed its listeners to a new binary (SIGUSR2, UPGRADE) and its
// clients have left. load, if not nil, reads the configuration again for
// RELOAD and SIGHUP, and when changed (nil: never) signals that the file
// changed. ready, if not nil, is called with the bound address once
// clients can connect.
func serve(ctx context.Context, cfg *config.Config, load func() (*config.Config, error), logger *slog.Logger, ready func(addr string), changed <-chan struct{}) error {
	// Signals first: a SIGUSR2 that came before the handler would kill.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr2 := make(chan os.Signal, 1)
	if upgradeSignal != nil {
		signal.Notify(usr2, upgradeSignal)
		defer signal.Stop(usr2)
	}

	workers := threads.New(pool.Queued, logger)
	workers.Set(cfg.Workers)
	in, err := upgrade.Take()
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	defer in.Close()
	r, err := router.New(cfg, logger)
	if err != nil {
		return err
	}
	if in != nil {
		r.SetCancelRelay(in.ForwardCancel) // the old process's clients' keys
	}
	lns, metrics, err := openListeners(cfg, in, logger)
	if err != nil {
		r.Close()
		return fmt.Errorf("listen: %w", err)
	}
	ctx, shutdown := context.WithCancel(ctx)
	defer shutdown()
	adapted := make(chan struct{})
	go func() {
		defer close(adapted)
		workers.Run(ctx)
	}()
	defer func() { shutdown(); <-adapted }()

	up := &upgrader{r: r, listeners: lns, stopOwn: func() {}, in: in, log: logger, handedOver: make(chan struct{})}
	opts := admin.Options{Version: version, Load: load, Shutdown: shutdown, Log: logger,
		Reloaded: func(cfg *config.Config) { workers.Set(cfg.Workers) }}
	if load != nil { // the new binary reads the configuration from the file
		opts.Upgrade = up.run
	}
	if in != nil {
		opts.Predecessor = in.Parent
	}
	r.SetAdmin(admin.New(r, opts))
	if metrics != nil {
		ms := admin.NewMetricsServer(r)
		go ms.Serve(metrics)
		defer ms.Close()
		up.listeners = append(up.listeners, *metrics)
		up.stopOwn = func() { ms.Close() }
		logger.Info("metrics listening", "addr", metrics.Addr().String())
	}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- r.Serve(ln) }()
		logger.Info("pgswitch listening", "addr", ln.Addr().String(), "version", version, "pid", os.Getpid())
	}
	if in != nil {
		// systemd hears of the new main process before the old one may exit.
		notify(logger, fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid()))
		if err := in.Ready(); err != nil {
			logger.Warn("upgrade: could not tell the old process that this one serves", "err", err)
		}
		logger.Info("upgrade: serving in place of the old process", "old_pid", in.Parent)
	} else {
		notify(logger, "READY=1")
	}
	if ready != nil {
		ready(lns[0].Addr().String())
	}
	for {
		select {
		case <-hup:
			reload(r, load, workers, logger)
		case <-changed:
			logger.Info("configuration file changed; reloading")
			reload(r, load, workers, logger)
		case <-usr2:
			if load == nil {
				logger.Warn("SIGUSR2 ignored: no configuration file for a new binary to read")
				continue
			}
			go up.run() // logs its outcome
		case <-up.handedOver:
			if next := up.successor(); next != nil {
				defer next.Close() // cancel keys from it until the end
			}
			r.Retire(ctx, r.Config().Timeouts.UpgradeDrain)
			logger.Info("upgrade: this old process is done; exiting")
			return nil
		case <-ctx.Done():
			timeout := r.Config().Timeouts.Shutdown
			logger.Info("pgswitch shutting down", "timeout", timeout)
			notify(logger, "STOPPING=1")
			r.Shutdown(timeout)
			return nil
		case err := <-errc:
			if up.successor() != nil {
				continue // closed by the upgrade; handedOver says what next
			}
			r.Close()
			return err
		}
	}
}

// notify tells systemd (Type=notify) how pgswitch is doing.
func notify(logger *slog.Logger, state string) {
	if err := upgrade.Notify(state); err != nil {
		logger.Warn("could not notify the service manager", "state", state, "err", err)
	}
}

// reload applies the configuration file again (SIGHUP); one with errors is
// refused and the running configuration stays.
func reload(r *router.Router, load func() (*config.Config, error), workers *threads.Control, logger *slog.Logger) {
	if load == nil {
		logger.Warn("SIGHUP ignored: no configuration file to reload")
		return
	}
	cfg, err := load()
	if err == nil {
		err = r.Reload(cfg)
	}
	if err != nil {
		logger.Error("reload refused; the running configuration stays", "err", err)
		return
	}
	workers.Set(cfg.Workers)
}

// fileLimitCheck raises the limit on open files to the hard limit and
// returns a check that warns when a configuration may need more file
// descriptors than that: clients up to pool.max_client_conn, connections in
// their startup phase, and every server connection the pools may open.
// Beyond the limit, accepting clients and opening server connections fail
// until descriptors free up.
func fileLimitCheck(logger *slog.Logger) func(*config.Config) {
	limit, err := raiseFileLimit()
	if err != nil {
		logger.Warn("cannot raise the limit on open files to the hard limit", "limit", limit, "err", err)
	} else if limit > 0 {
		logger.Info("limit on open files", "limit", limit)
	}
	return func(cfg *config.Config) {
		need := router.FilesNeeded(cfg)
		if limit == 0 || uint64(need.Total()) <= limit {
			return
		}
		logger.Warn("the limit on open files is too low for this configuration: beyond it clients wait to be accepted and server connections fail",
			"limit", limit, "need", need.Total(), "clients", need.Clients, "startup", need.Startup,
			"server_connections", need.Servers, "own", need.Own,
			"hint", "raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower pool.max_client_conn, pool.max_startup_conn or pool sizes")
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

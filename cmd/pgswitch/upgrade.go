package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/router"
	"github.com/pgswitch/pgswitch/upgrade"
	"github.com/pgswitch/pgswitch/wire"
)

// upgradeReadyTimeout bounds how long a new binary may take to serve the
// listeners it was handed; past it, it is killed and the old one goes on.
const upgradeReadyTimeout = time.Minute

// upgrader runs the binary upgrade of one serving process (SIGUSR2 or the
// console's UPGRADE): at most one at a time, and none once a successor
// serves.
type upgrader struct {
	r         *router.Router
	listeners []upgrade.Listener // handed over: the clients' and the metrics'
	stopOwn   func()             // stops serving what only this process serves (metrics)
	in        *upgrade.Inherited // what this process took over in its own upgrade, if any
	log       *slog.Logger

	mu      sync.Mutex
	running bool
	next    *upgrade.Successor // set once a successor serves

	handedOver chan struct{} // closed once next is set
}

// run starts the new binary, waits until it serves, and stops accepting
// here. It returns the new process's PID; on failure this process goes on
// as before.
func (u *upgrader) run() (int, error) {
	u.mu.Lock()
	switch {
	case u.next != nil:
		pid := u.next.PID
		u.mu.Unlock()
		u.log.Warn("upgrade refused: this process has handed its listeners over already", "new_pid", pid)
		return 0, wire.Errorf(wire.CodeObjectNotInPrerequisiteState, "this process has handed its listeners over to process %d already", pid).
			WithHint("Upgrade the process that serves now: connect again.")
	case u.running:
		u.mu.Unlock()
		u.log.Warn("upgrade refused: one is under way")
		return 0, wire.Errorf(wire.CodeObjectNotInPrerequisiteState, "an upgrade is under way")
	}
	u.running = true
	u.mu.Unlock()

	u.log.Info("upgrade: starting the new binary")
	next, err := upgrade.Start(upgrade.Options{Listeners: u.listeners, Cancel: u.r.Cancel,
		Timeout: upgradeReadyTimeout, Inherited: u.in})
	u.mu.Lock()
	u.running = false
	if err == nil {
		u.next = next
	}
	u.mu.Unlock()
	if err != nil {
		u.log.Error("upgrade failed; this process goes on serving", "err", err)
		return 0, wire.Errorf(wire.CodeSystemError, "upgrade failed: %s", oneLine(err)).
			WithHint("This process goes on serving; the new binary's own log says why it did not start.")
	}
	u.r.StopAccepting()
	u.stopOwn()
	cfg := u.r.Config()
	u.log.Info("upgrade: the new process serves; this one keeps its clients until they leave",
		"new_pid", next.PID, "clients", len(u.r.Clients()), "upgrade_drain", cfg.Timeouts.UpgradeDrain)
	close(u.handedOver)
	return next.PID, nil
}

// successor returns the process that took over, or nil.
func (u *upgrader) successor() *upgrade.Successor {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.next
}

// listenSpec is a listener the configuration names: its setting, and
// where it listens.
type listenSpec struct{ setting, network, address string }

// clientListeners are the listeners cfg names for clients.
func clientListeners(cfg *config.Config) []listenSpec {
	return []listenSpec{{"listen", "tcp", cfg.Listen}}
}

// openListeners opens the listeners cfg names, or takes them over from the
// process that started this one for an upgrade (in): the clients' ones,
// and metrics_listen's (nil when not set).
func openListeners(cfg *config.Config, in *upgrade.Inherited, logger *slog.Logger) (clients []upgrade.Listener, metrics *upgrade.Listener, err error) {
	open := func(l listenSpec) (*upgrade.Listener, error) {
		key := upgrade.Key(l.setting, l.address)
		ln, inherited, err := in.Listen(key, l.network, l.address)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.setting, err)
		}
		if inherited {
			logger.Info("took a listening socket over from the old process", "setting", l.setting, "addr", ln.Addr().String())
		}
		return &upgrade.Listener{Key: key, Listener: ln}, nil
	}
	for _, l := range clientListeners(cfg) {
		ln, err := open(l)
		if err != nil {
			closeListeners(clients)
			return nil, nil, err
		}
		clients = append(clients, *ln)
	}
	if cfg.UnixSocketDir != "" && len(clients) > 0 {
		// As PgBouncer: the socket is named for the TCP port. Handed over
		// like the others; made anew, its stale file is checked and its
		// mode and owner set.
		port := clients[0].Addr().(*net.TCPAddr).Port
		key := upgrade.Key("unix_socket_dir", fmt.Sprintf("%s:%d", cfg.UnixSocketDir, port))
		ln, inherited, err := in.ListenWith(key, func() (net.Listener, error) { return router.ListenUnix(cfg, port, logger) })
		if err != nil {
			closeListeners(clients)
			return nil, nil, err
		}
		if inherited {
			logger.Info("took a listening socket over from the old process", "setting", "unix_socket_dir", "addr", ln.Addr().String())
		}
		clients = append(clients, upgrade.Listener{Key: key, Listener: ln})
	}
	if cfg.MetricsListen != "" {
		if metrics, err = open(listenSpec{"metrics_listen", "tcp", cfg.MetricsListen}); err != nil {
			closeListeners(clients)
			return nil, nil, err
		}
	}
	return clients, metrics, nil
}

func closeListeners(lns []upgrade.Listener) {
	for _, l := range lns {
		l.Close()
	}
}

func newUpgradeCommand() *cobra.Command {
	var f consoleFlags
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Replace the running pgswitch with the binary on disk, without dropping clients",
		Long: `Ask the running pgswitch (through its admin console, as UPGRADE) to start
the binary it was started as, as that path names it now, with the same
arguments, and to hand it the listening sockets. Once the new process
serves, this command prints both PIDs: new connections go to the new
process, while the old one keeps serving the clients it has until they
leave (at most timeouts.upgrade_drain), then exits. If the new binary
does not start (or refuses the configuration), the old process goes on
serving and this command fails. SIGUSR2 does the same without the console.

It connects with --admin-url, $` + adminURLEnv + ` or --config.`,
		Example: "  pgswitch upgrade --config /etc/pgswitch/pgswitch.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, func(ctx context.Context, c *console) error {
				var old, pid, clients int64
				if err := c.conn.QueryRow(ctx, "UPGRADE").Scan(&old, &pid, &clients); err != nil {
					return fmt.Errorf("UPGRADE: %s", oneLine(err))
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), map[string]any{"pid": old, "new_pid": pid, "clients": clients})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "upgraded: pid %d serves now; pid %d keeps its %d clients until they leave\n", pid, old, clients)
				return nil
			})
		},
	}
	f.register(cmd)
	return cmd
}

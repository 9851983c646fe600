package admin

import (
	"context"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/router"
	"github.com/pgswitch/pgswitch/wire"
)

// The commands that change something: each checks its arguments, then
// steers the router through its primitives (pause or resume a database's
// pools, disconnect its clients) and waits, where it must, on snapshots.

// drainPoll is how often PAUSE and WAIT_CLOSE look whether server
// connections are gone; they are admin commands, not the hot path.
const drainPoll = 20 * time.Millisecond

// databases returns the named databases, or every configured one for none;
// an unknown name is an error.
func databases(cfg *config.Config, names []string) ([]string, error) {
	if len(names) == 0 {
		for name := range cfg.Databases {
			names = append(names, name)
		}
		slices.Sort(names)
		return names, nil
	}
	for _, name := range names {
		if cfg.Databases[name] == nil {
			return nil, wire.Errorf(wire.CodeInvalidCatalogName, "database %q does not exist", name)
		}
	}
	return names, nil
}

// pause holds new work of the named databases (all for none) and waits
// until their transactions in flight have finished and their server
// connections are closed, so that their servers can restart. Held clients
// wait (up to timeouts.query_wait) instead of failing. If that takes longer
// than timeouts.pause or ctx ends, pause undoes itself and fails: nothing
// stays paused half-way.
func (con *Console) pause(ctx context.Context, names []string) error {
	cfg := con.r.Config()
	dbs, err := databases(cfg, names)
	if err != nil {
		return err
	}
	con.pauseMu.Lock()
	defer con.pauseMu.Unlock()
	var paused []string
	for _, db := range dbs {
		if !con.r.Paused(db) {
			con.r.PauseDatabase(db)
			paused = append(paused, db)
		}
	}
	timeout := cfg.Timeouts.Pause
	err = con.wait(ctx, dbs, timeout, func(p router.PoolInfo) int { return p.Stats.Total }, func(open int) error {
		return wire.Errorf(wire.CodeQueryCanceled,
			"%d server connections still in use after %s (timeouts.pause); nothing was paused", open, timeout).
			WithHint("Transactions in flight, or session-mode clients, hold them.")
	})
	if err != nil {
		for _, db := range paused {
			con.r.ResumeDatabase(db)
		}
		return err
	}
	con.opts.Log.Info("paused", "databases", dbs)
	return nil
}

// resume lets held work of the named databases (all for none) go on, on
// new server connections.
func (con *Console) resume(_ context.Context, names []string) error {
	dbs, err := databases(con.r.Config(), names)
	if err != nil {
		return err
	}
	con.pauseMu.Lock()
	defer con.pauseMu.Unlock()
	for _, db := range dbs {
		con.r.ResumeDatabase(db)
	}
	con.opts.Log.Info("resumed", "databases", dbs)
	return nil
}

// reconnect closes the server connections of the named databases (all for
// none) once their clients release them; new work gets new connections.
func (con *Console) reconnect(_ context.Context, names []string) error {
	dbs, err := databases(con.r.Config(), names)
	if err != nil {
		return err
	}
	for _, db := range dbs {
		con.r.ReconnectDatabase(db)
	}
	return nil
}

// waitClose waits, up to timeouts.pause, until the connections RECONNECT
// marked are closed.
func (con *Console) waitClose(ctx context.Context, names []string) error {
	cfg := con.r.Config()
	dbs, err := databases(cfg, names)
	if err != nil {
		return err
	}
	return con.wait(ctx, dbs, cfg.Timeouts.Pause, func(p router.PoolInfo) int { return p.Reconnecting }, func(n int) error {
		return wire.Errorf(wire.CodeQueryCanceled, "%d server connections still wait to close", n)
	})
}

// wait looks at the pools of dbs every drainPoll until count sums to 0
// over them. When timeout passes first it returns late(the sum); when the
// router closes, 57P01.
func (con *Console) wait(ctx context.Context, dbs []string, timeout time.Duration,
	count func(router.PoolInfo) int, late func(n int) error) error {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		n := 0
		for _, p := range con.r.Inspect().Pools {
			if slices.Contains(dbs, p.Key.Database) {
				n += count(p)
			}
		}
		if n == 0 {
			return nil
		}
		select {
		case <-tctx.Done():
			if ctx.Err() != nil {
				return wire.Errorf(wire.CodeAdminShutdown, "pgswitch is shutting down")
			}
			return late(n)
		case <-t.C:
		}
	}
}

// kill disconnects every client and server connection of a database at
// once; its clients get 57P01. New work waits until RESUME, as after PAUSE.
func (con *Console) kill(_ context.Context, args []string) error {
	db := args[0]
	if _, err := databases(con.r.Config(), args); err != nil {
		return err
	}
	con.pauseMu.Lock()
	defer con.pauseMu.Unlock()
	con.r.PauseDatabase(db)
	n := con.r.DisconnectDatabase(db,
		wire.Fatalf(wire.CodeAdminShutdown, "terminating connection due to administrator command (KILL %s)", db))
	con.opts.Log.Info("killed", "database", db, "clients", n)
	return nil
}

// disable refuses new clients of a database (existing ones stay).
func (con *Console) disable(_ context.Context, args []string) error { return con.r.Disable(args[0]) }

// enable lets clients of a database in again after DISABLE.
func (con *Console) enable(_ context.Context, args []string) error { return con.r.Enable(args[0]) }

// reload reads the configuration again and applies it; a configuration with
// errors is refused whole and the running one stays.
func (con *Console) reload(context.Context, []string) error {
	if con.opts.Load == nil {
		return wire.Errorf(wire.CodeFeatureNotSupported, "RELOAD: this pgswitch has no configuration file")
	}
	cfg, err := con.opts.Load()
	if err == nil {
		err = con.r.Reload(cfg)
	}
	if err != nil {
		con.opts.Log.Error("reload refused; the running configuration stays", "err", err)
		return wire.Errorf(wire.CodeConfigFileError, "configuration not reloaded: %s", oneLine(err.Error())).
			WithHint("The running configuration stays in force.")
	}
	if con.opts.Reloaded != nil {
		con.opts.Reloaded(cfg)
	}
	return nil
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// shutdown starts pgswitch's shutdown and does not wait for it.
func (con *Console) shutdown(context.Context, []string) error {
	if con.opts.Shutdown == nil {
		return wire.Errorf(wire.CodeFeatureNotSupported, "SHUTDOWN is not available in this process")
	}
	con.opts.Shutdown()
	return nil
}

// upgrade starts a binary upgrade and answers, once the new process
// serves, with both PIDs and the clients this process keeps until they
// leave (at most timeouts.upgrade_drain).
func (con *Console) upgrade(_ context.Context, cmd command) ([]pgproto3.BackendMessage, error) {
	if con.opts.Upgrade == nil {
		return nil, wire.Errorf(wire.CodeFeatureNotSupported, "UPGRADE is not available in this process")
	}
	pid, err := con.opts.Upgrade()
	if err != nil {
		return nil, err
	}
	t := newTable(intCol("pid"), intCol("new_pid"), intCol("clients"))
	t.add(os.Getpid(), pid, len(con.r.Clients()))
	return t.messages(cmd.verb), nil
}

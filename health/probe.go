package health

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/wire"
)

// probeQuery asks a server its role, WAL position and, on a primary, the
// timeline it writes (from its current WAL file name: pg_control_checkpoint()
// lags a promotion until the next checkpoint). ReplayAge follows the usual
// rule: a replica that replayed all it received is not behind, however old
// its last transaction is.
const probeQuery = `SELECT pg_is_in_recovery(),
  pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_replay_lsn(), '0/0') ELSE pg_current_wal_lsn() END, '0/0')::int8,
  CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
    ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8,
  CASE WHEN pg_is_in_recovery() THEN 0
    ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8 END`

// controlQuery reads the cluster identity.
const controlQuery = `SELECT system_identifier::int8 FROM pg_control_system()`

// pgxProber checks a server over one dedicated connection, reconnecting
// after any failure.
type pgxProber struct {
	c    *Checker
	addr string
	conn *pgx.Conn
	// noControl is set once the check user was refused pg_control_system().
	noControl bool
}

// warnedControl makes the missing-privilege warning appear once per process.
var warnedControl atomic.Bool

func newPgxProber(c *Checker, addr string) prober { return &pgxProber{c: c, addr: addr} }

func (p *pgxProber) probe(ctx context.Context) Probe {
	cfg, srv, dbname, err := p.c.checkDatabase(p.addr)
	if err != nil {
		return Probe{Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Health.Timeout)
	defer cancel()
	if p.conn == nil {
		conn, err := Connect(ctx, cfg, srv, dbname, "pgswitch health check")
		if err != nil {
			return Probe{Err: err}
		}
		p.conn = conn
	}
	var pr Probe
	err = p.conn.QueryRow(ctx, probeQuery, pgx.QueryExecModeSimpleProtocol).Scan(&pr.InRecovery, &pr.LSN, &pr.ReplayAge, &pr.Timeline)
	if err == nil && !p.noControl {
		err = p.conn.QueryRow(ctx, controlQuery, pgx.QueryExecModeSimpleProtocol).Scan(&pr.SystemID)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == wire.CodeInsufficientPrivilege {
			p.noControl, err = true, nil
			if !warnedControl.Swap(true) {
				p.c.log.Warn("the health check user may not read pg_control_system(): wrong-cluster detection is off; GRANT pg_monitor to it",
					"user", cfg.Health.User)
			}
		}
	}
	if err != nil {
		p.close()
		return Probe{Err: fmt.Errorf("check: %w", err)}
	}
	return pr
}

func (p *pgxProber) close() {
	if p.conn != nil {
		p.conn.Close(context.Background())
		p.conn = nil
	}
}

// Connect opens a pgx connection to srv as the health check user; pgswitch
// uses it for checks and catalog reads, never for client traffic.
func Connect(ctx context.Context, cfg *config.Config, srv *config.Server, dbname, app string) (*pgx.Conn, error) {
	pc, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d dbname=%s sslmode=%s application_name=%s",
		wire.QuoteConnValue(srv.Host), srv.Port, wire.QuoteConnValue(dbname), wire.QuoteConnValue(tlsMode(cfg)), wire.QuoteConnValue(app)))
	if err != nil {
		return nil, err
	}
	pc.User = cfg.Health.User
	pc.Password = cfg.Health.Password
	pc.ConnectTimeout = cfg.Health.Timeout
	return pgx.ConnectConfig(ctx, pc)
}

func tlsMode(cfg *config.Config) string {
	if cfg.ServerTLSMode == "" {
		return "disable"
	}
	return cfg.ServerTLSMode
}

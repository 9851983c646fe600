package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
)

// startReplica copies the running primary with pg_basebackup, which also
// writes standby.signal and primary_conninfo (-R), then starts the copy as a
// hot standby and waits until the primary sees it streaming.
func (c *Cluster) startReplica(ctx context.Context, r *Server) error {
	conninfo := "host=" + c.Primary.Host + " port=" + strconv.Itoa(c.Primary.Port) +
		" user=" + c.replUser + " password=" + c.replPassword +
		" application_name=" + r.Name + " sslmode=disable"
	if _, err := c.owner.run(ctx, c.BaseDir, c.tool("pg_basebackup"),
		"-D", r.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync",
		"-d", conninfo,
	); err != nil {
		return fmt.Errorf("cluster: %s: %w", r.Name, err)
	}
	if err := c.owner.appendFile(filepath.Join(r.DataDir, "postgresql.auto.conf"), "hot_standby = on\n"); err != nil {
		return fmt.Errorf("cluster: %s: postgresql.auto.conf: %w", r.Name, err)
	}
	if err := c.startFresh(ctx, r, true); err != nil {
		return err
	}
	if err := c.WaitStreaming(ctx, r); err != nil {
		return fmt.Errorf("%w%s", err, logTail(r.LogFile))
	}
	return nil
}

// WaitStreaming waits until replica r is in recovery and the primary's
// pg_stat_replication shows it streaming.
func (c *Cluster) WaitStreaming(ctx context.Context, r *Server) error {
	err := poll(ctx, r.Name+" to stream from the primary", func(ctx context.Context) (bool, error) {
		var inRecovery bool
		if err := c.queryRow(ctx, r, "SELECT pg_is_in_recovery()", nil, &inRecovery); err != nil {
			return false, err
		}
		if !inRecovery {
			return false, errors.New(r.Name + " is not in recovery")
		}
		var streaming bool
		if err := c.queryRow(ctx, c.Primary,
			"SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming')",
			[]any{r.Name}, &streaming); err != nil {
			return false, err
		}
		return streaming, nil
	})
	if err != nil {
		return fmt.Errorf("cluster: %s: %w", r.Name, err)
	}
	return nil
}

// WaitReplicated waits until every running replica that still follows the
// primary has replayed the primary's current WAL position.
func (c *Cluster) WaitReplicated(ctx context.Context) error {
	c.mu.Lock()
	primaryUp := c.Primary.running
	var followers []*Server
	for _, r := range c.Replicas {
		if r.running && r.standby {
			followers = append(followers, r)
		}
	}
	c.mu.Unlock()
	if !primaryUp {
		return errors.New("cluster: wait replicated: primary is not running")
	}

	// The insert position, not pg_current_wal_lsn (the write position): with
	// synchronous_commit off (a test may set it), a just-committed row may
	// not be written yet.
	var lsn string
	if err := c.queryRow(ctx, c.Primary, "SELECT pg_current_wal_insert_lsn()::text", nil, &lsn); err != nil {
		return fmt.Errorf("cluster: wait replicated: primary: %w", err)
	}
	for _, r := range followers {
		err := poll(ctx, r.Name+" to replay "+lsn, func(ctx context.Context) (bool, error) {
			var done bool
			err := c.queryRow(ctx, r,
				"SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", []any{lsn}, &done)
			return done, err
		})
		if err != nil {
			return fmt.Errorf("cluster: wait replicated: %s: %w", r.Name, err)
		}
	}
	return nil
}

// queryRow runs one query on s as the bootstrap superuser.
func (c *Cluster) queryRow(ctx context.Context, s *Server, sql string, args []any, dest ...any) error {
	conn, err := c.adminConnect(ctx, s, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql, args...).Scan(dest...)
}

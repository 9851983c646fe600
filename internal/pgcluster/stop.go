package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Stop stops every server this cluster started (pg_ctl stop -m immediate on
// its own data directories: the data is disposable) and removes BaseDir.
// Calling it again does nothing.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	replicas := append([]*Server(nil), c.Replicas...)
	primary := c.Primary
	c.mu.Unlock()

	// Replicas first, side by side, so that they don't log the primary's
	// disappearance; then the primary.
	errs := make([]error, len(replicas)+1)
	var wg sync.WaitGroup
	for i, r := range replicas {
		wg.Go(func() { errs[i] = c.kill(r) })
	}
	wg.Wait()
	if primary != nil {
		errs[len(replicas)] = c.kill(primary)
	}
	if c.tail != nil {
		c.tail.stop()
	}
	if err := errors.Join(errs...); err != nil {
		// A server we could not stop still uses its files; keep them for a look.
		return err
	}
	return c.removeFiles()
}

// kill stops s with pg_ctl stop -m immediate if its data directory says it may
// be running: postmaster.pid is there while a server runs or after it crashed,
// and pg_ctl signals only the postmaster recorded there.
func (c *Cluster) kill(s *Server) error {
	if _, err := os.Stat(filepath.Join(s.DataDir, "postmaster.pid")); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	out, err := c.owner.run(ctx, c.BaseDir, c.tool("pg_ctl"), "stop",
		"-D", s.DataDir, "-m", "immediate", "-w", "-t", timeoutSeconds(ctx))
	if err != nil && !strings.Contains(out, "Is server running?") {
		return fmt.Errorf("cluster: stop %s: %w", s.Name, err)
	}
	c.mu.Lock()
	s.running = false
	c.mu.Unlock()
	return nil
}

// removeFiles removes BaseDir if Start created it, else only what Start put in it.
func (c *Cluster) removeFiles() error {
	var errs []error
	if c.SocketDir != "" {
		errs = append(errs, os.RemoveAll(c.SocketDir))
	}
	if c.removeBase {
		errs = append(errs, os.RemoveAll(c.BaseDir))
	} else {
		for _, p := range c.created {
			errs = append(errs, os.RemoveAll(p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster: remove %s: %w", c.BaseDir, err)
	}
	return nil
}

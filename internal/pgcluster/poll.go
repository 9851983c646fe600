package pgcluster

import (
	"context"
	"fmt"
	"time"
)

// pollInterval is short: every wait here is for a local server to get somewhere.
const pollInterval = 20 * time.Millisecond

// poll calls check until it reports done, returns an error, ctx ends, or
// (if ctx has no deadline) a minute passes. A check error is remembered, not
// fatal: while a server starts, "connection refused" is expected; the last one
// explains a timeout.
func poll(ctx context.Context, what string, check func(ctx context.Context) (bool, error)) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		done, err := check(attempt)
		cancel()
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("wait to %s: %w (last: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("wait to %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

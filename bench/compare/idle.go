package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/bench/internal/proc"
)

// settlePoll is how often the RSS of idle clients is read while it falls.
const settlePoll = 5 * time.Second

// idle measures the RSS per idle client of a fresh process of t's router:
// its RSS once started, then -idle clients log in and each runs SELECT 1,
// then its RSS once it has stopped falling. The difference divided by the
// clients is the figure. detail says what was read, for the notes.
func (b *bench) idle(ctx context.Context, t *target) (s sample, detail string, err error) {
	p, err := t.fresh(ctx)
	if err != nil {
		return sample{}, "", err
	}
	defer p.stop()
	// Let it finish starting (health checks, its first server connections).
	if err := sleep(ctx, 2*time.Second); err != nil {
		return sample{}, "", err
	}
	before, err := proc.RSS(p.pid())
	if err != nil {
		return sample{}, "", err
	}
	conns, err := b.openIdle(ctx, p.port, t.database, *idleClients)
	defer func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	}()
	if err != nil {
		if e := p.exited(); e != nil {
			err = fmt.Errorf("%w\n%v", err, e)
		}
		return sample{}, "", fmt.Errorf("%s: %w", t.name, err)
	}
	// The Go runtime collects the logins' garbage at its next GC, which an
	// idle process runs only when two minutes have passed since the last.
	var least time.Duration
	if t.kind == pgswitch {
		least = *idleGC
	}
	steady, summary, err := settle(ctx, p.pid(), least, max(*idleSettle, least))
	if err != nil {
		return sample{}, "", fmt.Errorf("%s: %w", t.name, err)
	}
	s = sample{idleKiB: float64(steady-before) / float64(len(conns))}
	detail = fmt.Sprintf("%s: RSS %s before %d clients; %s", t.name, mib(before), len(conns), summary)
	return s, detail, nil
}

// openIdle logs n clients in to the router on port, a few at a time, and
// runs SELECT 1 on each. It returns the clients it opened, also on error.
func (b *bench) openIdle(ctx context.Context, port int, database string, n int) ([]*pgconn.PgConn, error) {
	config, err := pgconn.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable connect_timeout=30",
		port, b.cl.User, b.cl.Password, database))
	if err != nil {
		return nil, err
	}
	conns := make([]*pgconn.PgConn, n)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				c, err := pgconn.ConnectConfig(ctx, config.Copy())
				if err == nil {
					conns[i] = c
					_, err = c.Exec(ctx, "SELECT 1").ReadAll()
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("idle client %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		})
	}
feed:
	for i := range n {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	opened := conns[:0]
	for _, c := range conns {
		if c != nil {
			opened = append(opened, c)
		}
	}
	if first == nil {
		first = ctx.Err()
	}
	return opened, first
}

// settle reads pid's RSS every settlePoll until at least least has passed
// and it has not fallen for the last three readings, or until limit has
// passed. It returns the lowest reading and a summary of the readings.
func settle(ctx context.Context, pid int, least, limit time.Duration) (int64, string, error) {
	began := time.Now()
	first, err := proc.RSS(pid)
	if err != nil {
		return 0, "", err
	}
	low, last, still := first, first, 0
	for (still < 3 || time.Since(began) < least) && time.Since(began) < limit {
		if err := sleep(ctx, settlePoll); err != nil {
			return 0, "", err
		}
		if last, err = proc.RSS(pid); err != nil {
			return 0, "", err
		}
		// Falling by less than 0.2 % is standing still.
		if last < low-low/500 {
			still = 0
		} else {
			still++
		}
		low = min(low, last)
	}
	summary := fmt.Sprintf("%s right after the logins, %s after %v, lowest %s", mib(first), mib(last),
		time.Since(began).Round(time.Second), mib(low))
	if still < 3 {
		summary += fmt.Sprintf(", still falling when -idle-settle (%v) ran out", limit)
	}
	return low, summary, nil
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

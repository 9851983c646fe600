package backend

import (
	"context"
	"sync"
	"time"

	"github.com/pgswitch/pgswitch/health/checkstate"
)

// Prober checks one server once; nil means healthy. ctx carries the
// check's timeout.
type Prober func(ctx context.Context) error

// Run checks every checked server on its own timer until ctx ends, then
// waits for the check loops. The first check of each server runs at once.
func (p *Pool) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range p.servers {
		if s.probe == nil {
			continue
		}
		wg.Go(func() { p.loop(ctx, s) })
	}
	wg.Wait()
}

func (p *Pool) loop(ctx context.Context, s *Server) {
	var wait <-chan time.Time
	for {
		if wait != nil {
			select {
			case <-ctx.Done():
				return
			case <-wait:
			}
		}
		cctx, cancel := context.WithTimeout(ctx, s.checkTimeout)
		err := s.probe(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		wait = p.clock.After(p.record(s, err))
	}
}

// record applies one check result to s and returns the wait before its
// next check.
func (p *Pool) record(s *Server, err error) time.Duration {
	p.mu.Lock()
	s.checks++
	if err != nil {
		s.failures++
		s.lastErr = err.Error()
	}
	change := s.check.Observe(err == nil)
	if change != checkstate.Unchanged {
		s.since = p.clock.Now()
		p.dispatchLocked()
	}
	fails, oks := s.check.FailStreak(), s.check.OKStreak()
	wait := s.check.Interval()
	p.mu.Unlock()

	switch change {
	case checkstate.WentDown:
		p.log.Warn("server marked down", "listen", p.Name, "server", s.Name, "addr", s.Addr,
			"failed_checks", fails, "reason", err.Error())
	case checkstate.WentUp:
		p.log.Info("server marked up", "listen", p.Name, "server", s.Name, "addr", s.Addr, "successful_checks", oks)
	}
	return wait
}

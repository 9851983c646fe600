package pool

import (
	"context"
	"time"
)

// Janitor closes connections idle for too long or past their lifetime and
// opens connections up to each pool's MinIdle, once per tick, until ctx ends.
func (s *Set) Janitor(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range s.Pools() {
			p.tidy(ctx)
		}
	}
}

// tidy runs one janitor round on the pool.
func (p *Pool) tidy(ctx context.Context) {
	now := monotime()
	var expired []*Conn
	p.mu.Lock()
	keep := p.idle[:0]
	idleCount := len(p.idle)
	for _, c := range p.idle {
		tooOld := p.settings.Lifetime > 0 && time.Duration(now-c.born) > p.settings.Lifetime
		tooIdle := p.settings.IdleTimeout > 0 && time.Duration(now-c.idleSince) > p.settings.IdleTimeout && idleCount > p.settings.MinIdle
		if tooOld || tooIdle || p.total > p.settings.Size {
			c.inIdle = false
			expired = append(expired, c)
			idleCount--
			continue
		}
		keep = append(keep, c)
	}
	for i := len(keep); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = keep
	p.changedLocked()
	need := 0
	if !p.closed && !p.paused && len(p.waiters) == 0 {
		need = min(p.settings.MinIdle-len(p.idle), p.settings.Size-p.total)
	}
	p.mu.Unlock()
	for _, c := range expired {
		c.Close()
	}
	for range max(need, 0) {
		p.mu.Lock()
		if !p.limit.take() {
			p.mu.Unlock()
			return
		}
		p.total++
		p.mu.Unlock()
		c, err := p.connect(ctx)
		if err != nil {
			p.dialFailed()
			return
		}
		p.connected(c)
		p.release(c, false)
	}
}

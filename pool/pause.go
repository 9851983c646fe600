package pool

// Pause stops the pool from opening or handing out connections, as the
// admin console's PAUSE does: idle connections close now and busy ones when
// their client releases them; Acquire waits in line until Resume (or its own
// timeout), so held clients see a delay, not an error.
func (p *Pool) Pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	p.CloseIdle()
}

// Resume lets the pool open connections again and serves its waiters.
func (p *Pool) Resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	p.serveWaiters()
}

// Paused reports whether the pool is paused.
func (p *Pool) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Open is the number of connections open or being dialed; a paused pool
// is drained when it reaches 0.
func (p *Pool) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// Reconnect closes the idle connections now and marks the busy ones to be
// closed when released, so that every later unit of work gets a new
// connection (the admin console's RECONNECT).
func (p *Pool) Reconnect() {
	p.mu.Lock()
	for c := range p.conns {
		if c.inIdle {
			continue
		}
		if p.stale == nil {
			p.stale = map[*Conn]struct{}{}
		}
		p.stale[c] = struct{}{}
	}
	p.mu.Unlock()
	p.CloseIdle()
}

// Reconnecting is the number of connections RECONNECT marked that are still open.
func (p *Pool) Reconnecting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.stale)
}

// isStale reports whether RECONNECT marked c; p.mu is held.
func (p *Pool) isStale(c *Conn) bool {
	_, ok := p.stale[c]
	return ok
}

// PauseDatabase pauses every pool of database db, and the pools of db
// created until ResumeDatabase.
func (s *Set) PauseDatabase(db string) {
	for _, p := range s.markPaused(db, true) {
		p.Pause()
	}
}

// ResumeDatabase resumes the pools of db.
func (s *Set) ResumeDatabase(db string) {
	for _, p := range s.markPaused(db, false) {
		p.Resume()
	}
}

func (s *Set) markPaused(db string, paused bool) []*Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused == nil {
		s.paused = map[string]bool{}
	}
	if paused {
		s.paused[db] = true
	} else {
		delete(s.paused, db)
	}
	var out []*Pool
	for k, p := range s.pools {
		if k.Database == db {
			out = append(out, p)
		}
	}
	return out
}

// DatabasePaused reports whether db is paused.
func (s *Set) DatabasePaused(db string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused[db]
}

// DatabasePools returns the pools of db.
func (s *Set) DatabasePools(db string) []*Pool {
	var out []*Pool
	for _, p := range s.Pools() {
		if p.key.Database == db {
			out = append(out, p)
		}
	}
	return out
}

package pool

import (
	"log/slog"
	"sync"

	"github.com/pgswitch/pgswitch/wire"
)

// serverLimit enforces a server's maxconn across every pool that uses it.
type serverLimit struct {
	max int // 0: unlimited

	mu    sync.Mutex
	open  int
	pools []*Pool // to wake when a connection to the server closes
}

func (l *serverLimit) take() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.open >= l.max {
		return false
	}
	l.open++
	return true
}

func (l *serverLimit) give() {
	l.mu.Lock()
	l.open--
	pools := l.pools
	l.mu.Unlock()
	for _, p := range pools {
		p.serveWaiters()
	}
}

// Set is every pool of a pgswitch process, keyed by (database, user, server),
// with the per-server connection limits they share.
type Set struct {
	log *slog.Logger
	// changed is given to every pool the set makes (see Pool.changed);
	// tests set it before the first Get.
	changed chan struct{}

	mu      sync.Mutex
	pools   map[Key]*Pool
	servers map[string]*serverLimit
	paused  map[string]bool // databases whose new pools start paused (pause.go)
}

// NewSet returns an empty set whose pools log to log (nil: slog.Default()).
func NewSet(log *slog.Logger) *Set {
	if log == nil {
		log = slog.Default()
	}
	return &Set{log: log, pools: map[Key]*Pool{}, servers: map[string]*serverLimit{}}
}

// SetServerLimit sets the most connections to server across all pools (0: none).
func (s *Set) SetServerLimit(server string, max int) {
	s.mu.Lock()
	l := s.limitLocked(server)
	s.mu.Unlock()
	l.mu.Lock()
	l.max = max
	pools := l.pools
	l.mu.Unlock()
	for _, p := range pools {
		p.serveWaiters()
	}
}

func (s *Set) limitLocked(server string) *serverLimit {
	l := s.servers[server]
	if l == nil {
		l = &serverLimit{}
		s.servers[server] = l
	}
	return l
}

// Get returns the pool for key, creating it with target and settings.
// For an existing pool, target and settings are updated (reload).
func (s *Set) Get(key Key, target Target, settings Settings) *Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pools[key]; p != nil {
		p.mu.Lock()
		changed := p.settings != settings
		p.settings = settings
		p.target = target
		p.mu.Unlock()
		if changed {
			go p.serveWaiters()
		}
		return p
	}
	l := s.limitLocked(key.Server)
	p := &Pool{key: key, target: target, limit: l, log: s.log, changed: s.changed,
		settings: settings, paused: s.paused[key.Database]}
	l.mu.Lock()
	l.pools = append(l.pools, p)
	l.mu.Unlock()
	s.pools[key] = p
	return p
}

// Lookup returns the pool for key, or nil.
func (s *Set) Lookup(key Key) *Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pools[key]
}

// Pools returns every pool.
func (s *Set) Pools() []*Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Pool, 0, len(s.pools))
	for _, p := range s.pools {
		out = append(out, p)
	}
	return out
}

// Remove closes and forgets the pool of key.
func (s *Set) Remove(key Key) {
	s.mu.Lock()
	p := s.pools[key]
	delete(s.pools, key)
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.Close()
	l := p.limit
	l.mu.Lock()
	for i, x := range l.pools {
		if x == p {
			l.pools = append(l.pools[:i], l.pools[i+1:]...)
			break
		}
	}
	l.mu.Unlock()
}

// CloseServer closes the idle connections of every pool of server.
func (s *Set) CloseServer(server string) {
	for _, p := range s.Pools() {
		if p.key.Server == server {
			p.CloseIdle()
		}
	}
}

// DisconnectServer closes every connection to server, busy ones included
// (a server marked down: in-flight work fails fast instead of hanging).
// Their clients are told reason.
func (s *Set) DisconnectServer(server, reason string) {
	for _, p := range s.Pools() {
		if p.key.Server == server {
			p.CloseAll(wire.Fatalf(wire.CodeConnectionFailure, "server connection to %s closed by pgswitch: %s", server, reason))
		}
	}
}

// Close closes every pool.
func (s *Set) Close() {
	for _, p := range s.Pools() {
		p.Close()
	}
}

package router

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/health"
	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/rules"
	"github.com/pgswitch/pgswitch/wire"
)

// state is everything derived from one configuration; sessions load it once
// at login and keep it.
type state struct {
	cfg     *config.Config
	tls     *tls.Config            // nil: refuse SSLRequest with 'N'
	secrets map[string]wire.Secret // by user name
	rules   *rules.Set             // routing.rules, compiled
}

// Router accepts clients and runs their sessions.
type Router struct {
	state    atomic.Pointer[state]
	dbs      atomic.Pointer[map[string]*dbState]
	counters atomic.Pointer[map[string]*ServerCounters]
	topo     atomic.Pointer[health.Snapshot]
	topoMu   sync.Mutex
	topoCh   chan struct{} // closed by SetTopology; guarded by topoMu
	pools    *pool.Set
	checker  *health.Checker // set once in New
	replay   *health.Replay  // replicas' replay positions, for read-your-writes
	log      *slog.Logger
	admin    adminState // the admin console's hook and state (admin.go)

	lookups *userLookup // auth_query's cache (authquery.go)
	keysMu  sync.Mutex
	keys    map[passThroughKey]*wire.PassThrough // for users known only by a verifier

	ctx  context.Context // ends every session's waits on Close
	stop context.CancelFunc
	wg   sync.WaitGroup // one per session and per Serve

	parker  *parker      // idle clients without goroutines
	startup startupSlots // connections not past their startup packet (pool.max_startup_conn)
	sets    sharedSets   // clients' startup settings, one map per distinct set

	mu       sync.Mutex
	sessions map[wire.CancelKey]*Session // by the cancel key pgswitch gave out
	clients  int
	closed   bool
	lns      []net.Listener
	// cancelRelay receives cancel requests for keys no session here has
	// (SetCancelRelay); nil: they are ignored.
	cancelRelay func(wire.CancelKey)
}

// New returns a router for cfg. It does not listen yet.
func New(cfg *config.Config, log *slog.Logger) (*Router, error) {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{pools: pool.NewSet(log), log: log, ctx: ctx, stop: cancel, sessions: map[wire.CancelKey]*Session{}}
	r.admin.started = time.Now()
	r.lookups = newUserLookup(r.runAuthQuery)
	r.keys = map[passThroughKey]*wire.PassThrough{}
	r.admin.conns = map[net.Conn]struct{}{}
	r.admin.letGo = make(chan struct{})
	if err := r.Apply(cfg); err != nil {
		cancel()
		return nil, err
	}
	r.checker = health.NewChecker(cfg, health.Hooks{
		Publish: r.SetTopology,
		// on-marked-down shutdown-sessions: work in flight on a server that
		// is down or excluded fails now instead of hanging.
		Unusable: func(addr, reason string) { r.pools.DisconnectServer(addr, reason) },
	}, log)
	r.replay = health.NewReplay(ctx, r.checker.PollReplay)
	r.parker = newParker(r)
	r.wg.Add(4)
	go func() {
		defer r.wg.Done()
		r.parker.run()
	}()
	go func() {
		defer r.wg.Done()
		r.checker.Run(ctx)
		r.replay.Close()
		r.checker.ClosePolls()
	}()
	go func() {
		defer r.wg.Done()
		r.pools.Janitor(ctx, time.Second)
	}()
	go func() {
		defer r.wg.Done()
		r.refreshVolatileLoop()
	}()
	return r, nil
}

// Apply makes cfg the configuration for new sessions and updates the limits
// of existing pools.
func (r *Router) Apply(cfg *config.Config) error {
	st := &state{cfg: cfg, secrets: map[string]wire.Secret{}, rules: rules.Compile(cfg.Routing.Rules)}
	if cfg.TLS != nil && cfg.ClientTLSMode != "disable" {
		tc, err := clientTLSConfig(cfg.TLS)
		if err != nil {
			return err
		}
		st.tls = tc
	}
	for name, u := range cfg.Users {
		if u.Password == "" {
			continue
		}
		s, err := wire.ParseSecret(u.Password, name)
		if err != nil {
			return fmt.Errorf("users.%s.password: %w", name, err)
		}
		st.secrets[name] = s
	}
	for _, db := range cfg.Databases {
		for _, srv := range db.Servers {
			r.pools.SetServerLimit(srv.Addr(), srv.MaxConn)
		}
	}
	r.applyDatabases(cfg)
	if r.topo.Load() == nil {
		r.topo.Store(health.Static(cfg))
	}
	if r.checker != nil {
		r.checker.Apply(cfg)
	}
	r.state.Store(st)
	return nil
}

// Pools returns the router's pools, for tests; the admin console and
// metrics read Inspect.
func (r *Router) Pools() *pool.Set { return r.pools }

// Serve accepts clients on ln until ln is closed or the router is closed.
// Accept failures that pass (out of file descriptors, a client gone before
// it was accepted) are retried after a back-off and logged at most once a
// second; any other failure ends Serve with it. While pool.max_startup_conn
// connections are still in their startup phase, Serve accepts no more: new
// ones wait in the listen backlog.
func (r *Router) Serve(ln net.Listener) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return net.ErrClosed
	}
	r.lns = append(r.lns, ln)
	r.wg.Add(1)
	r.mu.Unlock()
	defer r.wg.Done()
	a := acceptor{ln: ln, log: r.log, done: r.ctx.Done()}
	maxStartup := func() int { return r.state.Load().cfg.Pool.MaxStartupConn }
	for {
		if !r.startup.acquire(maxStartup, r.ctx.Done()) {
			return nil // closed
		}
		nc, err := a.accept()
		if err != nil {
			r.startup.release()
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			r.startup.release()
			nc.Close()
			return nil
		}
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			r.serveConn(nc) // releases the startup slot
		}()
	}
}

// shutdownGrace is how long clients have, once pgswitch closes, to read
// what they are owed and their FATAL; past it, writes to them fail.
const shutdownGrace = time.Second

// Close stops accepting, disconnects every client with 57P01 and closes
// every server connection. It waits for all sessions to end, at most
// shutdownGrace for clients that do not read.
func (r *Router) Close() {
	r.mu.Lock()
	r.closed = true
	lns := r.lns
	sessions := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		sessions = append(sessions, s)
	}
	r.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	r.stop()
	r.lookups.close()
	e := wire.Fatalf(wire.CodeAdminShutdown, "pgswitch is shutting down")
	cut := time.Now().Add(shutdownGrace)
	for _, s := range sessions {
		s.client.Cut(cut) // a client that does not read is cut off then
		s.kick(e)         // each tells its client itself, all at once
	}
	r.pools.Close()
	r.wg.Wait()
}

// passThroughKey is a user and the verifier pgswitch knows for it: what
// one client proves fits the servers that hold the same verifier only,
// and two databases' servers may hold different ones for one name.
type passThroughKey struct{ user, verifier string }

// passThrough returns what logs in to servers as u when pgswitch knows only
// u's verifier: what u's clients proved against that verifier.
func (r *Router) passThrough(u *config.User) *wire.PassThrough {
	k := passThroughKey{u.Name, u.Password}
	r.keysMu.Lock()
	defer r.keysMu.Unlock()
	pt := r.keys[k]
	if pt == nil {
		pt = &wire.PassThrough{}
		r.keys[k] = pt
	}
	return pt
}

// register gives s a cancel key no other session has.
func (r *Router) register(s *Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	peer := r.state.Load().cfg.PeerID
	for {
		k := wire.NewPeerCancelKey(peer)
		if _, dup := r.sessions[k]; !dup {
			s.key = k
			r.sessions[k] = s
			return true
		}
	}
}

// unregister forgets s, which has ended (or failed its login).
func (r *Router) unregister(s *Session) {
	r.mu.Lock()
	delete(r.sessions, s.key)
	r.mu.Unlock()
	close(s.done)
}

// cancel relays a client's CancelRequest to the server connection its
// session is using right now, if any; a session still waiting for one
// stops waiting with 57014. A key another peer gave out is forwarded to it
// (peers.go); other unknown keys go to the cancel relay of an upgrade, if
// any, else are ignored, as PostgreSQL does, so that keys cannot be
// probed. The server connection is not handed to another client until the
// server confirmed the cancel, so that it cannot land on someone else's
// query.
func (r *Router) cancel(k wire.CancelKey) {
	cfg := r.state.Load().cfg
	r.mu.Lock()
	s := r.sessions[k]
	if s == nil && cfg.PeerID != 0 {
		s = r.sessions[k.Issued()] // forwarded here by a peer
	}
	relay := r.cancelRelay
	r.mu.Unlock()
	if s == nil {
		switch {
		case cfg.PeerID != 0 && k.Peer() != cfg.PeerID:
			r.forwardCancel(cfg, k)
		case relay != nil:
			relay(k)
		}
		return
	}
	r.cancelSession(s)
}

// cancelSession cancels what s is running or waiting for.
func (r *Router) cancelSession(s *Session) {
	if s.queue.cancelWait() {
		return
	}
	c := s.server.Load()
	if c == nil || !c.BeginCancel(s.client) {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	err := c.Cancel(ctx)
	if err != nil {
		r.log.Info("cancel failed", "server", c.Addr(), "err", err)
	}
	c.EndCancel(err == nil)
}

// clientTLSConfig is the TLS offered to clients. With a CA file, clients
// are asked for a certificate, which must verify if given (PostgreSQL's
// ssl_ca_file); whether one is required is the login's to decide.
func clientTLSConfig(t *config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		tc.ClientCAs = x509.NewCertPool()
		if !tc.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: no PEM certificate in %s", t.CAFile)
		}
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

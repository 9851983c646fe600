package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgswitch/pgswitch/edge/accesslog"
	"github.com/pgswitch/pgswitch/edge/backend"
	"github.com/pgswitch/pgswitch/edge/certs"
	"github.com/pgswitch/pgswitch/edge/config"
	"github.com/pgswitch/pgswitch/edge/httpproxy"
	"github.com/pgswitch/pgswitch/edge/metrics"
	"github.com/pgswitch/pgswitch/edge/tcpproxy"
)

// Proxy is a running pgswitch-edge.
type Proxy struct {
	log     *slog.Logger
	metrics *metrics.Metrics

	// reload serializes Reload and Shutdown.
	reload  sync.Mutex
	gen     atomic.Pointer[generation]
	binds   map[string]*bind // guarded by reload
	admin   *http.Server
	adminLn net.Listener
	old     sync.WaitGroup // generations being drained
}

// generation is one configuration in force and everything made from it.
type generation struct {
	cfg     *config.Config
	logger  *accesslog.Logger
	listens map[string]*listenRun
	stop    context.CancelFunc // ends the check loops
	checks  sync.WaitGroup
}

// listenRun is one listen of a generation.
type listenRun struct {
	cfg  *config.Listen
	pool *backend.Pool
	http *httpproxy.Listen
	tcp  *tcpproxy.Listen
	tls  map[string]*tls.Config // by bindKey; nil for plain binds
}

// dispatch hands an accepted connection of bind key to the listen.
func (l *listenRun) dispatch(c net.Conn, key string) bool {
	if l.tcp != nil {
		return l.tcp.Dispatch(c)
	}
	return l.http.Dispatch(c, l.tls[key])
}

// bindKey names a listening socket across reloads: its address, or for a
// port the system chooses (":0", in tests) the listen and position too,
// since such addresses may repeat.
func bindKey(listen string, i int, addr string) string {
	if _, port, _ := net.SplitHostPort(addr); port == "0" {
		return fmt.Sprintf("%s/%s/%d", addr, listen, i)
	}
	return addr
}

// bind is one listening socket; it outlives generations while its address
// stays in the configuration.
type bind struct {
	key    string // bindKey
	ln     net.Listener
	listen atomic.Pointer[listenRun]
	done   chan struct{}
}

// Start opens every bind of cfg and starts serving.
func Start(cfg *config.Config, log *slog.Logger) (*Proxy, error) {
	if log == nil {
		log = slog.Default()
	}
	p := &Proxy{log: log, binds: map[string]*bind{}}
	p.metrics = metrics.New(p.pools)
	gen, opened, err := p.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	if cfg.Admin.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			closeBinds(opened)
			_ = gen.shutdown(context.Background())
			return nil, fmt.Errorf("admin.listen: %w", err)
		}
		p.adminLn = ln
		p.admin = &http.Server{Handler: p.adminHandler(cfg.Admin.PProf), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = p.admin.Serve(ln) }()
		log.Info("admin listening", "addr", ln.Addr().String())
	}
	p.commit(gen, opened)
	return p, nil
}

// build makes a generation from cfg without touching the one in force:
// certificates read, access log opened, pools and listens made, and the
// sockets of new bind addresses opened. On error everything it made is
// closed again.
func (p *Proxy) build(cfg *config.Config, prev *generation) (_ *generation, _ map[string]*bind, err error) {
	logger, err := accesslog.Open(cfg.AccessLog.Path, cfg.AccessLog.Format)
	if err != nil {
		return nil, nil, err
	}
	gen := &generation{cfg: cfg, logger: logger, listens: map[string]*listenRun{}}
	opened := map[string]*bind{}
	defer func() {
		if err != nil {
			closeBinds(opened)
			_ = gen.shutdown(context.Background())
		}
	}()
	for _, name := range slices.Sorted(maps.Keys(cfg.Listens)) {
		lc := cfg.Listens[name]
		var prevPool *backend.Pool
		if prev != nil && prev.listens[name] != nil {
			prevPool = prev.listens[name].pool
		}
		pool, err := backend.NewPool(lc, backend.Options{Log: p.log, NewProber: backend.NewProber, Previous: prevPool})
		if err != nil {
			return nil, nil, err
		}
		lr := &listenRun{cfg: lc, pool: pool, tls: map[string]*tls.Config{}}
		gen.listens[name] = lr
		for i, b := range lc.Binds {
			if b.TLS == nil {
				continue
			}
			store, err := certs.LoadDir(b.TLS.CertDir, b.TLS.DefaultCert)
			if err != nil {
				return nil, nil, fmt.Errorf("listens.%s.binds[%d].tls: %w", name, i, err)
			}
			minVersion := uint16(tls.VersionTLS12)
			if b.TLS.MinVersion == "1.3" {
				minVersion = tls.VersionTLS13
			}
			lr.tls[bindKey(name, i, b.Addr)] = &tls.Config{GetCertificate: store.GetCertificate, NextProtos: b.TLS.ALPN,
				MinVersion: minVersion, SessionTicketsDisabled: b.TLS.SessionTickets != nil && !*b.TLS.SessionTickets}
		}
		if lc.Mode == config.ModeTCP {
			lr.tcp = tcpproxy.New(lc, pool, p.log, p.metrics)
		} else {
			lr.http, err = httpproxy.New(lc, pool, httpproxy.Options{Log: p.log, AccessLog: logger,
				DontLogNull: cfg.AccessLog.DontLogNullOn(), Metrics: p.metrics})
			if err != nil {
				return nil, nil, err
			}
		}
		for i, b := range lc.Binds {
			key := bindKey(name, i, b.Addr)
			if p.binds[key] != nil {
				continue
			}
			ln, err := net.Listen("tcp", b.Addr)
			if err != nil {
				return nil, nil, fmt.Errorf("listens.%s.binds[%d]: %w", name, i, err)
			}
			opened[key] = &bind{key: key, ln: ln, done: make(chan struct{})}
		}
	}
	return gen, opened, nil
}

// commit puts gen in force: every bind points at its new listen, new binds
// start accepting, removed ones close, checks start, and the previous
// generation drains in the background.
func (p *Proxy) commit(gen *generation, opened map[string]*bind) {
	prev := p.gen.Swap(gen)
	ctx, stop := context.WithCancel(context.Background())
	gen.stop = stop
	for _, lr := range gen.listens {
		gen.checks.Go(func() { lr.pool.Run(ctx) })
	}
	maps.Copy(p.binds, opened)
	keep := map[string]bool{}
	for _, lr := range gen.listens {
		for i, b := range lr.cfg.Binds {
			key := bindKey(lr.cfg.Name, i, b.Addr)
			keep[key] = true
			p.binds[key].listen.Store(lr)
		}
	}
	for addr, b := range p.binds {
		if !keep[addr] {
			b.ln.Close()
			<-b.done
			delete(p.binds, addr)
			p.log.Info("bind closed", "addr", b.ln.Addr().String())
		}
	}
	for _, b := range opened {
		lr := b.listen.Load()
		p.log.Info("bind listening", "listen", lr.cfg.Name, "addr", b.ln.Addr().String(), "tls", lr.tls[b.key] != nil)
		go p.accept(b)
	}
	if prev != nil {
		p.old.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), prev.cfg.ShutdownTimeout)
			defer cancel()
			prev.shutdown(ctx)
		})
	}
}

// accept hands each connection to the bind's current listen. If that
// listen is being replaced at that very moment, the newer one takes it.
func (p *Proxy) accept(b *bind) {
	defer close(b.done)
	var backoff time.Duration
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Error("accept failed", "addr", b.ln.Addr().String(), "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		taken := false
		for range 3 {
			if b.listen.Load().dispatch(c, b.key) {
				taken = true
				break
			}
		}
		if !taken {
			c.Close()
		}
	}
}

// Reload puts cfg in force, or changes nothing and returns why not.
func (p *Proxy) Reload(cfg *config.Config) error {
	p.reload.Lock()
	defer p.reload.Unlock()
	cur := p.gen.Load()
	if cur == nil {
		return errors.New("reload: shutting down")
	}
	if cfg.Admin.Listen != cur.cfg.Admin.Listen {
		p.log.Warn("admin.listen changed: takes effect at the next start", "running", cur.cfg.Admin.Listen, "configured", cfg.Admin.Listen)
	}
	gen, opened, err := p.build(cfg, cur)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	p.commit(gen, opened)
	return nil
}

// Shutdown stops accepting, lets requests and TCP sessions in flight end
// until ctx ends, then closes them.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.reload.Lock()
	defer p.reload.Unlock()
	for addr, b := range p.binds {
		b.ln.Close()
		<-b.done
		delete(p.binds, addr)
	}
	var err error
	if gen := p.gen.Swap(nil); gen != nil {
		err = gen.shutdown(ctx)
	}
	p.old.Wait()
	if p.admin != nil {
		p.admin.Close()
	}
	return err
}

// shutdown drains the generation's listens, stops its checks and closes
// its access log.
func (g *generation) shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(g.listens))
	for _, lr := range g.listens {
		wg.Go(func() {
			switch {
			case lr.http != nil:
				errs <- lr.http.Shutdown(ctx)
			case lr.tcp != nil:
				errs <- lr.tcp.Shutdown(ctx)
			}
		})
	}
	wg.Wait()
	close(errs)
	g.close()
	for _, lr := range g.listens {
		lr.closeIdle()
	}
	var err error
	for e := range errs {
		if e != nil {
			err = e
		}
	}
	return err
}

// close stops checks and closes the access log (after the listens are done).
func (g *generation) close() {
	if g.stop != nil {
		g.stop()
	}
	g.checks.Wait()
	_ = g.logger.Close()
}

func closeBinds(bs map[string]*bind) {
	for _, b := range bs {
		b.ln.Close()
	}
}

// pools returns the pools in force, for metrics and status.
func (p *Proxy) pools() []*backend.Pool {
	gen := p.gen.Load()
	if gen == nil {
		return nil
	}
	out := make([]*backend.Pool, 0, len(gen.listens))
	for _, name := range slices.Sorted(maps.Keys(gen.listens)) {
		out = append(out, gen.listens[name].pool)
	}
	return out
}

// Addrs returns the address each listen's binds listen on (ports chosen by
// the system resolved), by listen name.
func (p *Proxy) Addrs() map[string][]string {
	p.reload.Lock()
	defer p.reload.Unlock()
	out := map[string][]string{}
	gen := p.gen.Load()
	if gen == nil {
		return out
	}
	for name, lr := range gen.listens {
		for i, b := range lr.cfg.Binds {
			if bd := p.binds[bindKey(name, i, b.Addr)]; bd != nil {
				out[name] = append(out[name], bd.ln.Addr().String())
			}
		}
	}
	return out
}

// AdminAddr is the admin endpoint's address, or "" when there is none.
func (p *Proxy) AdminAddr() string {
	if p.adminLn == nil {
		return ""
	}
	return p.adminLn.Addr().String()
}

// closeIdle closes the listen's idle server connections.
func (l *listenRun) closeIdle() {
	if l.http != nil {
		l.http.CloseIdle()
	}
}

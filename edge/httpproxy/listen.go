package httpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgswitch/pgswitch/edge/accesslog"
	"github.com/pgswitch/pgswitch/edge/backend"
	"github.com/pgswitch/pgswitch/edge/config"
	"github.com/pgswitch/pgswitch/edge/metrics"
)

// Listen is one http listen of one configuration: every connection handed
// to it is served with that configuration until it closes, even after a
// reload has handed new connections to a newer Listen.
type Listen struct {
	cfg         *config.Listen
	pool        *backend.Pool
	log         *slog.Logger
	logger      *accesslog.Logger
	dontLogNull bool
	targets     []*target // by backend.Server.Index
	m           *metrics.Listen

	codesNoServer  *metrics.Codes
	refusedTimeout prometheus.Counter
	refusedNoSrv   prometheus.Counter
	refusedQueue   prometheus.Counter
	refusedHeaders prometheus.Counter

	srv *http.Server
	ln  *chanListener

	// closing is set by Shutdown: lean connections close after the
	// answer in flight.
	closing atomic.Bool

	mu    sync.Mutex
	conns map[*clientConn]struct{} // handed to net/http
	h1    map[*h1Conn]struct{}     // served by the lean loop
	h2    map[*h2Conn]struct{}     // served by the lean HTTP/2 loop
}

// Options are what a Listen shares with the rest of the process.
type Options struct {
	Log         *slog.Logger
	AccessLog   *accesslog.Logger
	DontLogNull bool
	Metrics     *metrics.Metrics
}

// New makes the Listen of l, choosing servers from pool, and starts serving
// the connections Dispatch hands it.
func New(l *config.Listen, pool *backend.Pool, opt Options) (*Listen, error) {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	m := opt.Metrics.ForListen(l.Name)
	h := &Listen{cfg: l, pool: pool, log: opt.Log.With("listen", l.Name), logger: opt.AccessLog,
		dontLogNull: opt.DontLogNull, m: m, conns: map[*clientConn]struct{}{}, h1: map[*h1Conn]struct{}{}, h2: map[*h2Conn]struct{}{},
		codesNoServer: m.Codes(metrics.NoServer), refusedTimeout: m.Refused("http_request_timeout"),
		refusedNoSrv: m.Refused("no_server"), refusedQueue: m.Refused("queue_timeout"),
		refusedHeaders: m.Refused("too_many_headers")}
	for _, s := range l.Servers {
		t, err := newTarget(h, s, m)
		if err != nil {
			return nil, fmt.Errorf("listen %s server %s: %w", l.Name, s.Name, err)
		}
		h.targets = append(h.targets, t)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	h.srv = &http.Server{
		Handler:        h,
		MaxHeaderBytes: l.Limits.MaxHeaderBytes,
		// Only HTTP/2 connections use these; clientConn times HTTP/1.x.
		IdleTimeout:       l.Timeouts.HTTPKeepAlive,
		ReadHeaderTimeout: l.Timeouts.HTTPRequest,
		Protocols:         &protocols,
		ConnState:         connState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cc, ok := c.(*clientConn); ok {
				return context.WithValue(ctx, connKey{}, cc)
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(opt.Log.Handler(), slog.LevelDebug),
	}
	h.ln = newChanListener()
	go func() { _ = h.srv.Serve(h.ln) }()
	return h, nil
}

type connKey struct{}

func connOf(r *http.Request) *clientConn {
	cc, _ := r.Context().Value(connKey{}).(*clientConn)
	return cc
}

func connState(c net.Conn, s http.ConnState) {
	cc, ok := c.(*clientConn)
	if !ok {
		return
	}
	switch s {
	case http.StateActive:
		cc.beginRequest()
	case http.StateIdle:
		cc.idle()
	}
}

// trackH1 adds a lean connection to the listen's, or removes it; adding
// fails once the listen is shutting down.
func (l *Listen) trackH1(h *h1Conn, add bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if add {
		if l.closing.Load() {
			return false
		}
		l.h1[h] = struct{}{}
	} else {
		delete(l.h1, h)
	}
	return true
}

// trackH2 is trackH1's for lean HTTP/2 connections.
func (l *Listen) trackH2(h *h2Conn, add bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if add {
		if l.closing.Load() {
			return false
		}
		l.h2[h] = struct{}{}
	} else {
		delete(l.h2, h)
	}
	return true
}

func (l *Listen) track(c *clientConn, add bool) {
	l.mu.Lock()
	if add {
		l.conns[c] = struct{}{}
	} else {
		delete(l.conns, c)
	}
	l.mu.Unlock()
}

// Dispatch serves an accepted connection, over TLS with tlsConf unless it
// is nil. It reports false when the Listen is shutting down and did not
// take the connection.
func (l *Listen) Dispatch(c net.Conn, tlsConf *tls.Config) bool {
	if tlsConf != nil {
		if l.ln.isClosed() {
			return false
		}
		go l.handshake(c, tlsConf, time.Now())
		return true
	}
	return l.serveH1(c, false, time.Now())
}

// handshake runs the TLS handshake (within http_request, as it comes
// before the first request) and hands the connection to the HTTP server:
// as is when the client chose h2, so that net/http serves HTTP/2 on it,
// else wrapped for the HTTP/1.x timeouts.
func (l *Listen) handshake(raw net.Conn, conf *tls.Config, accepted time.Time) {
	tc := tls.Server(raw, conf)
	_ = raw.SetDeadline(accepted.Add(l.cfg.Timeouts.HTTPRequest))
	if err := tc.Handshake(); err != nil {
		l.m.HandshakeFailed.Inc()
		l.log.Debug("TLS handshake failed", "client", raw.RemoteAddr().String(), "err", err)
		raw.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	state := tc.ConnectionState()
	if state.DidResume {
		l.m.HandshakeResumed.Inc()
	} else {
		l.m.HandshakeFull.Inc()
	}
	if state.NegotiatedProtocol == "h2" && l.cfg.LeanHTTP2On() {
		if !l.serveH2(tc, accepted) {
			tc.Close()
		}
		return
	}
	if state.NegotiatedProtocol != "h2" {
		if !l.serveH1(tc, true, accepted) {
			tc.Close()
		}
		return
	}
	if !l.ln.push(tc) {
		tc.Close()
	}
}

// Shutdown stops taking connections, lets requests in flight finish until
// ctx ends, then closes every connection left (WebSocket tunnels too).
func (l *Listen) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	l.closing.Store(true)
	lean := make([]*h1Conn, 0, len(l.h1))
	for h := range l.h1 {
		lean = append(lean, h)
	}
	h2s := make([]*h2Conn, 0, len(l.h2))
	for h := range l.h2 {
		h2s = append(h2s, h)
	}
	l.mu.Unlock()
	// Idle lean connections close now; busy ones after their answer.
	for _, h := range lean {
		h.closeIdle()
	}
	// HTTP/2 ones send GOAWAY, and close once their streams finish.
	for _, h := range h2s {
		h.wake()
	}
	err := l.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		l.srv.Close()
	}
	// Hijacked connections are not the server's any more: wait for them
	// too, then close what is left.
	for {
		l.mu.Lock()
		n := len(l.conns) + len(l.h1) + len(l.h2)
		l.mu.Unlock()
		if n == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	l.mu.Lock()
	left := make([]*clientConn, 0, len(l.conns))
	for c := range l.conns {
		left = append(left, c)
	}
	lean = lean[:0]
	for h := range l.h1 {
		lean = append(lean, h)
	}
	h2s = h2s[:0]
	for h := range l.h2 {
		h2s = append(h2s, h)
	}
	l.mu.Unlock()
	for _, h := range h2s {
		h.close()
	}
	for _, c := range left {
		c.Close()
	}
	for _, h := range lean {
		h.close()
	}
	if err == nil && len(lean)+len(h2s) > 0 {
		err = ctx.Err()
	}
	for _, t := range l.targets {
		t.transport.CloseIdleConnections()
	}
	return err
}

// chanListener is the net.Listener net/http serves: it yields the
// connections Dispatch pushes, so that one listening socket can feed one
// Listen after another across reloads.
type chanListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return dispatchAddr{} }

type dispatchAddr struct{}

func (dispatchAddr) Network() string { return "dispatch" }
func (dispatchAddr) String() string  { return "dispatch" }

// CloseIdle closes idle keep-alive connections to servers.
func (l *Listen) CloseIdle() {
	for _, t := range l.targets {
		t.transport.CloseIdleConnections()
	}
}

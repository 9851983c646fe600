package tcpproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgswitch/pgswitch/edge/backend"
	"github.com/pgswitch/pgswitch/edge/config"
	"github.com/pgswitch/pgswitch/edge/metrics"
)

// Listen is one tcp listen of one configuration.
type Listen struct {
	cfg    *config.Listen
	pool   *backend.Pool
	log    *slog.Logger
	dialer net.Dialer
	conns  []prometheus.Counter // by server index
	noSrv  prometheus.Counter
	queue  prometheus.Counter
	failed prometheus.Counter

	ctx    context.Context // ends when shutdown gives up waiting
	cancel context.CancelFunc

	mu       sync.Mutex
	closing  bool
	sessions map[*session]struct{}
	wg       sync.WaitGroup
}

// New makes the Listen of l, choosing servers from pool.
func New(l *config.Listen, pool *backend.Pool, log *slog.Logger, m *metrics.Metrics) *Listen {
	if log == nil {
		log = slog.Default()
	}
	lm := m.ForListen(l.Name)
	t := &Listen{cfg: l, pool: pool, log: log.With("listen", l.Name), dialer: net.Dialer{Timeout: l.Timeouts.Connect},
		noSrv: lm.Refused("no_server"), queue: lm.Refused("queue_timeout"), failed: lm.Refused("connect_failed"),
		sessions: map[*session]struct{}{}}
	for _, s := range l.Servers {
		t.conns = append(t.conns, lm.TCPConn(s.Name))
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t
}

// Dispatch forwards an accepted connection. It reports false when the
// Listen is shutting down and did not take it.
func (l *Listen) Dispatch(c net.Conn) bool {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return false
	}
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		l.serve(c)
	}()
	return true
}

// session is one forwarded connection.
type session struct {
	client, server net.Conn
	last           atomic.Int64 // unix nanoseconds of the last byte either way
}

func (l *Listen) serve(client net.Conn) {
	defer client.Close()
	s, err := l.pool.Acquire(l.ctx, l.cfg.Timeouts.Queue)
	if err != nil {
		switch {
		case errors.Is(err, backend.ErrNoServer):
			l.noSrv.Inc()
		case errors.Is(err, backend.ErrQueueTimeout):
			l.queue.Inc()
		}
		l.log.Warn("connection refused", "client", client.RemoteAddr().String(), "reason", err.Error())
		return
	}
	defer l.pool.Release(s)
	server, err := l.dialer.DialContext(l.ctx, "tcp", s.Addr)
	if err != nil {
		l.failed.Inc()
		l.log.Warn("server connection failed", "server", s.Name, "addr", s.Addr, "reason", err.Error())
		return
	}
	defer server.Close()
	l.conns[s.Index].Inc()
	ss := &session{client: client, server: server}
	ss.last.Store(time.Now().UnixNano())
	l.mu.Lock()
	l.sessions[ss] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.sessions, ss)
		l.mu.Unlock()
	}()

	done := make(chan struct{})
	go func() {
		ss.pipe(server, client, l.cfg.Timeouts.Client)
		close(done)
	}()
	ss.pipe(client, server, l.cfg.Timeouts.Server)
	<-done
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// pipe copies from src to dst until src ends, then half-closes dst so the
// other side sees the end too. A read waits at most idle past the
// session's last byte in either direction: a syslog client that only
// sends keeps its session although the server never answers.
func (ss *session) pipe(dst, src net.Conn, idle time.Duration) {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	for {
		_ = src.SetReadDeadline(time.Unix(0, ss.last.Load()).Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			ss.last.Store(time.Now().UnixNano())
			_ = dst.SetWriteDeadline(time.Now().Add(idle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, ss.last.Load())) < idle {
				continue // the other direction was busy
			}
			if err != io.EOF {
				// Timeout or reset: end the whole session.
				ss.client.Close()
				ss.server.Close()
				return
			}
			break
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		dst.Close()
	}
}

// Shutdown stops taking connections and waits for sessions to end until
// ctx ends, then closes them.
func (l *Listen) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
	done := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	l.cancel()
	l.mu.Lock()
	for ss := range l.sessions {
		ss.client.Close()
		ss.server.Close()
	}
	l.mu.Unlock()
	<-done
	return ctx.Err()
}

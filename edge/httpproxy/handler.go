package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"

	"github.com/pgswitch/pgswitch/edge/accesslog"
	"github.com/pgswitch/pgswitch/edge/backend"
	"github.com/pgswitch/pgswitch/edge/config"
	"github.com/pgswitch/pgswitch/edge/metrics"
)

// target is one server's reverse proxy: its own transport (so its own
// keep-alive connections and TLS settings) and counters.
type target struct {
	l         *Listen
	srv       *config.Server
	proxy     *httputil.ReverseProxy
	transport *serverTransport
	codes     *metrics.Codes
	// hostHeader replaces the client's Host (rewrite_host); "": kept.
	hostHeader string
	forward    bool // forwardfor
}

// bufferPool lends ReverseProxy its copy buffers. It keeps array pointers:
// a Put of the slice's own address (&x) allocated a slice header per
// response.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

func (b *bufferPool) Put(x []byte) {
	if cap(x) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(x[:copyBufferSize]))
	}
}

var copyBuffers = &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}

func newTarget(l *Listen, s *config.Server, m *metrics.Listen) (*target, error) {
	tlsConf, err := backend.ClientTLS(s)
	if err != nil {
		return nil, err
	}
	scheme, host := "http", s.Addr
	if tlsConf != nil {
		scheme = "https"
	}
	if s.TLS != nil {
		host = s.TLS.ServerName
	}
	idle := s.MaxConn
	if idle == 0 {
		idle = 1024
	}
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: l.cfg.Timeouts.Connect, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   l.cfg.Timeouts.Connect,
		ResponseHeaderTimeout: l.cfg.Timeouts.Server,
		MaxIdleConnsPerHost:   idle,
		IdleConnTimeout:       90 * time.Second,
		// A proxy passes Accept-Encoding through as the client sent it.
		DisableCompression: true,
		ForceAttemptHTTP2:  false,
	}
	st := &serverTransport{addr: s.Addr, tlsConf: tlsConf, dialer: net.Dialer{KeepAlive: 30 * time.Second},
		connectTimeout: l.cfg.Timeouts.Connect, responseTimeout: l.cfg.Timeouts.Server, fallback: tr}
	t := &target{l: l, srv: s, transport: st, codes: m.Codes(s.Name), forward: l.cfg.ForwardForOn()}
	forward := t.forward
	rewriteHost := l.cfg.RewriteHost
	if rewriteHost {
		t.hostHeader = host
	}
	t.proxy = &httputil.ReverseProxy{
		Transport:  st,
		BufferPool: copyBuffers,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = scheme, s.Addr
			if rewriteHost {
				pr.Out.Host = host
			}
			if forward {
				setForwarded(pr)
			}
		},
		ModifyResponse: moveHeader,
		ErrorHandler:   func(w http.ResponseWriter, r *http.Request, err error) { l.proxyError(w, r, s, err) },
	}
	return t, nil
}

// moveHeader hands the fields of the server's answer over to the answer to
// an HTTP/1.x client as they are, leaving none for ReverseProxy to copy:
// its copy canonicalized every name again and allocated a slice per field,
// 4.7% of the proxy's user-space instructions per request. The names are
// canonical already (textproto made them so, or refused the answer). An
// HTTP/2 answer (no clientConn) and a 101 are copied by ReverseProxy.
func moveHeader(res *http.Response) error {
	if res.StatusCode == http.StatusSwitchingProtocols {
		return nil
	}
	cc := connOf(res.Request)
	if cc == nil || cc.answer == nil {
		return nil
	}
	dst := cc.answer
	for k, vv := range res.Header {
		if prev, ok := dst[k]; ok {
			dst[k] = append(prev, vv...)
		} else {
			dst[k] = vv
		}
	}
	clear(res.Header)
	return nil
}

// setForwarded adds the client to X-Forwarded-For (after what the client
// sent, as HAProxy's forwardfor does) and says how it connected. One
// allocation holds the values of X-Forwarded-For and X-Forwarded-Host;
// X-Forwarded-Proto's are shared (capacity 1: an append copies them).
func setForwarded(pr *httputil.ProxyRequest) {
	in := pr.In
	ip := in.RemoteAddr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	prior := in.Header["X-Forwarded-For"]
	vals := make([]string, len(prior)+2)
	n := copy(vals, prior)
	vals[n], vals[n+1] = ip, in.Host
	h := pr.Out.Header
	h["X-Forwarded-For"] = vals[: n+1 : n+1]
	h["X-Forwarded-Host"] = vals[n+1:]
	proto := protoHTTP
	if in.TLS != nil {
		proto = protoHTTPS
	} else if cc := connOf(in); cc != nil && cc.isTLS {
		proto = protoHTTPS
	}
	h["X-Forwarded-Proto"] = proto
}

var (
	protoHTTP  = []string{"http"}[:1:1]
	protoHTTPS = []string{"https"}[:1:1]
)

// ServeHTTP answers one request: a server below its maxconn is chosen
// (waiting in the queue if need be), the request forwarded, and a line
// logged.
func (l *Listen) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	cc := connOf(r)
	if cc != nil {
		cc.beginRequest()
		cc.answer = w.Header()
		defer func() { cc.answer = nil }()
		if r.ContentLength != 0 {
			r.Body = &bodyReader{ReadCloser: r.Body, cc: cc}
		}
	}
	rec := recorderPool.Get().(*recorder)
	rec.ResponseWriter, rec.cc, rec.status, rec.bytes = w, cc, 0, 0
	codes := l.serve(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	codes.Inc(rec.status)
	l.m.Duration.Observe(time.Since(start).Seconds())
	if l.logger != nil {
		e := accesslog.Entry{Client: remoteHost(r.RemoteAddr), Time: start,
			Method: r.Method, Target: r.RequestURI, Proto: r.Proto, Status: rec.status, Bytes: rec.bytes,
			Referer: r.Referer(), UserAgent: r.UserAgent()}
		l.logger.Log(&e)
	}
	rec.ResponseWriter, rec.cc = nil, nil
	recorderPool.Put(rec)
}

func (l *Listen) serve(w *recorder, r *http.Request) *metrics.Codes {
	n := 0
	for _, v := range r.Header {
		n += len(v)
	}
	if n > l.cfg.Limits.MaxHeaders {
		l.refusedHeaders.Inc()
		writeError(w, http.StatusRequestHeaderFieldsTooLarge, "Your browser sent too many header fields.")
		return l.codesNoServer
	}
	s, err := l.pool.TryAcquire()
	if s == nil && err == nil {
		s, err = l.queue(r)
	}
	if err != nil {
		if !l.refused(err) {
			w.status = 499
			return l.codesNoServer
		}
		writeError(w, http.StatusServiceUnavailable, "No server is available to handle this request.")
		return l.codesNoServer
	}
	defer l.pool.Release(s)
	t := l.targets[s.Index]
	if r.ProtoMajor == 2 {
		if r.ContentLength == 0 && t.serveDirect(w, r) {
			return t.codes
		}
		growStack()
	}
	t.proxy.ServeHTTP(w, r)
	return t.codes
}

// queue waits for a server below its maxconn. An HTTP/1.x request without
// a body that waits there is abandoned when its client closes the
// connection (HTTP/2 requests end with their stream).
func (l *Listen) queue(r *http.Request) (*backend.Server, error) {
	ctx := r.Context()
	if cc := connOf(r); cc != nil && r.Body == http.NoBody {
		var stop func()
		ctx, stop = cc.watchGone(ctx)
		defer stop()
	}
	return l.pool.Acquire(ctx, l.cfg.Timeouts.Queue)
}

// refused counts (and for a queue timeout logs) a request no server took,
// err being what TryAcquire or the queue said; false when the client went
// away while it waited: nothing is answered then.
func (l *Listen) refused(err error) bool {
	switch {
	case errors.Is(err, backend.ErrNoServer):
		l.refusedNoSrv.Inc()
	case errors.Is(err, backend.ErrQueueTimeout):
		l.refusedQueue.Inc()
		l.log.Warn("request refused", "reason", err.Error(), "queue_timeout", l.cfg.Timeouts.Queue)
	default:
		return false
	}
	return true
}

// proxyError answers a request the server did not answer, and logs why.
func (l *Listen) proxyError(w http.ResponseWriter, r *http.Request, s *config.Server, err error) {
	var certErr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	var invalidErr x509.CertificateInvalidError
	var opErr *net.OpError
	cc := connOf(r)
	switch {
	case cc != nil && cc.bodyTimedOut():
		l.log.Info("client sent its body too slowly: 408", "client", r.RemoteAddr, "timeout", l.cfg.Timeouts.Client)
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestTimeout, "Your browser didn't send a complete request in time.")
	case cc != nil && cc.malformedBody() != nil:
		// The client's fault, not the server's: HAProxy answers 400 too.
		l.log.Info("client sent a malformed body: 400", "client", r.RemoteAddr, "reason", cc.malformedBody().Error())
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusBadRequest, "Your browser sent an invalid request.")
	case errors.Is(r.Context().Err(), context.Canceled):
		// The client left; nothing to answer.
		if rec, ok := w.(*recorder); ok {
			rec.status = 499
		}
		return
	case errors.As(err, &certErr) || errors.As(err, &hostErr) || errors.As(err, &authErr) || errors.As(err, &invalidErr):
		l.log.Warn("server certificate not verified: 502", "server", s.Name, "addr", s.Addr, "reason", err.Error())
		writeError(w, http.StatusBadGateway, "The server's certificate did not verify.")
	case errors.As(err, &opErr) && opErr.Op == "dial":
		l.log.Warn("server connection failed: 503", "server", s.Name, "addr", s.Addr, "reason", err.Error())
		writeError(w, http.StatusServiceUnavailable, "No server is available to handle this request.")
	case isTimeout(err):
		l.log.Warn("server timeout: 504", "server", s.Name, "addr", s.Addr, "reason", err.Error())
		writeError(w, http.StatusGatewayTimeout, "The server didn't respond in time.")
	default:
		l.log.Warn("bad answer from server: 502", "server", s.Name, "addr", s.Addr, "reason", err.Error())
		writeError(w, http.StatusBadGateway, "The server returned an invalid or incomplete response.")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeError sends a short HTML error page, as HAProxy does.
func writeError(w http.ResponseWriter, code int, msg string) {
	body := "<html><body><h1>" + strconv.Itoa(code) + " " + http.StatusText(code) + "</h1>\n" + msg + "\n</body></html>\n"
	h := w.Header()
	h.Set("Content-Type", "text/html")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// remoteHost is the address part of a Request.RemoteAddr ("ip:port"): a
// substring, where hostOf's net.Addr would be an allocation.
func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// recorder notes the status and body size of an answer for the log.
type recorder struct {
	http.ResponseWriter
	cc     *clientConn
	status int
	bytes  int64
}

var recorderPool = sync.Pool{New: func() any { return new(recorder) }}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 || r.status < 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and the deadlines.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Hijack is how ReverseProxy takes over an upgraded (WebSocket) connection:
// from then on the client's reads and writes are timed as a tunnel.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.status = http.StatusSwitchingProtocols
		if r.cc != nil {
			r.cc.tunnel()
		}
	}
	return c, rw, err
}

// bodyReader bounds each read of a request body by the client timeout.
type bodyReader struct {
	io.ReadCloser
	cc *clientConn
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.cc.bodyRead()
	n, err := b.ReadCloser.Read(p)
	b.cc.bodyDone()
	if err != nil {
		b.cc.bodyFailed(err)
	}
	return n, err
}

// growStack grows the stack of the goroutine net/http's HTTP/2 server
// starts for each request that goes through ReverseProxy to 16 KiB at
// once, near its bottom. Left to grow as it goes, it was copied one to
// two times per request deep inside ReverseProxy (Request.Clone is where
// 2 KiB runs out), each copy walking and adjusting a dozen frames: 40k of
// the 211k user-space instructions per HTTP/2 request (callgrind); grown
// here, about 11k. A 24 KiB frame (a 32 KiB stack, past the per-P stack
// caches) cost more than it saved. serveDirect's shallower stack does
// without: its requests cost 127.8k instructions with growStack, 118.6k
// without.
//
//go:noinline
func growStack() byte {
	var buf [12 << 10]byte
	buf[stackIndex] = 1
	return buf[stackIndex]
}

// stackIndex is 0; the compiler cannot know it, so it keeps growStack's
// frame.
var stackIndex int

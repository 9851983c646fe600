package httpproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/pgswitch/pgswitch/edge/config"
)

// forward sends the request in x to t's server over a kept-alive
// connection and passes the answer on. It returns the status and body
// size for the log and whether the client connection may serve another
// request; the answer's last bytes are left in x.out for the caller to
// write (so that the server connection goes back to the pool first).
func (h *h1Conn) forward(x *exchange, t *target, keep bool) (int, int64, bool) {
	tr := t.transport
	b := x.in[:]
	method := x.head.method.of(b)
	isHead := string(method) == "HEAD"
	// Retried on a new connection when a kept-alive one fails before any
	// answer: requests that may be repeated, whose body is all in x.in.
	x.split()
	retry := x.streamed == 0 && (isHead || string(method) == "GET" || string(method) == "OPTIONS" || string(method) == "TRACE")
	for attempt := 0; ; attempt++ {
		sc, reused, err := tr.conn(context.Background())
		if err != nil {
			return h.serverError(x, t, err, keep && x.streamed == 0)
		}
		sc.head = appendServerHead(sc.head[:0], &x.head, b, t.hostHeader, h.client, t.forward, h.isTLS)
		sc.head = append(sc.head, b[x.head.end:x.used]...) // the body read with the head
		sc.armDeadlines(tr.responseTimeout)
		if sc.rc != nil && x.streamed == 0 {
			err = sc.send(sc.head) // and wait for the answer
		} else {
			_, err = sc.Conn.Write(sc.head)
		}
		if err == nil && x.streamed > 0 {
			switch res, berr := h.sendBody(x, sc, tr); res {
			case bodyClientSlow:
				sc.Close()
				t.l.log.Info("client sent its body too slowly: 408", "client", h.client, "timeout", t.l.cfg.Timeouts.Client)
				return h.answerError(x, http408, false)
			case bodyClientGone:
				sc.Close()
				x.nout = 0
				return 499, 0, false
			case bodyServerFailed:
				// The server may have answered before reading it all:
				// its answer is passed on, then the connection closes
				// (the rest of the body is never read).
				keep = false
				err = berr
				if r := h.relay(x, sc, tr, isHead, false); r.err == nil {
					return r.status, r.bytes, false
				}
			}
		}
		if err == nil {
			r := h.relay(x, sc, tr, isHead, keep)
			if r.err == nil {
				return r.status, r.bytes, r.keep
			}
			sc.Close()
			if errors.Is(r.err, errClientGone) {
				x.nout = 0
				return 499, r.bytes, false
			}
			if r.sent {
				// Part of the answer went out: the client can only learn of
				// the failure by the connection's end.
				t.l.log.Warn("answer cut short", "server", t.srv.Name, "addr", t.srv.Addr, "reason", r.err.Error())
				x.nout = 0
				return r.status, r.bytes, false
			}
			err = r.err
		} else {
			sc.Close()
			err = noAnswerErr(err)
		}
		if reused && attempt == 0 && retry && errors.Is(err, errNoAnswer) {
			continue
		}
		return h.serverError(x, t, err, keep && x.streamed == 0)
	}
}

type bodyResult uint8

const (
	bodySent bodyResult = iota
	bodyClientSlow
	bodyClientGone
	bodyServerFailed
)

// sendBody copies the rest of the request body (x.streamed bytes) from
// the client to the server, through x.out; each read from the client is
// bounded by the client timeout, each write to the server by the server
// timeout. It never reads past the body (a pipelined request follows).
func (h *h1Conn) sendBody(x *exchange, sc *serverConn, tr *serverTransport) (bodyResult, error) {
	to := h.l.cfg.Timeouts.Client
	for remain := x.streamed; remain > 0; {
		if at, ok := h.rdl.arm(time.Now().Add(to), slackOf(to)); ok {
			_ = h.c.SetReadDeadline(at)
		}
		n, err := h.c.Read(x.out[:min(remain, int64(len(x.out)))])
		if n > 0 {
			sc.armDeadlines(tr.responseTimeout)
			if _, werr := sc.Conn.Write(x.out[:n]); werr != nil {
				return bodyServerFailed, werr
			}
			remain -= int64(n)
		}
		if err != nil && remain > 0 {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return bodyClientSlow, err
			}
			return bodyClientGone, err
		}
	}
	return bodySent, nil
}

func noAnswerErr(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return errors.Join(errNoAnswer, err)
}

// relayed is what relay did.
type relayed struct {
	status int
	bytes  int64
	keep   bool
	sent   bool // bytes of the answer reached the client
	err    error
}

type bodyMode uint8

const (
	bodyNone bodyMode = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// relay reads the server's answer on sc and passes it on: 1xx answers as
// they come, then the final one, its body framed as the server framed it.
// On success sc is back in its transport's pool or closed.
func (h *h1Conn) relay(x *exchange, sc *serverConn, tr *serverTransport, isHead, keep bool) relayed {
	br := sc.br
	a := &x.ans
	var r relayed
	var buf []byte
	for {
		first := true
		for {
			if br.Buffered() == 0 || !first {
				sc.armRead(tr.responseTimeout)
				if _, err := br.Peek(br.Buffered() + 1); err != nil {
					if br.Buffered() == 0 && !r.sent {
						err = noAnswerErr(err)
					}
					r.err = err
					return r
				}
			}
			first = false
			buf, _ = br.Peek(br.Buffered())
			done, err := parseAnswer(a, buf)
			if err != nil {
				r.err = err
				return r
			}
			if done {
				break
			}
			if br.Buffered() == br.Size() {
				r.err = errAnswerTooLarge
				return r
			}
		}
		if a.code >= 200 {
			break
		}
		if a.code == 101 {
			r.err = errors.New("101 Switching Protocols without an Upgrade request")
			return r
		}
		// An interim answer (100, 103): passed on at once.
		if !h.emitHead(x, appendClientHead(x.out[:x.nout], a, buf, false)) || h.flush(x) != nil {
			r.err = errClientGone
			return r
		}
		br.Discard(a.end)
		r.sent = true
	}
	r.status = a.code
	mode := bodyUntilClose
	switch {
	case isHead || a.code == 204 || a.code == 304:
		mode = bodyNone
	case a.chunked:
		mode = bodyChunked
	case a.length >= 0:
		mode = bodyLength
	}
	closeAfter := !keep || mode == bodyUntilClose || h.l.closing.Load()
	r.keep = !closeAfter
	if !h.emitHead(x, appendClientHead(x.out[:x.nout], a, buf, closeAfter)) {
		r.err = errClientGone
		return r
	}
	r.sent = true
	reusable := !a.close
	br.Discard(a.end)

	remain := a.length
	var cs chunkScan
	done := mode == bodyNone || mode == bodyLength && remain == 0
	for !done {
		if br.Buffered() == 0 {
			sc.armRead(tr.responseTimeout)
			if _, err := br.Peek(1); err != nil {
				if mode == bodyUntilClose && err == io.EOF {
					break
				}
				r.err = err
				return r
			}
		}
		p, _ := br.Peek(br.Buffered())
		switch mode {
		case bodyLength:
			if int64(len(p)) > remain {
				p = p[:remain]
			}
			remain -= int64(len(p))
			r.bytes += int64(len(p))
			done = remain == 0
		case bodyChunked:
			n, end, err := cs.scan(p)
			if err != nil {
				r.err = err
				return r
			}
			p, done = p[:n], end
			r.bytes = cs.data
		default:
			r.bytes += int64(len(p))
		}
		if err := h.emit(x, p); err != nil {
			// The client left: what the server still sends is no one's.
			sc.Close()
			r.keep = false
			x.nout = 0
			return r
		}
		br.Discard(len(p))
	}
	if reusable && mode != bodyUntilClose && br.Buffered() == 0 {
		tr.put(sc)
	} else {
		sc.Close()
	}
	return r
}

var errClientGone = errors.New("client connection failed")

// emitHead records an answer head built in x.out (out is x.out[:x.nout]
// appended to); one too large for it is written at once.
func (h *h1Conn) emitHead(x *exchange, out []byte) bool {
	if cap(out) == len(x.out) {
		x.nout = len(out)
		return true
	}
	if h.flush(x) != nil {
		return false
	}
	x.nout = 0
	return h.emit(x, out) == nil
}

// serverError answers a request its server did not answer, and logs why,
// as proxyError does for net/http's requests.
func (h *h1Conn) serverError(x *exchange, t *target, err error, keep bool) (int, int64, bool) {
	return h.answerError(x, t.l.errorPageFor(t.srv, err), keep)
}

// errorPageFor logs why server s did not answer, and returns the page
// that says so to the client.
func (l *Listen) errorPageFor(s *config.Server, err error) errorPage {
	var certErr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	var invalidErr x509.CertificateInvalidError
	var opErr *net.OpError
	switch {
	case errors.As(err, &certErr) || errors.As(err, &hostErr) || errors.As(err, &authErr) || errors.As(err, &invalidErr):
		l.log.Warn("server certificate not verified: 502", "server", s.Name, "addr", s.Addr, "reason", err.Error())
		return http502Cert
	case errors.As(err, &opErr) && opErr.Op == "dial":
		l.log.Warn("server connection failed: 503", "server", s.Name, "addr", s.Addr, "reason", err.Error())
		return http503
	case isTimeout(err):
		l.log.Warn("server timeout: 504", "server", s.Name, "addr", s.Addr, "reason", err.Error())
		return http504
	default:
		l.log.Warn("bad answer from server: 502", "server", s.Name, "addr", s.Addr, "reason", err.Error())
		return http502
	}
}

package httpproxy

import (
	"context"
	"errors"
	"io"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pgswitch/pgswitch/edge/accesslog"
	"github.com/pgswitch/pgswitch/edge/backend"
)

// A stream's goroutine runs its exchange with a server: it takes a server
// below its maxconn (waiting in the queue if need be), writes the request
// on a kept-alive connection to it (streaming the body as the client
// sends it), reads the answer and frames it into the connection's output
// as the windows let it through. It owns the server connection; the
// connection's goroutine only interrupts it (cancelLocked) when the
// client resets the stream or the connection ends. Everything it shares
// with the connection (the stream's request body and windows, the
// framer, the output) it touches under the connection's mu, which it
// never holds across I/O but the output's write (flushLocked).
//
// The answer is read once the request was written whole (a CONNECT
// tunnel excepted): a server that answers before it read an upload gets
// its answer read when the upload failed or ended.

// errStreamReset ends a stream's exchange: the client reset the stream,
// or the connection ends.
var errStreamReset = errors.New("stream reset")

// worker is a stream's goroutine. Once its stream ended it serves the
// next one the connection starts, if one comes before the connection's
// buffers go (idle past parkAfter): a new goroutine would grow its stack
// again (morestack, its frames copied), which cost more than the rest of
// a goroutine's start and end together.
func (h *h2Conn) worker(st *h2Stream) {
	defer h.running.Done()
	growStack()
	for {
		h.run(st)
		h.mu.Lock()
		for len(h.work) == 0 && !h.closed && !h.workersOff {
			h.idleWorkers++
			h.workCond.Wait()
			h.idleWorkers--
		}
		if len(h.work) == 0 {
			h.mu.Unlock()
			return
		}
		st = h.work[0]
		n := copy(h.work, h.work[1:])
		h.work[n] = nil
		h.work = h.work[:n]
		h.mu.Unlock()
	}
}

// run serves st: a page of the proxy's, or its server's answer.
func (h *h2Conn) run(st *h2Stream) {
	page := st.preset
	h.mu.Lock()
	reset := st.reset
	h.mu.Unlock()
	if page == nil && !reset {
		page = h.forward(st)
	}
	if page != nil {
		h.answerPage(st, page)
	}
	h.finish(st)
}

// forward takes a server and exchanges st's request with it; it returns
// the page to answer with when there is no answer of the server's to pass
// on (nil: passed on, or the stream was reset).
func (h *h2Conn) forward(st *h2Stream) *errorPage {
	l := h.l
	s, err := l.pool.TryAcquire()
	if s == nil && err == nil {
		s, err = h.queue(st)
	}
	if err != nil {
		if !l.refused(err) {
			return nil // the client reset the stream, or left
		}
		return &http503
	}
	st.srv, st.t = s, l.targets[s.Index]
	st.codes = st.t.codes
	for {
		err := h.exchange(st)
		if err == nil || errors.Is(err, errStreamReset) {
			return nil
		}
		h.mu.Lock()
		sc, answered := st.sc, st.status != 0
		st.sc = nil
		h.mu.Unlock()
		if sc != nil {
			sc.Close()
		}
		if answered {
			h.cut(st, err)
			return nil
		}
		if st.reused && !st.retried && !st.streaming && !st.interim && errors.Is(err, errNoAnswer) && idempotentMethod(st.method) {
			st.retried = true
			continue
		}
		p := l.errorPageFor(st.t.srv, err)
		return &p
	}
}

// queue waits in the maxconn queue; the stream's reset ends the wait.
func (h *h2Conn) queue(st *h2Stream) (*backend.Server, error) {
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	h.mu.Lock()
	if st.reset {
		h.mu.Unlock()
		return nil, errStreamReset
	}
	st.cancelQ = cancel
	h.mu.Unlock()
	s, err := h.l.pool.Acquire(ctx, h.l.cfg.Timeouts.Queue)
	h.mu.Lock()
	st.cancelQ = nil
	reset := st.reset
	h.mu.Unlock()
	if reset {
		if s != nil {
			h.l.pool.Release(s)
		}
		return nil, errStreamReset
	}
	return s, err
}

// exchange writes st's request on a connection to its server and passes
// the answer on. An error is returned as it came; the stream is cut when
// its answer had begun, else answered with a page (or the request is
// repeated).
func (h *h2Conn) exchange(st *h2Stream) error {
	tr := st.t.transport
	sc, reused, err := tr.conn(h.ctx)
	if err != nil {
		return err
	}
	st.reused = reused
	h.mu.Lock()
	if st.reset {
		h.mu.Unlock()
		sc.Close()
		return errStreamReset
	}
	st.sc = sc
	st.taken = true
	// The request: whole if it ended, else its head and the body so far,
	// the rest streamed; chunked when its end carries trailers.
	whole := st.recvDone && !st.connect
	st.streaming = !whole
	if whole {
		st.upChunked = len(st.trailers) > 0
	} else {
		st.upChunked = !st.connect && (st.clen < 0 || st.declared)
	}
	sc.head = appendH2Head(sc.head[:0], st, len(st.body), st.t.hostHeader, h.client, st.t.forward)
	var owed uint32
	switch {
	case st.connect: // the body waits for the tunnel
	case st.upChunked:
		sc.head = appendChunk(sc.head, st.body)
		if whole {
			sc.head = appendLastChunk(sc.head, st.trailers)
		}
		st.body, owed, st.owed = st.body[:0], st.owed, 0
	default:
		sc.head = append(sc.head, st.body...)
		st.body, owed, st.owed = st.body[:0], st.owed, 0
	}
	h.mu.Unlock()

	sc.armDeadlines(tr.responseTimeout)
	if whole && sc.rc != nil {
		err = sc.send(sc.head)
	} else {
		_, err = sc.Conn.Write(sc.head)
	}
	if err != nil {
		return h.failed(st, noAnswerErr(err))
	}
	if st.streaming && !st.connect {
		if err := h.upload(st, owed); err != nil {
			if errors.Is(err, errStreamReset) {
				return err
			}
			// The server may have answered before it read it all.
			st.upFailed = true
		}
	}
	if err := h.answerHead(st); err != nil {
		return h.failed(st, err)
	}
	if !st.ended {
		err = h.failed(st, h.body(st))
	}
	if st.upDone != nil {
		// A tunnel: its upload ends with the client's END_STREAM, or
		// with the stream.
		if err != nil && !errors.Is(err, errStreamReset) {
			h.cut(st, err)
			err = errStreamReset
		}
		<-st.upDone
	}
	return err
}

// failed is err, or errStreamReset when the stream was reset meanwhile
// (its server I/O was interrupted for that).
func (h *h2Conn) failed(st *h2Stream, err error) error {
	if err == nil {
		return nil
	}
	h.mu.Lock()
	reset := st.reset
	h.mu.Unlock()
	if reset {
		return errStreamReset
	}
	return err
}

// upload writes the rest of st's request body to its server as the
// client sends it (as it came, or as chunks, the trailers at the end),
// giving the stream's window back as it is written, owed first.
func (h *h2Conn) upload(st *h2Stream, owed uint32) error {
	sc := st.sc
	tr := st.t.transport
	for {
		if owed > 0 {
			h.mu.Lock()
			if !st.reset && !st.recvDone {
				st.recvWin += int(owed)
				_ = h.fr.WriteWindowUpdate(st.id, owed)
				h.recount(st)
				h.flushLocked()
			}
			h.mu.Unlock()
		}
		h.mu.Lock()
		for len(st.body) == 0 && st.owed == 0 && !st.recvDone && !st.reset {
			st.cond.Wait()
		}
		if st.reset {
			h.mu.Unlock()
			return errStreamReset
		}
		b := st.upBuf[:0]
		if st.upChunked {
			b = appendChunk(b, st.body)
		} else {
			b = append(b, st.body...)
		}
		end := st.recvDone
		if end && st.upChunked {
			b = appendLastChunk(b, st.trailers)
		}
		st.body, owed, st.owed = st.body[:0], st.owed, 0
		h.mu.Unlock()
		st.upBuf = b
		if len(b) > 0 {
			sc.armWrite(tr.responseTimeout)
			if _, err := sc.Conn.Write(b); err != nil {
				h.mu.Lock()
				st.upGone = true
				st.body = nil
				h.recount(st)
				h.mu.Unlock()
				return h.failed(st, err)
			}
		}
		if end {
			return nil
		}
	}
}

// answerHead reads the head of st's answer and frames it: interim
// answers as they come, then the final one. A 2xx answer to a CONNECT
// starts the tunnel's upload.
func (h *h2Conn) answerHead(st *h2Stream) error {
	sc := st.sc
	br := sc.br
	tr := st.t.transport
	for more := br.Buffered() == 0; ; more = br.Buffered() == 0 {
		if more {
			sc.armRead(tr.responseTimeout)
			if _, err := br.Peek(br.Buffered() + 1); err != nil {
				if br.Buffered() == 0 && !st.interim {
					err = noAnswerErr(err)
				}
				return err
			}
		}
		h.mu.Lock()
		if st.reset {
			h.mu.Unlock()
			return errStreamReset
		}
		buf, _ := br.Peek(br.Buffered())
		if h.ans == nil {
			h.ans = new(ansHead)
		}
		a := h.ans
		done, err := parseAnswer(a, buf)
		if err != nil || !done {
			h.mu.Unlock()
			if err == nil && br.Buffered() == br.Size() {
				err = errAnswerTooLarge
			}
			if err != nil {
				return err
			}
			sc.armRead(tr.responseTimeout)
			if _, err := br.Peek(br.Buffered() + 1); err != nil {
				return err
			}
			continue
		}
		if a.code < 200 {
			if a.code == 101 {
				h.mu.Unlock()
				return errors.New("101 Switching Protocols without an Upgrade request")
			}
			// An interim answer (103 Early Hints, …), passed on.
			h.answerFields(a, buf, a.code)
			h.writeHeaders(st.id, false)
			br.Discard(a.end)
			st.interim = true
			h.flushLocked()
			h.mu.Unlock()
			continue
		}
		mode := bodyUntilClose
		tunnel := st.connect && a.code < 300
		switch {
		case tunnel:
		case st.method == "HEAD" || a.code == 204 || a.code == 304:
			mode = bodyNone
		case a.chunked:
			mode = bodyChunked
		case a.length >= 0:
			mode = bodyLength
		}
		if mode == bodyLength && a.length == 0 {
			mode = bodyNone
		}
		st.status, st.mode, st.remain = a.code, mode, a.length
		st.reusable = !st.upFailed && !a.close && mode != bodyUntilClose && !st.connect
		h.answerFields(a, buf, a.code)
		h.writeHeaders(st.id, mode == bodyNone)
		br.Discard(a.end)
		if mode == bodyNone {
			st.ended = true
		}
		if st.connect && !tunnel {
			st.upGone = true
			st.body = nil
			h.recount(st)
		}
		if st.ended || br.Buffered() == 0 {
			// Else the head goes out with the first DATA (one write).
			h.flushLocked()
		}
		h.mu.Unlock()
		if tunnel {
			st.upDone = make(chan struct{})
			h.running.Add(1)
			go h.tunnelUp(st)
		}
		return nil
	}
}

// tunnelUp carries a CONNECT tunnel's client bytes to the server (those
// that came before the tunnel opened first); the client's END_STREAM
// half-closes the server connection.
func (h *h2Conn) tunnelUp(st *h2Stream) {
	defer h.running.Done()
	defer close(st.upDone)
	if h.upload(st, 0) == nil {
		if cw, ok := st.sc.Conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
}

// body passes the answer's body on as the windows let it, and its end;
// an error cuts the stream.
func (h *h2Conn) body(st *h2Stream) error {
	sc := st.sc
	br := sc.br
	tr := st.t.transport
	for {
		if br.Buffered() == 0 {
			sc.armRead(tr.responseTimeout)
			if _, err := br.Peek(1); err != nil {
				if st.mode != bodyUntilClose || err != io.EOF {
					return err
				}
				h.mu.Lock()
				if !st.reset {
					h.sent(st, nil, true)
					st.ended = true
					h.flushLocked()
				}
				h.mu.Unlock()
				return nil
			}
		}
		h.mu.Lock()
		if !h.awaitWindowLocked(st) {
			h.mu.Unlock()
			return errStreamReset
		}
		err := h.pumpLocked(st)
		h.flushLocked()
		h.mu.Unlock()
		if err != nil || st.ended {
			return err
		}
	}
}

// pumpLocked frames as much of the answer body buffered as the windows
// let through.
func (h *h2Conn) pumpLocked(st *h2Stream) error {
	br := st.sc.br
	for br.Buffered() > 0 && !st.ended {
		n := min(h.sendWin, st.sendWin, int64(h.peerMax))
		if n <= 0 {
			return nil
		}
		if st.mode == bodyChunked {
			if err := h.pumpChunked(st, n); err != nil {
				return err
			}
			continue
		}
		k := min(int64(br.Buffered()), n)
		if st.mode == bodyLength {
			k = min(k, st.remain)
			st.remain -= k
		}
		p, _ := br.Peek(int(k))
		end := st.mode == bodyLength && st.remain == 0
		h.sent(st, p, end)
		br.Discard(int(k))
		st.ended = end
	}
	return nil
}

// pumpChunked frames the data of the chunked body bytes buffered, up to n
// of them, as DATA; the chunk framing is dropped, the trailers go as
// HEADERS.
func (h *h2Conn) pumpChunked(st *h2Stream, n int64) error {
	br := st.sc.br
	p, _ := br.Peek(br.Buffered())
	cs := &st.cs
	i := 0
	for i < len(p) && n > 0 {
		if cs.state == chunkData {
			k := int(min(cs.size, int64(len(p)-i), n))
			cs.scan(p[i : i+k])
			h.sent(st, p[i:i+k], false)
			i += k
			n -= int64(k)
			continue
		}
		inTrailer := cs.state == chunkTrailer || cs.state == chunkTrailerLine || cs.state == chunkEndLF
		_, end, err := cs.scan(p[i : i+1])
		if err == nil && inTrailer {
			if len(st.trailer) == maxTrailer {
				err = errChunked
			}
			st.trailer = append(st.trailer, p[i])
		}
		if err != nil {
			br.Discard(i)
			return err
		}
		i++
		if end {
			br.Discard(i)
			h.endChunked(st)
			st.ended = true
			return nil
		}
	}
	br.Discard(i)
	return nil
}

// cut ends an answer the server did not finish: the client learns of it
// by a RST_STREAM.
func (h *h2Conn) cut(st *h2Stream, err error) {
	h.l.log.Warn("answer cut short", "server", st.t.srv.Name, "addr", st.t.srv.Addr, "reason", err.Error())
	h.mu.Lock()
	if !st.reset {
		_ = h.fr.WriteRSTStream(st.id, http2.ErrCodeInternal)
		h.cancelLocked(st)
		h.flushLocked()
	}
	h.mu.Unlock()
}

// awaitWindowLocked waits until both the connection's and st's windows let
// some of st's answer through, counting st as blocked meanwhile; false if
// st was reset.
func (h *h2Conn) awaitWindowLocked(st *h2Stream) bool {
	for !st.reset && min(h.sendWin, st.sendWin) <= 0 {
		if !st.blocked {
			st.blocked = true
			h.recount(st)
		}
		st.cond.Wait()
	}
	if st.blocked {
		st.blocked = false
		h.recount(st)
	}
	return !st.reset
}

// answerPage answers st with an error page of the proxy's; its body goes
// out as the windows let it.
func (h *h2Conn) answerPage(st *h2Stream, p *errorPage) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st.reset {
		return
	}
	st.status = p.status
	st.upGone, st.body = true, nil
	h.recount(st)
	h.hbuf.Reset()
	_ = h.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusValue(p.status)})
	_ = h.henc.WriteField(hpack.HeaderField{Name: "content-type", Value: "text/html"})
	_ = h.henc.WriteField(hpack.HeaderField{Name: "cache-control", Value: "no-cache"})
	_ = h.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: statusValue(len(p.body))})
	h.writeHeaders(st.id, false)
	page := p.body
	for {
		if !h.awaitWindowLocked(st) {
			return
		}
		k := int(min(int64(len(page)), h.sendWin, st.sendWin, int64(h.peerMax)))
		h.sent(st, []byte(page[:k]), k == len(page))
		page = page[k:]
		h.flushLocked()
		if len(page) == 0 {
			return
		}
	}
}

// finish ends st: its server connection goes back to the pool (the
// answer ended whole and nothing is left unread) or closes, its server's
// maxconn slot is released, and a line is logged for a request that
// reached a server or got an answer.
func (h *h2Conn) finish(st *h2Stream) {
	h.mu.Lock()
	sc := st.sc
	st.sc = nil
	reuse := sc != nil && st.ended && st.reusable && !st.reset && sc.br.Buffered() == 0
	h.finishLocked(st)
	h.flushLocked()
	status, bytes := st.status, st.bytes
	h.mu.Unlock()
	if sc != nil {
		if reuse {
			st.t.transport.put(sc)
		} else {
			sc.Close()
		}
	}
	l := h.l
	if st.srv != nil {
		l.pool.Release(st.srv)
		st.srv = nil
	}
	if status == 0 {
		return // refused before any answer: not a request
	}
	if status != 499 {
		st.codes.Inc(status)
	}
	l.m.Duration.Observe(time.Since(st.start).Seconds())
	if l.logger != nil {
		e := accesslog.Entry{Client: h.client, Time: st.start, Method: st.method, Target: st.path, Proto: "HTTP/2.0",
			Status: status, Bytes: bytes, Referer: st.referer, UserAgent: st.ua}
		l.logger.Log(&e)
	}
}

func idempotentMethod(m string) bool {
	return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE"
}

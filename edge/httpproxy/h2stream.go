package httpproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pgswitch/pgswitch/edge/accesslog"
	"github.com/pgswitch/pgswitch/edge/backend"
	"github.com/pgswitch/pgswitch/edge/metrics"
)

// h2Stream is one stream of a lean HTTP/2 connection: the request as it
// arrived, then the answer on its way.
type h2Stream struct {
	id                      uint32
	start                   time.Time
	method, path, authority string
	ua, referer             string
	fields                  []hpack.HeaderField // the regular fields
	// body holds the request body received before the request went to
	// its server (all of it, when it ended first); later DATA is
	// streamed (upload). owed is the DATA length (padding included) of
	// body not yet given back to the client's window.
	body      []byte
	owed      uint32
	recvWin   int   // the stream's receive window
	clen      int64 // the client's content-length, -1 if none
	dataLen   int64 // request body bytes received
	streaming bool  // the head went out before the body ended
	upChunked bool  // the body goes to the server chunked (no content-length)
	upErr     error // writing the body to the server failed
	recvDone  bool  // the client ended its side
	reset     bool  // a RST_STREAM was sent or received
	sendWin   int64

	srv     *backend.Server // held (maxconn) until the answer ends
	t       *target
	sc      *serverConn
	reused  bool
	retried bool
	err     error // sending the request failed
	codes   *metrics.Codes

	mode     bodyMode
	remain   int64
	cs       chunkScan
	trailer  []byte // the trailer section of a chunked answer, so far
	headDone bool   // the answer's head went out
	queued   bool   // among sending
	// waiting: a waiter owns sc until it puts the stream in woken, with
	// waitErr.
	waiting  bool
	waitErr  error
	reusable bool   // sc may serve another request after this answer
	page     []byte // the rest of an answer of the proxy's
	status   int
	bytes    int64
	done     bool
}

// malformed is a request the stream refuses with RST_STREAM PROTOCOL_ERROR
// (RFC 9113 section 8.1.1).
var errMalformed = errors.New("malformed request")

// headers handles a HEADERS frame (with its CONTINUATIONs): a new
// stream's request, or the trailers of one whose body is arriving.
func (h *h2Conn) headers(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if id <= h.lastID {
		st := h.streams[id]
		if st == nil {
			return nil // a stream already ended (answered, or reset): ignored
		}
		if st.recvDone {
			return http2.ConnectionError(http2.ErrCodeStreamClosed)
		}
		// Trailers: they end the request, and are dropped.
		if !f.StreamEnded() {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		h.requestEnded(st)
		return nil
	}
	h.lastID = id
	if h.goneAway {
		return nil // past the GOAWAY's last stream: ignored
	}
	if len(h.streams) >= h2MaxStreams {
		h.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	st := &h2Stream{id: id, start: time.Now(), sendWin: h.peerWin, recvWin: h2Window, clen: -1,
		recvDone: f.StreamEnded(), codes: h.l.codesNoServer}
	h.streams[id] = st
	if f.Truncated {
		h.l.refusedHeaders.Inc()
		h.answerPage(st, http431)
		return nil
	}
	n, err := st.parse(f.Fields)
	switch {
	case err != nil:
		h.resetStream(id, http2.ErrCodeProtocol)
	case n > h.l.cfg.Limits.MaxHeaders:
		h.l.refusedHeaders.Inc()
		h.answerPage(st, http431)
	case st.method == "CONNECT":
		h.answerPage(st, http501)
	case (st.path[0] != '/' && st.path != "*") || hasCTL(st.path) || strings.IndexByte(st.path, ' ') >= 0 || !isPlainHost(st.authority):
		h.answerPage(st, http400)
	default:
		// Sent in this cycle: with its body if that arrives meanwhile,
		// else before it (upload).
		h.ready = append(h.ready, st)
	}
	return nil
}

// parse takes the request's fields; it returns how many regular fields
// there are, or errMalformed.
func (st *h2Stream) parse(fields []hpack.HeaderField) (int, error) {
	n := 0
	var scheme string
	for _, f := range fields {
		if f.IsPseudo() {
			var p *string
			switch f.Name {
			case ":method":
				p = &st.method
			case ":path":
				p = &st.path
			case ":authority":
				p = &st.authority
			case ":scheme":
				p = &scheme
			default:
				return 0, errMalformed // :protocol, unasked for, and the unknown
			}
			if *p != "" || f.Value == "" {
				return 0, errMalformed
			}
			*p = f.Value
			continue
		}
		n++
		switch f.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return 0, errMalformed
		case "te":
			if f.Value != "trailers" {
				return 0, errMalformed
			}
		case "content-length":
			v, err := strconv.ParseUint(f.Value, 10, 63)
			if err != nil || st.clen >= 0 && st.clen != int64(v) {
				return 0, errMalformed
			}
			st.clen = int64(v)
		case "host":
			if st.authority == "" {
				st.authority = f.Value
			}
		case "user-agent":
			st.ua = f.Value
		case "referer":
			st.referer = f.Value
		}
	}
	if !isToken(st.method) {
		return 0, errMalformed
	}
	if st.method != "CONNECT" && (scheme == "" || st.path == "") {
		return 0, errMalformed
	}
	if st.path == "" {
		st.path = "*" // CONNECT: answered 501
	}
	st.fields = fields
	return n, nil
}

// data handles a DATA frame: the request body is kept until the request
// goes to its server, then streamed to it (upload), the stream's window
// given back as it goes; the connection's window is given back at the
// end of each cycle.
func (h *h2Conn) data(f *http2.DataFrame) error {
	n := f.Length
	h.recvUsed += n
	if h.recvUsed > h2Window {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	st := h.streams[f.StreamID]
	if st == nil {
		if f.StreamID > h.lastID || f.StreamID == 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil // a stream we reset or answered: ignored
	}
	if st.recvDone {
		h.resetStream(st.id, http2.ErrCodeStreamClosed)
		return nil
	}
	st.recvWin -= int(n)
	if st.recvWin < 0 {
		h.resetStream(st.id, http2.ErrCodeFlowControl)
		return nil
	}
	p := f.Data()
	st.dataLen += int64(len(p))
	if st.clen >= 0 && st.dataLen > st.clen {
		// More than the content-length said (RFC 9113 section 8.1.1):
		// never passed on, the server would read it as a request.
		h.resetStream(st.id, http2.ErrCodeProtocol)
		return nil
	}
	switch {
	case st.status != 0: // answered already: dropped
	case st.streaming:
		h.upload(st, p)
		if n > 0 && !f.StreamEnded() {
			st.recvWin += int(n)
			_ = h.fr.WriteWindowUpdate(st.id, n)
		}
	default:
		st.body = append(st.body, p...)
		st.owed += n
	}
	if f.StreamEnded() {
		h.requestEnded(st)
	}
	return nil
}

// requestEnded is the end of st's request (END_STREAM). A body shorter
// than its content-length is malformed.
func (h *h2Conn) requestEnded(st *h2Stream) {
	st.recvDone = true
	if st.clen >= 0 && st.dataLen != st.clen {
		h.resetStream(st.id, http2.ErrCodeProtocol)
		return
	}
	if st.status != 0 || !st.streaming {
		return // answered; or in ready, to be sent whole
	}
	if st.upChunked && st.sc != nil && st.upErr == nil {
		h.upWrite(st, append(h.upBuf[:0], "0\r\n\r\n"...))
	}
	h.bodyDone = append(h.bodyDone, st)
}

// upload writes p, DATA of st's request, to its server: as it came, or as
// a chunk. The write is bounded by the server timeout; a failure is kept
// for the answer (the server may have answered before reading it all).
func (h *h2Conn) upload(st *h2Stream, p []byte) {
	if st.sc == nil || st.upErr != nil || len(p) == 0 {
		return
	}
	if !st.upChunked {
		h.upWrite(st, p)
		return
	}
	b := strconv.AppendInt(h.upBuf[:0], int64(len(p)), 16)
	b = append(b, "\r\n"...)
	b = append(b, p...)
	h.upBuf = append(b, "\r\n"...)
	h.upWrite(st, h.upBuf)
}

func (h *h2Conn) upWrite(st *h2Stream, b []byte) {
	st.sc.armDeadlines(st.t.transport.responseTimeout)
	if _, err := st.sc.Conn.Write(b); err != nil {
		st.upErr = err
	}
}

// forwardReady sends the requests that became complete to their servers,
// all of them before any answer is awaited, then reads the answers in
// turn, framing as much of each as the windows let through.
func (h *h2Conn) forwardReady() {
	ready := h.ready
	i := 0
	for i < len(ready) {
		// A batch: the requests that get a server at once. The first may
		// wait in the queue when no stream of the connection holds a
		// server (else those waiting for their servers could never release
		// theirs): the rest wait for a later cycle.
		j, sent := i, 0
		for ; i < len(ready); i++ {
			st := ready[i]
			if st.done || st.status != 0 {
				continue
			}
			if !h.send(st, sent == 0 && h.nHeld == 0) {
				break
			}
			sent++
		}
		for _, st := range ready[j:i] {
			if st.done || !st.recvDone || st.sc == nil && st.err == nil {
				continue // the answer of an upload is awaited once it ends
			}
			h.receive(st)
			h.carryOn(st)
		}
		if sent == 0 && i < len(ready) {
			break
		}
	}
	n := copy(ready, ready[i:])
	clear(ready[n:])
	h.ready = ready[:n]
}

// send chooses a server and writes the request on a kept-alive
// connection to it. With wait, a request finds all servers at their
// maxconn waits in the queue (the connection waits too); without, send
// reports false then, doing nothing.
func (h *h2Conn) send(st *h2Stream, wait bool) bool {
	l := h.l
	s, err := l.pool.TryAcquire()
	if s == nil && err == nil {
		if !wait {
			return false
		}
		s, err = l.pool.Acquire(context.Background(), l.cfg.Timeouts.Queue)
	}
	if err != nil {
		if errors.Is(err, backend.ErrQueueTimeout) {
			l.refusedQueue.Inc()
			l.log.Warn("request refused", "reason", err.Error(), "queue_timeout", l.cfg.Timeouts.Queue)
		} else {
			l.refusedNoSrv.Inc()
		}
		h.answerPage(st, http503)
		return true
	}
	st.srv, st.t = s, l.targets[s.Index]
	st.codes = st.t.codes
	h.nHeld++
	h.write(st)
	return true
}

// write writes st's request on a connection to its server: whole, if
// its body ended; else its head and the body so far, the rest to be
// streamed (upload), and then it is not repeated on another connection.
func (h *h2Conn) write(st *h2Stream) {
	if !st.recvDone {
		st.streaming, st.retried = true, true
		st.upChunked = st.clen < 0
		if st.owed > 0 {
			// The body so far is on its way: the client may send more.
			st.recvWin += int(st.owed)
			_ = h.fr.WriteWindowUpdate(st.id, st.owed)
			st.owed = 0
		}
	}
	tr := st.t.transport
	sc, reused, err := tr.conn(context.Background())
	if err != nil {
		st.err = err
		return
	}
	sc.head = appendH2Head(sc.head[:0], st, st.t.hostHeader, h.client, st.t.forward)
	switch {
	case !st.streaming:
		sc.head = append(sc.head, st.body...)
	case len(st.body) > 0 && st.upChunked:
		sc.head = strconv.AppendInt(sc.head, int64(len(st.body)), 16)
		sc.head = append(sc.head, "\r\n"...)
		sc.head = append(sc.head, st.body...)
		sc.head = append(sc.head, "\r\n"...)
	default:
		sc.head = append(sc.head, st.body...)
	}
	if st.streaming {
		st.body = nil
	}
	sc.armDeadlines(tr.responseTimeout)
	st.sc, st.reused = sc, reused
	if _, err := sc.Conn.Write(sc.head); err != nil {
		st.err = noAnswerErr(err)
	}
}

// receive reads the head of st's answer and sends it as HEADERS; a
// request that got no answer on a kept-alive connection is sent once more
// on another when repeating it is safe. A server slower than h2Patience
// leaves the stream to a waiter.
func (h *h2Conn) receive(st *h2Stream) {
	err := st.err
	if err == nil {
		err = h.readAnswerHead(st)
	}
	if err != nil {
		if st.sc != nil {
			st.sc.Close()
			st.sc = nil
		}
		if st.reused && !st.retried && errors.Is(err, errNoAnswer) && idempotentMethod(st.method) {
			st.retried, st.err = true, nil
			h.write(st)
			h.receive(st)
			return
		}
		h.answerPage(st, h.l.errorPageFor(st.t.srv, err))
	}
}

// carryOn frames what it can of an answer whose head went out, and keeps
// it among sending while more is to come.
func (h *h2Conn) carryOn(st *h2Stream) {
	if st.done || st.waiting || !st.headDone || st.page != nil {
		return
	}
	h.pump(st)
	if !st.done && !st.queued {
		st.queued = true
		h.sending = append(h.sending, st)
	}
}

// h2Patience is how long the connection's goroutine waits for a server's
// next bytes itself; then a waiter waits for them (up to the server
// timeout) and the other streams go on.
const h2Patience = 2 * time.Millisecond

// more waits up to h2Patience for bytes of the server beyond those
// buffered. It reports false, with a nil error, when it handed the wait to
// a waiter.
func (h *h2Conn) more(st *h2Stream) (bool, error) {
	sc := st.sc
	want := sc.br.Buffered() + 1
	if at, ok := sc.rdl.arm(time.Now().Add(h2Patience), 0); ok {
		_ = sc.Conn.SetReadDeadline(at)
	}
	_, err := sc.br.Peek(want)
	if err == nil {
		return true, nil
	}
	if !isTimeout(err) {
		return false, err
	}
	h.wait(st, want)
	return false, nil
}

// wait starts st's waiter: a goroutine that waits up to the server
// timeout for want bytes of its server, then puts the stream in woken and
// wakes the connection's goroutine. It owns sc meanwhile; endStream closes
// sc to end it early, and the connection's goroutine waits for it before
// it ends.
func (h *h2Conn) wait(st *h2Stream, want int) {
	st.waiting = true
	h.nWaiting++
	sc := st.sc
	to := st.t.transport.responseTimeout
	h.waiters.Add(1)
	go func() {
		defer h.waiters.Done()
		at := time.Now().Add(to)
		sc.rdl.set(at)
		_ = sc.Conn.SetReadDeadline(at)
		_, err := sc.br.Peek(want)
		h.mu.Lock()
		st.waitErr = err
		h.woken = append(h.woken, st)
		h.wakeLocked()
		h.mu.Unlock()
	}()
}

// resume carries on a stream its waiter gave back.
func (h *h2Conn) resume(st *h2Stream) {
	st.waiting = false
	h.nWaiting--
	if st.done {
		return // ended meanwhile: endStream closed sc
	}
	err := st.waitErr
	st.waitErr = nil
	switch {
	case !st.headDone && err != nil:
		if st.sc.br.Buffered() == 0 {
			err = noAnswerErr(err)
		}
		st.err = err
		h.receive(st)
	case !st.headDone:
		h.receive(st)
	case err != nil && !(st.mode == bodyUntilClose && err == io.EOF):
		h.cut(st, err)
		return
	case err != nil:
		h.sent(st, nil, true)
		h.endStream(st, false)
		return
	}
	h.carryOn(st)
}

func idempotentMethod(m string) bool {
	return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE"
}

// readAnswerHead reads the answer's head (interim answers are dropped)
// and frames it; a server slower than h2Patience leaves it to a waiter
// (nil error, st.waiting).
func (h *h2Conn) readAnswerHead(st *h2Stream) error {
	sc := st.sc
	br := sc.br
	if h.ans == nil {
		h.ans = new(ansHead)
	}
	a := h.ans
	var buf []byte
	for {
		if br.Buffered() > 0 {
			buf, _ = br.Peek(br.Buffered())
			done, err := parseAnswer(a, buf)
			if err != nil {
				return err
			}
			if done {
				if a.code >= 200 {
					break
				}
				if a.code == 101 {
					return errors.New("101 Switching Protocols without an Upgrade request")
				}
				// An interim answer (103 Early Hints, …), passed on.
				h.answerFields(a, buf, a.code)
				h.writeHeaders(st.id, false)
				br.Discard(a.end)
				continue
			}
			if br.Buffered() == br.Size() {
				return errAnswerTooLarge
			}
		}
		ok, err := h.more(st)
		if err != nil {
			if br.Buffered() == 0 {
				err = noAnswerErr(err)
			}
			return err
		}
		if !ok {
			return nil
		}
	}
	mode := bodyUntilClose
	switch {
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
	st.status, st.mode, st.remain, st.reusable = a.code, mode, a.length, !a.close && mode != bodyUntilClose
	st.headDone = true
	h.answerHead(st, a, buf)
	br.Discard(a.end)
	if mode == bodyNone {
		h.endStream(st, true)
	}
	return nil
}

// answerHead frames the head of the server's answer: its fields but the
// connection-specific ones, names in lower case.
func (h *h2Conn) answerHead(st *h2Stream, a *ansHead, b []byte) {
	h.answerFields(a, b, a.code)
	h.writeHeaders(st.id, st.mode == bodyNone)
}

// answerFields encodes :status and a's fields into hbuf.
func (h *h2Conn) answerFields(a *ansHead, b []byte, code int) {
	h.hbuf.Reset()
	_ = h.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusValue(code)})
	a.passedFields(b, func(name, value []byte) {
		_ = h.henc.WriteField(hpack.HeaderField{Name: h.lowerName(name), Value: string(value)})
	})
}

// maxTrailer bounds the trailer section of a chunked answer.
const maxTrailer = 16 << 10

// endChunked ends a chunked answer: with a HEADERS of its trailer fields
// when it had some (RFC 9113 section 8.1), else an empty DATA.
func (h *h2Conn) endChunked(st *h2Stream) {
	h.hbuf.Reset()
	n := 0
	for rest := st.trailer; len(rest) > 0; {
		var line []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			line, rest = rest, nil
		}
		line = bytes.TrimRight(line, "\r")
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isTokenBytes(line[:colon]) {
			continue
		}
		switch kindOf(line[:colon]) {
		case fieldConnection, fieldHop, fieldUpgrade, fieldTE, fieldTransferEncoding, fieldContentLength, fieldHost, fieldTrailer:
			continue
		}
		v := bytes.Trim(line[colon+1:], " \t")
		if !fieldValue(string(v)) {
			continue
		}
		_ = h.henc.WriteField(hpack.HeaderField{Name: h.lowerName(line[:colon]), Value: string(v)})
		n++
	}
	st.trailer = nil
	if n == 0 {
		h.sent(st, nil, true)
		return
	}
	h.writeHeaders(st.id, true)
}

// lowerName returns name in lower case, from a per-connection table.
func (h *h2Conn) lowerName(name []byte) string {
	if s, ok := h.names[string(name)]; ok {
		return s
	}
	s := string(bytes.ToLower(name))
	if h.names == nil {
		h.names = map[string]string{}
	}
	if len(h.names) < 256 {
		h.names[string(name)] = s
	}
	return s
}

var statusValues = func() (v [600]string) {
	for i := 100; i < 600; i++ {
		v[i] = strconv.Itoa(i)
	}
	return v
}()

func statusValue(code int) string {
	if code >= 100 && code < 600 {
		return statusValues[code]
	}
	return strconv.Itoa(code)
}

// writeHeaders frames the block in hbuf as HEADERS and CONTINUATIONs.
func (h *h2Conn) writeHeaders(id uint32, end bool) {
	block := h.hbuf.Bytes()
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), h.peerMax)]
		block = block[len(frag):]
		if first {
			_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			_ = h.fr.WriteContinuation(id, len(block) == 0, frag)
		}
	}
}

// answerPage answers st with an error page of the proxy's; its body goes
// out as the windows let it.
func (h *h2Conn) answerPage(st *h2Stream, p errorPage) {
	st.status, st.page = p.status, []byte(p.body)
	h.hbuf.Reset()
	_ = h.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusValue(p.status)})
	_ = h.henc.WriteField(hpack.HeaderField{Name: "content-type", Value: "text/html"})
	_ = h.henc.WriteField(hpack.HeaderField{Name: "cache-control", Value: "no-cache"})
	_ = h.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(p.body))})
	h.writeHeaders(st.id, false)
	if !st.queued {
		st.queued = true
		h.sending = append(h.sending, st)
	}
}

// pump frames as much of st's answer body as the windows let through.
func (h *h2Conn) pump(st *h2Stream) {
	for !st.done {
		n := min(h.sendWin, st.sendWin, int64(h.peerMax))
		if n <= 0 {
			return
		}
		if st.page != nil {
			p := st.page[:min(int64(len(st.page)), n)]
			st.page = st.page[len(p):]
			end := len(st.page) == 0
			h.sent(st, p, end)
			if end {
				h.endStream(st, false)
			}
			continue
		}
		sc := st.sc
		br := sc.br
		if br.Buffered() == 0 {
			ok, err := h.more(st)
			if err != nil {
				if st.mode == bodyUntilClose && err == io.EOF {
					h.sent(st, nil, true)
					h.endStream(st, false)
					return
				}
				h.cut(st, err)
				return
			}
			if !ok {
				return // a waiter waits
			}
		}
		if st.mode == bodyChunked {
			if !h.pumpChunked(st, n) {
				return
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
		if end {
			h.endStream(st, true)
		}
	}
}

// pumpChunked frames the data of the chunked body bytes buffered, up to n
// of them, as DATA; the chunk framing and the trailers are dropped. It
// reports false when the stream ended.
func (h *h2Conn) pumpChunked(st *h2Stream, n int64) bool {
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
			h.cut(st, err)
			return false
		}
		i++
		if end {
			br.Discard(i)
			h.endChunked(st)
			h.endStream(st, true)
			return false
		}
	}
	br.Discard(i)
	return true
}

// sent frames p as DATA of st, and counts it against the windows.
func (h *h2Conn) sent(st *h2Stream, p []byte, end bool) {
	_ = h.fr.WriteData(st.id, end, p)
	h.sendWin -= int64(len(p))
	st.sendWin -= int64(len(p))
	st.bytes += int64(len(p))
}

// cut ends an answer the server did not finish: the client learns of it
// by a RST_STREAM.
func (h *h2Conn) cut(st *h2Stream, err error) {
	h.l.log.Warn("answer cut short", "server", st.t.srv.Name, "addr", st.t.srv.Addr, "reason", err.Error())
	st.reset = true
	_ = h.fr.WriteRSTStream(st.id, http2.ErrCodeInternal)
	h.endStream(st, false)
}

// endStream ends st: its server connection goes back to the pool (reuse,
// and nothing left unread) or closes, its server's maxconn slot is
// released, and a line is logged for a request that reached a server or
// got an answer.
func (h *h2Conn) endStream(st *h2Stream, reuse bool) {
	if st.done {
		return
	}
	st.done = true
	delete(h.streams, st.id)
	if sc := st.sc; sc != nil {
		st.sc = nil
		if reuse && st.reusable && !st.waiting && sc.br.Buffered() == 0 {
			st.t.transport.put(sc)
		} else {
			sc.Close()
		}
	}
	l := h.l
	if st.srv != nil {
		l.pool.Release(st.srv)
		st.srv = nil
		h.nHeld--
	}
	if st.status == 0 {
		return // refused before any answer: not a request
	}
	if !st.recvDone && !st.reset {
		// Answered before the request ended: the rest is not wanted.
		_ = h.fr.WriteRSTStream(st.id, http2.ErrCodeNo)
	}
	if st.status != 499 {
		st.codes.Inc(st.status)
	}
	l.m.Duration.Observe(time.Since(st.start).Seconds())
	if l.logger != nil {
		e := accesslog.Entry{Client: h.client, Time: st.start, Method: st.method, Target: st.path, Proto: "HTTP/2.0",
			Status: st.status, Bytes: st.bytes, Referer: st.referer, UserAgent: st.ua}
		l.logger.Log(&e)
	}
}

// appendH2Head appends the HTTP/1.1 head st's request is forwarded with:
// its fields as they came (an HTTP/2 request carries no
// connection-specific one: parse refuses them) but Host, Content-Length,
// TE and the X-Forwarded-* the proxy sets; cookies joined into one field
// (RFC 9113 section 8.2.3); then ours.
func appendH2Head(b []byte, st *h2Stream, host, client string, forward bool) []byte {
	b = append(b, st.method...)
	b = append(b, ' ')
	b = append(b, st.path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	if host == "" {
		host = st.authority
	}
	b = append(b, host...)
	b = append(b, "\r\n"...)
	cookies := 0
	for _, f := range st.fields {
		if f.IsPseudo() {
			continue
		}
		switch f.Name {
		case "host", "content-length", "trailer", "x-forwarded-host", "x-forwarded-proto", "proxy-authorization", "proxy-authenticate":
			continue
		case "x-forwarded-for":
			if !forward {
				continue
			}
		case "cookie":
			cookies++
			continue
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	if cookies > 0 {
		b = append(b, "cookie: "...)
		n := 0
		for _, f := range st.fields {
			if f.Name == "cookie" {
				if n > 0 {
					b = append(b, "; "...)
				}
				b = append(b, f.Value...)
				n++
			}
		}
		b = append(b, "\r\n"...)
	}
	switch {
	case st.upChunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case st.streaming:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, st.clen, 10)
		b = append(b, "\r\n"...)
	case len(st.body) > 0 || st.clen >= 0 || st.method == "POST" || st.method == "PUT" || st.method == "PATCH":
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(st.body)), 10)
		b = append(b, "\r\n"...)
	}
	if forward {
		b = append(b, "X-Forwarded-For: "...)
		b = append(b, client...)
		b = append(b, "\r\nX-Forwarded-Host: "...)
		b = append(b, st.authority...)
		b = append(b, "\r\nX-Forwarded-Proto: https\r\n"...)
	}
	return append(b, "\r\n"...)
}

package httpproxy

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pgswitch/pgswitch/edge/backend"
	"github.com/pgswitch/pgswitch/edge/metrics"
)

// h2Stream is one stream of a lean HTTP/2 connection: the request as it
// arrived, then the exchange with its server (h2exchange.go).
type h2Stream struct {
	// Set by the connection's goroutine before the stream's goroutine
	// starts, then read-only.
	id                      uint32
	start                   time.Time
	method, path, authority string
	ua, referer             string
	fields                  []hpack.HeaderField // the regular fields
	clen                    int64               // the client's content-length, -1 if none
	connect                 bool                // a plain CONNECT: a tunnel after a 2xx answer
	declared                bool                // a trailer field announced trailers
	preset                  *errorPage          // the proxy's answer, without a server

	// cond's L is the connection's mu: the stream's goroutine waits for
	// request body, for window, or for the stream's end.
	cond sync.Cond

	// Guarded by the connection's mu.
	//
	// body is the request body received and not yet taken by the
	// stream's goroutine; owed is the DATA length (padding included) of
	// it not yet given back to the client's window.
	body     []byte
	owed     uint32
	trailers []hpack.HeaderField // the request's trailers
	recvWin  int                 // the stream's receive window
	dataLen  int64               // request body bytes received
	recvDone bool                // the client ended its side
	taken    bool                // the goroutine took the request: what comes is streamed
	upGone   bool                // no more request body goes to the server: DATA is dropped
	reset    bool                // a RST_STREAM was sent or received (or the connection ends)
	open     bool                // among the connection's streams
	counted  bool                // counted in nClient
	blocked  bool                // the goroutine waits for window
	started  bool                // the goroutine runs
	finished bool
	sendWin  int64
	status   int
	bytes    int64
	sc       *serverConn        // the goroutine's, here for cancelLocked to interrupt
	cancelQ  context.CancelFunc // ends a wait in the queue

	// The stream's goroutine's.
	srv       *backend.Server // held (maxconn) until the stream ends
	t         *target
	codes     *metrics.Codes
	reused    bool
	retried   bool
	streaming bool // the head went out before the body ended
	upChunked bool // the body goes to the server chunked
	upBuf     []byte
	upFailed  bool // writing the body failed: the connection is not reused
	interim   bool // an interim answer went out: no retry
	mode      bodyMode
	remain    int64
	cs        chunkScan
	trailer   []byte // the trailer section of a chunked answer, so far
	reusable  bool   // sc may serve another request after this answer
	ended     bool   // the answer ended whole
	upDone    chan struct{}
}

// errMalformed is a request the stream refuses with RST_STREAM
// PROTOCOL_ERROR (RFC 9113 section 8.1.1).
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
		// Trailers: they end the request.
		if !f.StreamEnded() {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		for _, hf := range f.Fields {
			if hf.IsPseudo() {
				h.resetStreamLocked(id, http2.ErrCodeProtocol)
				return nil
			}
		}
		st.trailers = f.Fields
		h.requestEnded(st)
		return nil
	}
	h.lastID = id
	if h.goneAway {
		return nil // past the GOAWAY's last stream: ignored
	}
	if len(h.streams) >= h2MaxStreams || h.nRunning >= h2MaxRunning {
		h.resetStreamLocked(id, http2.ErrCodeRefusedStream)
		return nil
	}
	st := &h2Stream{id: id, start: time.Now(), sendWin: h.peerWin, recvWin: h2Window, clen: -1,
		recvDone: f.StreamEnded(), codes: h.l.codesNoServer, open: true}
	st.cond.L = &h.mu
	h.streams[id] = st
	defer h.recount(st)
	if f.Truncated {
		h.l.refusedHeaders.Inc()
		h.answerLater(st, &http431)
		return nil
	}
	n, err := st.parse(f.Fields)
	switch {
	case err != nil:
		h.resetStreamLocked(id, http2.ErrCodeProtocol)
	case n > h.l.cfg.Limits.MaxHeaders:
		h.l.refusedHeaders.Inc()
		h.answerLater(st, &http431)
	case st.connect && isPlainHost(st.authority):
		h.ready = append(h.ready, st)
	case st.connect || (st.path[0] != '/' && st.path != "*") || hasCTL(st.path) || strings.IndexByte(st.path, ' ') >= 0 || !isPlainHost(st.authority):
		h.answerLater(st, &http400)
	default:
		// Its goroutine starts at the cycle's end: with its body if that
		// arrives meanwhile, else before it (upload).
		h.ready = append(h.ready, st)
	}
	return nil
}

// answerLater answers st with a page of the proxy's, from its goroutine
// (the page waits for window like any answer).
func (h *h2Conn) answerLater(st *h2Stream, p *errorPage) {
	st.preset = p
	h.ready = append(h.ready, st)
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
		case "trailer":
			st.declared = true
		}
	}
	if !isToken(st.method) {
		return 0, errMalformed
	}
	if st.method == "CONNECT" {
		// RFC 9113 section 8.5: :authority only.
		if scheme != "" || st.path != "" || st.authority == "" {
			return 0, errMalformed
		}
		st.connect, st.path = true, st.authority
	} else if scheme == "" || st.path == "" {
		return 0, errMalformed
	}
	st.fields = fields
	return n, nil
}

// data handles a DATA frame: the request body is kept until the stream's
// goroutine takes it (and writes it to the server, giving the stream's
// window back as it goes); the connection's window is given back at the
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
		h.resetStreamLocked(st.id, http2.ErrCodeStreamClosed)
		return nil
	}
	st.recvWin -= int(n)
	if st.recvWin < 0 {
		h.resetStreamLocked(st.id, http2.ErrCodeFlowControl)
		return nil
	}
	p := f.Data()
	st.dataLen += int64(len(p))
	if st.clen >= 0 && st.dataLen > st.clen {
		// More than the content-length said (RFC 9113 section 8.1.1):
		// never passed on, the server would read it as a request.
		h.resetStreamLocked(st.id, http2.ErrCodeProtocol)
		return nil
	}
	if !st.upGone && st.preset == nil {
		st.body = append(st.body, p...)
		st.owed += n
		if st.taken {
			st.cond.Signal()
		}
	}
	if f.StreamEnded() {
		h.requestEnded(st)
	}
	h.recount(st)
	return nil
}

// requestEnded is the end of st's request (END_STREAM). A body shorter
// than its content-length is malformed.
func (h *h2Conn) requestEnded(st *h2Stream) {
	st.recvDone = true
	if st.clen >= 0 && st.dataLen != st.clen {
		h.resetStreamLocked(st.id, http2.ErrCodeProtocol)
		return
	}
	st.cond.Signal()
	h.recount(st)
}

// recount keeps nClient, the streams that wait for the client: for more
// of a request it may send (its window is open), or for window to send
// their answer. While there are some, the client timeout bounds the
// connection's reads.
func (h *h2Conn) recount(st *h2Stream) {
	want := st.open && (!st.recvDone && st.recvWin > 0 && !st.upGone || st.blocked)
	if want == st.counted {
		return
	}
	st.counted = want
	if want {
		h.nClient++
		if h.nClient == 1 {
			h.rearmLocked()
		}
	} else {
		h.nClient--
	}
}

// start has st served by a goroutine: one that waits for work (its
// stack already grown), else a new one.
func (h *h2Conn) start(st *h2Stream) {
	st.started = true
	h.nRunning++
	if h.idleWorkers > len(h.work) {
		h.work = append(h.work, st)
		h.workCond.Signal()
		return
	}
	h.workersOff = false
	h.running.Add(1)
	go h.worker(st)
}

// cancelLocked ends st for the client's side: it leaves the streams, and
// its goroutine stops what it does (a wait in the queue, for window or
// body, or on its server) and ends it.
func (h *h2Conn) cancelLocked(st *h2Stream) {
	st.reset = true
	if st.open {
		delete(h.streams, st.id)
		st.open = false
	}
	h.recount(st)
	st.cond.Signal()
	if st.sc != nil {
		_ = st.sc.SetDeadline(aLongTimeAgo)
	}
	if st.cancelQ != nil {
		st.cancelQ()
	}
}

// finishLocked is the end of st's life: it leaves the streams, an answer
// that ended before its request gets RST_STREAM NO_ERROR (the rest is
// not wanted), and the connection notices it turned idle.
func (h *h2Conn) finishLocked(st *h2Stream) {
	st.finished = true
	if st.open {
		delete(h.streams, st.id)
		st.open = false
	}
	st.blocked = false
	h.recount(st)
	if st.status != 0 && !st.recvDone && !st.reset && !h.closed {
		_ = h.fr.WriteRSTStream(st.id, http2.ErrCodeNo)
	}
	if st.started {
		st.started = false
		h.nRunning--
	}
	if h.idleLocked() && !h.closed {
		h.idleAt = time.Now()
		if h.goneAway || h.peerGone || h.draining {
			h.wakeLocked()
		} else {
			h.rearmLocked()
		}
	}
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

// sent frames p as DATA of st, and counts it against the windows.
func (h *h2Conn) sent(st *h2Stream, p []byte, end bool) {
	_ = h.fr.WriteData(st.id, end, p)
	h.sendWin -= int64(len(p))
	st.sendWin -= int64(len(p))
	st.bytes += int64(len(p))
}

// appendH2Head appends the HTTP/1.1 head st's request is forwarded with:
// its fields as they came (an HTTP/2 request carries no
// connection-specific one: parse refuses them) but Host, Content-Length,
// TE and the X-Forwarded-* the proxy sets; cookies joined into one field
// (RFC 9113 section 8.2.3); then ours. The body's framing is st's:
// chunked (upChunked), its content-length, or none (CONNECT).
func appendH2Head(b []byte, st *h2Stream, bodyLen int, host, client string, forward bool) []byte {
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
		case "host", "content-length", "x-forwarded-host", "x-forwarded-proto", "proxy-authorization", "proxy-authenticate":
			continue
		case "trailer":
			if !st.upChunked {
				continue
			}
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
	case st.connect:
	case st.upChunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case st.streaming:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, st.clen, 10)
		b = append(b, "\r\n"...)
	case bodyLen > 0 || st.clen >= 0 || st.method == "POST" || st.method == "PUT" || st.method == "PATCH":
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(bodyLen), 10)
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

// appendChunk appends p as one chunk (none if p is empty).
func appendChunk(b, p []byte) []byte {
	if len(p) == 0 {
		return b
	}
	b = strconv.AppendInt(b, int64(len(p)), 16)
	b = append(b, "\r\n"...)
	b = append(b, p...)
	return append(b, "\r\n"...)
}

// appendLastChunk appends the last chunk and the trailer section of the
// request's trailers (their fields as they came, but those a trailer
// must not carry).
func appendLastChunk(b []byte, trailers []hpack.HeaderField) []byte {
	b = append(b, "0\r\n"...)
	for _, f := range trailers {
		switch f.Name {
		case "content-length", "transfer-encoding", "trailer", "host", "te", "connection", "keep-alive", "upgrade", "proxy-connection":
			continue
		}
		if !isToken(f.Name) || !fieldValue(f.Value) {
			continue
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The lean HTTP/2 loop serves an h2 connection (ALPN on a TLS bind;
// lean_http2: false hands it to net/http's server instead). The
// connection's goroutine reads frames; a stream is a record, and from the
// moment its request may go to a server, a goroutine serves it
// (h2exchange.go): takes the server (waiting in the maxconn queue if need
// be), writes the request (streaming its body as it comes), reads the
// answer and frames it. The connection's goroutine never waits for a
// server, so a slow server, a full queue or a server that does not read
// an upload holds up only its own stream. A stream's goroutine then
// serves the connection's next stream, its stack already grown, until the
// connection is idle past parkAfter.
//
// Frames are read in cycles: every whole frame the socket delivered is
// handled, then the requests that became complete get their goroutines,
// and what the cycle produced (SETTINGS and PING acks, WINDOW_UPDATEs,
// RST_STREAMs) is written. Answers are framed by their streams'
// goroutines into the same output buffer, which one goroutine at a time
// writes (flushLocked): what the others frame meanwhile goes out with its
// next write, so answers that arrive together share a TLS write instead
// of one each as with net/http's server.
//
// A connection with no stream open and nothing buffered for parkAfter
// gives its read buffer, its frame reader and its output buffers back: it
// then waits for the client's next byte in a one-byte array.
//
// Interim (1xx) answers, answer trailers and request trailers (the
// request then goes to the server chunked) are passed on. A plain CONNECT
// goes to the server as an HTTP/1.1 CONNECT; after a 2xx answer the
// stream is a tunnel both ways, each way bounded by the server timeout
// (extended CONNECT is not advertised). There is no per-stream
// http_request timeout: the preface must come within it, and the client
// timeout bounds every wait for the client.

const (
	// h2MaxStreams is the MAX_CONCURRENT_STREAMS advertised and enforced.
	h2MaxStreams = 100
	// h2MaxRunning bounds the streams' goroutines, those of streams the
	// client reset included (they end as soon as their server I/O is
	// interrupted): a stream past it is refused.
	h2MaxRunning = 2 * h2MaxStreams
	// h2Window is the initial window of streams and of the connection
	// (the protocol's default, so not sent).
	h2Window = 65535
	// h2MaxResets bounds the streams a client may reset within
	// h2ResetPeriod (CVE-2023-44487, rapid reset); more is a GOAWAY with
	// ENHANCE_YOUR_CALM.
	h2MaxResets   = 2 * h2MaxStreams
	h2ResetPeriod = time.Second
	// h2MaxControl bounds the control frames (SETTINGS and PING acks,
	// RST_STREAMs) one read cycle may queue: SETTINGS and PING floods.
	h2MaxControl = 1000
	// h2FlushAt is how much output the connection's goroutine handles
	// before it writes; and how much may wait while another goroutine
	// writes before a stream's goroutine waits for that write.
	h2FlushAt = 64 << 10
)

// h2Conn is a client connection of the lean HTTP/2 loop. The fields
// before mu are its goroutine's; mu guards the rest, which the streams'
// goroutines and Shutdown share with it.
type h2Conn struct {
	l        *Listen
	c        net.Conn
	client   string
	accepted time.Time
	// ctx ends when the connection does: dials and queue waits of its
	// streams.
	ctx    context.Context
	cancel context.CancelFunc

	src      h2Source
	br       *bufio.Reader // nil while idle
	rfr      *http2.Framer // reads from br; nil while idle
	dec      *hpack.Decoder
	ready    []*h2Stream // streams whose goroutine starts at the cycle's end
	recvUsed uint32      // DATA received this cycle: the WINDOW_UPDATE owed
	resets   int
	resetAt  time.Time
	controls int
	// bufsHeld: br and rfr are held (false while idle); for tests.
	bufsHeld atomic.Bool

	// streams wait here for their goroutines.
	running sync.WaitGroup

	mu       sync.Mutex
	out      h2Out // the output not yet written
	spare    []byte
	fr       *http2.Framer // writes to out
	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	ans      *ansHead          // the answer head being framed; nil while idle
	names    map[string]string // answer field names, lower-cased
	writing  bool              // a goroutine writes the output
	wrote    sync.Cond         // a write ended
	werr     error             // a write failed: the connection is done
	wdl      deadline          // the writer's
	streams  map[uint32]*h2Stream
	nRunning int    // streams' goroutines
	nClient  int    // streams waiting for the client (counted)
	lastID   uint32 // the highest stream the client opened
	sendWin  int64  // the connection's send window
	peerWin  int64  // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerMax  int    // the client's SETTINGS_MAX_FRAME_SIZE
	goneAway bool   // the last GOAWAY sent: no new stream
	// draining: Shutdown began; the first GOAWAY (the highest stream
	// id) and a PING went out, and the PING's ack brings the last GOAWAY.
	draining bool
	peerGone bool      // the client sent GOAWAY
	closed   bool      // the goroutine is ending: streams end at once
	idleAt   time.Time // when the last stream ended
	// reading: the goroutine waits for the client's bytes, with no frame
	// begun: a read deadline in the past then interrupts it safely.
	reading bool
	wakeReq bool // Shutdown began, or the connection may end
	rdl     deadline
	// Streams' goroutines waiting for the next stream (see worker).
	work        []*h2Stream
	workCond    sync.Cond
	idleWorkers int
	workersOff  bool // idle past parkAfter: waiting workers end
	// linger: a GOAWAY with an error went out; the connection lingers
	// before it closes.
	linger bool
}

// h2Out is the output waiting for its write: the framer writes here.
type h2Out struct{ b []byte }

func (o *h2Out) Write(p []byte) (int, error) {
	o.b = append(o.b, p...)
	return len(p), nil
}

// h2Source is what the reader reads: the byte an idle wait read, then
// the connection.
type h2Source struct {
	c   net.Conn
	one [1]byte
	n   int
}

func (s *h2Source) Read(p []byte) (int, error) {
	if s.n > 0 && len(p) > 0 {
		p[0], s.n = s.one[0], 0
		return 1, nil
	}
	return s.c.Read(p)
}

var h2Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10+9) }}

// serveH2 starts the lean HTTP/2 loop on c, whose client chose h2.
func (l *Listen) serveH2(c net.Conn, accepted time.Time) bool {
	h := &h2Conn{l: l, c: c, accepted: accepted, client: hostOf(c.RemoteAddr()),
		streams: map[uint32]*h2Stream{}, sendWin: h2Window, peerWin: h2Window, peerMax: 16384}
	h.src.c = c
	h.wrote.L = &h.mu
	h.workCond.L = &h.mu
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if !l.trackH2(h, true) {
		return false
	}
	go h.serve()
	return true
}

// takeBuffers gives the connection a reader and a frame reader.
func (h *h2Conn) takeBuffers() {
	br := h2Readers.Get().(*bufio.Reader)
	br.Reset(&h.src)
	h.br = br
	h.rfr = http2.NewFramer(nil, br)
	h.rfr.ReadMetaHeaders = h.dec
	h.rfr.MaxHeaderListSize = uint32(h.l.cfg.Limits.MaxHeaderBytes)
	h.rfr.SetReuseFrames()
	h.bufsHeld.Store(true)
}

// dropBuffers gives them back while the connection is idle, with the
// output buffers if no write is under way. Caller holds mu.
func (h *h2Conn) dropBuffersLocked() {
	if h.br != nil {
		h.br.Reset(nil)
		h2Readers.Put(h.br)
		h.br, h.rfr = nil, nil
	}
	if !h.writing && len(h.out.b) == 0 {
		// A new framer: the old one keeps the largest frame it wrote.
		h.out.b, h.spare = nil, nil
		h.fr = http2.NewFramer(&h.out, nil)
	}
	h.ans = nil
	h.workersOff = true
	h.workCond.Broadcast()
	h.bufsHeld.Store(false)
}

// serve is the connection's goroutine.
func (h *h2Conn) serve() {
	h.dec = hpack.NewDecoder(4096, nil)
	h.takeBuffers()
	defer h.teardown()
	h.mu.Lock()
	h.fr = http2.NewFramer(&h.out, nil)
	h.henc = hpack.NewEncoder(&h.hbuf)
	h.mu.Unlock()
	if err := h.preface(); err != nil {
		return
	}
	for {
		err := h.next()
		if err == errWoken {
			if !h.woken() {
				return
			}
			continue
		}
		var f http2.Frame
		if err == nil {
			f, err = h.rfr.ReadFrame()
		}
		h.mu.Lock()
		if err != nil {
			if !h.readFailedLocked(err) {
				h.mu.Unlock()
				return
			}
		} else if err := h.frame(f); err != nil {
			h.goAwayLocked(err)
			h.mu.Unlock()
			return
		}
		if h.wholeFrameBuffered() && len(h.out.b) < h2FlushAt {
			h.mu.Unlock()
			continue
		}
		ok := h.endCycleLocked()
		h.mu.Unlock()
		if !ok {
			return
		}
	}
}

// teardown ends the connection: its streams end, their goroutines are
// waited for, and the buffers go back.
func (h *h2Conn) teardown() {
	h.mu.Lock()
	h.closed = true
	for _, st := range h.streams {
		if st.status == 0 {
			st.status = 499
		}
		h.cancelLocked(st)
	}
	for _, st := range h.ready {
		if !st.finished {
			h.finishLocked(st)
		}
	}
	h.ready = nil
	h.workCond.Broadcast()
	lingers := h.linger
	h.mu.Unlock()
	h.cancel()
	if lingers {
		h.lingerRead()
	}
	h.c.Close()
	h.running.Wait()
	h.mu.Lock()
	h.dropBuffersLocked()
	h.mu.Unlock()
	h.l.trackH2(h, false)
}

var errWoken = errors.New("woken")

// next waits until the reader holds the next frame whole (or at least
// the reader's size of it), consuming nothing: a wait ended by a wake-up
// (errWoken) or by a deadline the streams' state no longer wants leaves
// no frame half read. While the connection is idle past parkAfter it
// waits without its buffers.
func (h *h2Conn) next() error {
	for {
		need := 9
		if h.br != nil {
			n := h.br.Buffered()
			if n >= 9 {
				p, _ := h.br.Peek(9)
				need = min(9+(int(p[0])<<16|int(p[1])<<8|int(p[2])), h.br.Size())
				if n >= need {
					return nil
				}
			}
		}
		h.mu.Lock()
		if h.wakeReq {
			h.wakeReq = false
			h.mu.Unlock()
			return errWoken
		}
		idle := h.idleLocked() && (h.br == nil || h.br.Buffered() == 0 && h.src.n == 0)
		if idle && h.br != nil && !time.Now().Before(h.idleAt.Add(parkAfter)) {
			h.dropBuffersLocked()
		}
		h.reading = true
		h.armReadLocked()
		h.mu.Unlock()
		var err error
		if h.br == nil {
			var n int
			n, err = h.c.Read(h.src.one[:])
			if n == 1 {
				h.src.n, err = 1, nil
				h.takeBuffers()
				h.mu.Lock()
				h.idleAt = time.Now() // the buffers are kept parkAfter again
				h.mu.Unlock()
			}
		} else {
			_, err = h.br.Peek(need)
		}
		h.mu.Lock()
		h.reading = false
		woke := h.wakeReq
		h.wakeReq = false
		retry := err != nil && isTimeout(err) && !woke && h.spuriousLocked()
		h.mu.Unlock()
		switch {
		case err == nil || retry:
		case woke && isTimeout(err):
			return errWoken
		default:
			return err
		}
	}
}

// idleLocked reports whether no stream is open or answering.
func (h *h2Conn) idleLocked() bool { return len(h.streams) == 0 && h.nRunning == 0 }

// armReadLocked sets the deadline of the goroutine's next read: client
// while a stream waits for the client (its request, or window for its
// answer), none while every stream waits for its server, else
// http_keep_alive from the last stream's end (parkAfter first, when the
// buffers are still held).
func (h *h2Conn) armReadLocked() {
	t := &h.l.cfg.Timeouts
	var want time.Time
	var slack time.Duration
	switch {
	case h.nClient > 0:
		want, slack = time.Now().Add(t.Client), slackOf(t.Client)
	case !h.idleLocked():
	default:
		want, slack = h.idleAt.Add(t.HTTPKeepAlive), slackOf(t.HTTPKeepAlive)
		if h.br != nil && parkAfter < t.HTTPKeepAlive {
			want, slack = h.idleAt.Add(parkAfter), slackOf(parkAfter)
		}
	}
	if at, ok := h.rdl.arm(want, slack); ok {
		_ = h.c.SetReadDeadline(at)
	}
}

// spuriousLocked reports whether a read deadline that passed is not a
// timeout of the client's: the streams' state changed since it was set
// (every stream now waits for its server), or it was the idle
// connection's parkAfter, whose buffers now go.
func (h *h2Conn) spuriousLocked() bool {
	switch {
	case h.nClient > 0:
		return false
	case !h.idleLocked():
		return true
	default:
		return time.Now().Before(h.idleAt.Add(h.l.cfg.Timeouts.HTTPKeepAlive))
	}
}

// wakeLocked interrupts the goroutine's wait for the client, if it waits;
// else it will see wakeReq before it waits.
func (h *h2Conn) wakeLocked() {
	h.wakeReq = true
	if h.reading {
		h.rdl.set(aLongTimeAgo)
		_ = h.c.SetReadDeadline(aLongTimeAgo)
	}
}

// rearmLocked moves the deadline of a wait under way when the streams'
// state changed what it should be (see armReadLocked).
func (h *h2Conn) rearmLocked() {
	if h.reading && !h.wakeReq {
		h.armReadLocked()
	}
}

// wake makes the goroutine notice Shutdown.
func (h *h2Conn) wake() {
	h.mu.Lock()
	h.wakeLocked()
	h.mu.Unlock()
}

// woken handles a wake-up: Shutdown began (GOAWAY), or the connection is
// done. It reports false when the connection is done.
func (h *h2Conn) woken() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.l.closing.Load() && !h.draining {
		h.startDrainLocked()
	}
	return h.endCycleLocked()
}

// preface reads the client's connection preface, sends our SETTINGS, and
// requires the client's first frame to be SETTINGS.
func (h *h2Conn) preface() error {
	to := h.l.cfg.Timeouts.HTTPRequest
	_ = h.c.SetReadDeadline(h.accepted.Add(to))
	h.rdl.set(h.accepted.Add(to))
	var p [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(h.br, p[:]); err != nil || string(p[:]) != http2.ClientPreface {
		return errors.New("no HTTP/2 preface")
	}
	h.mu.Lock()
	_ = h.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(h.l.cfg.Limits.MaxHeaderBytes)},
	)
	h.mu.Unlock()
	f, err := h.rfr.ReadFrame()
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.idleAt = time.Now()
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		h.goAwayLocked(http2.ConnectionError(http2.ErrCodeProtocol))
		return errors.New("first frame not SETTINGS")
	}
	if err := h.frame(f); err != nil {
		h.goAwayLocked(err)
		return err
	}
	if !h.endCycleLocked() {
		return errors.New("write failed")
	}
	return nil
}

// wholeFrameBuffered reports whether the reader holds a whole frame: the
// cycle ends when the next read would wait.
func (h *h2Conn) wholeFrameBuffered() bool {
	n := h.br.Buffered()
	if n < 9 {
		return false
	}
	p, _ := h.br.Peek(9)
	return n >= 9+(int(p[0])<<16|int(p[1])<<8|int(p[2]))
}

// readFailedLocked handles an error of a read; it reports whether the
// connection goes on.
func (h *h2Conn) readFailedLocked(err error) bool {
	var se http2.StreamError
	if errors.As(err, &se) {
		h.resetStreamLocked(se.StreamID, se.Code)
		return true
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		h.goAwayLocked(ce)
		return false
	}
	if errors.Is(err, http2.ErrFrameTooLarge) {
		h.goAwayCodeLocked(http2.ErrCodeFrameSize)
		return false
	}
	if isTimeout(err) && h.idleLocked() && !h.goneAway {
		// Idle past http_keep_alive.
		h.goAwayCodeLocked(http2.ErrCodeNo)
	}
	return false
}

// frame handles one frame; an error ends the connection with a GOAWAY.
func (h *h2Conn) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return h.headers(f)
	case *http2.DataFrame:
		return h.data(f)
	case *http2.SettingsFrame:
		return h.settings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			if f.Data == drainPing && h.draining && !h.goneAway {
				h.goAwayGracefulLocked()
			}
			return nil
		}
		if err := h.control(); err != nil {
			return err
		}
		return h.fr.WritePing(true, f.Data)
	case *http2.WindowUpdateFrame:
		return h.windowUpdate(f)
	case *http2.RSTStreamFrame:
		return h.clientReset(f.StreamID)
	case *http2.GoAwayFrame:
		h.peerGone = true
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // PRIORITY, unknown frame types: ignored
}

// control counts a control frame queued in this cycle.
func (h *h2Conn) control() error {
	h.controls++
	if h.controls > h2MaxControl {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

func (h *h2Conn) settings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	if err := h.control(); err != nil {
		return err
	}
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - h.peerWin
			h.peerWin = int64(s.Val)
			for _, st := range h.streams {
				st.sendWin += delta
				if st.sendWin > 1<<31-1 {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
				if delta > 0 {
					st.cond.Signal()
				}
			}
		case http2.SettingMaxFrameSize:
			h.peerMax = int(s.Val)
		case http2.SettingHeaderTableSize:
			h.henc.SetMaxDynamicTableSizeLimit(s.Val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return h.fr.WriteSettingsAck()
}

func (h *h2Conn) windowUpdate(f *http2.WindowUpdateFrame) error {
	if f.StreamID == 0 {
		h.sendWin += int64(f.Increment)
		if h.sendWin > 1<<31-1 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		for _, st := range h.streams {
			if st.blocked {
				st.cond.Signal()
			}
		}
		return nil
	}
	st := h.streams[f.StreamID]
	if st == nil {
		if f.StreamID > h.lastID {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil // a stream already closed
	}
	st.sendWin += int64(f.Increment)
	if st.sendWin > 1<<31-1 {
		h.resetStreamLocked(st.id, http2.ErrCodeFlowControl)
		return nil
	}
	st.cond.Signal()
	return nil
}

// clientReset is a RST_STREAM from the client: its stream ends, and what
// was under way for it is dropped. Too many within h2ResetPeriod end the
// connection (rapid reset).
func (h *h2Conn) clientReset(id uint32) error {
	if id > h.lastID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	now := time.Now()
	if now.Sub(h.resetAt) > h2ResetPeriod {
		h.resetAt, h.resets = now, 0
	}
	h.resets++
	if h.resets > h2MaxResets {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	if st := h.streams[id]; st != nil {
		if st.status == 0 {
			st.status = 499
		}
		h.cancelLocked(st)
	}
	return nil
}

// resetStreamLocked ends a stream with RST_STREAM code.
func (h *h2Conn) resetStreamLocked(id uint32, code http2.ErrCode) {
	if h.control() != nil {
		return
	}
	_ = h.fr.WriteRSTStream(id, code)
	if st := h.streams[id]; st != nil {
		h.cancelLocked(st)
	}
}

// goAwayLocked sends a GOAWAY for err (a ConnectionError; else
// INTERNAL_ERROR) and writes what is pending, before the connection
// closes.
func (h *h2Conn) goAwayLocked(err error) {
	code := http2.ErrCodeInternal
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		code = http2.ErrCode(ce)
	}
	h.goAwayCodeLocked(code)
}

func (h *h2Conn) goAwayCodeLocked(code http2.ErrCode) {
	h.goneAway = true
	h.linger = true
	_ = h.fr.WriteGoAway(h.lastID, code, nil)
	h.flushLocked()
}

// lingerRead ends the connection's writing, then reads and drops what the
// client still sends, up to a second (and 1 MiB), before the connection
// closes: closed with unread bytes, the socket would send a TCP reset,
// which can destroy the GOAWAY before the client reads it (a flooding
// client always has bytes in flight). x/net's server waits a second too.
func (h *h2Conn) lingerRead() {
	if cw, ok := h.c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = h.c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.CopyN(io.Discard, h.c, 1<<20)
}

// drainPing is the payload of the PING sent with the first GOAWAY.
var drainPing = [8]byte{'d', 'r', 'a', 'i', 'n', 'i', 'n', 'g'}

// startDrainLocked begins a graceful shutdown as RFC 9113 section 6.8
// advises: a GOAWAY with the highest stream id, so that streams the
// client is sending meanwhile are still served, and a PING; its ack, a
// round trip later, brings the GOAWAY with the last stream served
// (goAwayGracefulLocked).
func (h *h2Conn) startDrainLocked() {
	h.draining = true
	_ = h.fr.WriteGoAway(1<<31-1, http2.ErrCodeNo, nil)
	_ = h.fr.WritePing(false, drainPing)
}

// goAwayGracefulLocked tells the client no new stream will be served;
// those it opened finish.
func (h *h2Conn) goAwayGracefulLocked() {
	h.goneAway = true
	_ = h.fr.WriteGoAway(h.lastID, http2.ErrCodeNo, nil)
}

// endCycleLocked ends a read cycle: the streams whose request may go to
// a server get their goroutines, the connection's window is given back,
// and the output is written. It reports false when the connection is
// done.
func (h *h2Conn) endCycleLocked() bool {
	if h.l.closing.Load() && !h.draining {
		h.startDrainLocked()
	}
	for i, st := range h.ready {
		h.ready[i] = nil
		if st.finished {
			continue
		}
		h.start(st) // reset meanwhile, it only ends (a 499 line, as net/http's)
	}
	h.ready = h.ready[:0]
	if h.recvUsed > 0 {
		_ = h.fr.WriteWindowUpdate(0, h.recvUsed)
		h.recvUsed = 0
	}
	h.controls = 0
	if h.draining && !h.goneAway && h.idleLocked() {
		// Nothing in flight: the last GOAWAY need not wait for the PING.
		h.goAwayGracefulLocked()
	}
	h.flushLocked()
	if h.werr != nil {
		return false
	}
	return !((h.goneAway || h.peerGone) && h.idleLocked())
}

// flushLocked writes the output, unless another goroutine is writing it
// (what was added goes out with its next write). A goroutine that finds
// h2FlushAt waiting for a write under way waits for it first. Caller
// holds mu, which is released during the write.
func (h *h2Conn) flushLocked() {
	for h.writing && len(h.out.b) >= h2FlushAt && h.werr == nil {
		h.wrote.Wait()
	}
	if h.werr != nil {
		h.out.b = h.out.b[:0]
		return
	}
	if h.writing || len(h.out.b) == 0 {
		return
	}
	h.writing = true
	// The goroutines the same poll made runnable (other streams whose
	// server answered) frame their answers first: one write for all.
	h.mu.Unlock()
	runtime.Gosched()
	h.mu.Lock()
	for len(h.out.b) > 0 && h.werr == nil {
		b := h.out.b
		h.out.b = h.spare[:0]
		h.spare = nil
		h.mu.Unlock()
		to := h.l.cfg.Timeouts.Client
		if at, ok := h.wdl.arm(time.Now().Add(to), slackOf(to)); ok {
			_ = h.c.SetWriteDeadline(at)
		}
		_, err := h.c.Write(b)
		h.mu.Lock()
		if cap(b) <= 4*h2FlushAt {
			h.spare = b[:0]
		}
		if err != nil {
			h.werr = err
			h.out.b = h.out.b[:0]
			// The goroutine's read ends, and with it the connection.
			_ = h.c.SetReadDeadline(aLongTimeAgo)
			h.wakeReq = true
		}
	}
	h.writing = false
	h.wrote.Broadcast()
}

// close closes the connection from outside its goroutine (Shutdown past
// its deadline); the goroutine then ends.
func (h *h2Conn) close() { h.c.Close() }

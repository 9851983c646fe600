package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The lean HTTP/2 loop serves an h2 connection (ALPN on a TLS bind, when
// the listen has lean_http2) instead of net/http's server: one goroutine
// per connection, which reads frames; streams are records in a map, not
// goroutines. Frames are read in cycles: every whole frame the socket
// delivered is handled, then the requests that became complete are sent to
// their servers (all heads first, over the lean loop's pooled keep-alive
// connections), their answers read in turn and framed as HEADERS and DATA,
// and everything the cycle produced (answers, SETTINGS and PING acks,
// WINDOW_UPDATEs) goes out in one write: net/http's server spent a
// goroutine, channel hand-offs and a TLS record per answer.
//
// A server that does not answer (or send more of its answer) within
// h2Patience is waited for by a goroutine of that stream's own (wait),
// which wakes the connection's goroutine when the bytes come: a slow
// answer, a long poll or an event stream does not hold the other streams
// up. A request that waits in the maxconn queue does hold the connection
// (up to the queue timeout) when none of its streams holds a server;
// else it waits for a later cycle, outside the queue.
//
// A request body that arrives with its head (in the same cycle) goes to
// the server with it, with a Content-Length; one that comes later is
// streamed to the server as it comes (chunked, if the client gave no
// content-length), the stream's window given back as it is written: a
// server that stops reading it holds the connection up to the server
// timeout. Its answer is awaited once the body ended.
//
// Interim (1xx) answers and the trailers of chunked answers are passed
// on. What it does not do: request trailers are dropped; CONNECT gets 501
// (extended CONNECT is not advertised). It is an option (lean_http2),
// off by default until it has served real traffic.

const (
	// h2MaxStreams is the MAX_CONCURRENT_STREAMS advertised and enforced.
	h2MaxStreams = 100
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
	// h2FlushAt is how much output is written before the cycle ends.
	h2FlushAt = 64 << 10
)

// h2Conn is a client connection of the lean HTTP/2 loop. Its fields are
// its goroutine's, but for mu's.
type h2Conn struct {
	l        *Listen
	c        net.Conn
	client   string
	accepted time.Time
	br       *bufio.Reader
	out      h2Out
	fr       *http2.Framer
	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	names    map[string]string // answer field names, lower-cased
	streams  map[uint32]*h2Stream
	ready    []*h2Stream // requests to send this cycle
	bodyDone []*h2Stream // uploads that ended this cycle: answers to await
	upBuf    []byte      // a chunk of an upload on its way
	sending  []*h2Stream // answers whose body waits for the client's window
	lastID   uint32      // the highest stream the client opened
	sendWin  int64       // the connection's send window
	recvUsed uint32      // DATA received this cycle: the WINDOW_UPDATE owed
	peerWin  int64       // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerMax  int         // the client's SETTINGS_MAX_FRAME_SIZE
	resets   int
	resetAt  time.Time
	controls int
	goneAway bool // the last GOAWAY sent: no new stream
	// draining: Shutdown began; the first GOAWAY (the highest stream
	// id) and a PING went out, and the PING's ack brings the last GOAWAY.
	draining bool
	peerGone bool // the client sent GOAWAY
	rdl, wdl deadline
	scratch  []byte
	ans      *ansHead // the answer head being read
	nWaiting int      // streams a waiter waits for
	nHeld    int      // streams holding a server (maxconn)

	// waiters are the goroutines that wait for a slow server (see wait).
	waiters sync.WaitGroup

	// mu guards the fields below, which waiters and Shutdown share with
	// the goroutine, and orders their wake-ups with its read deadlines.
	mu sync.Mutex
	// atBoundary: the goroutine waits for the client's next frame, with
	// none begun: a read deadline in the past then interrupts it safely.
	atBoundary bool
	// wakeReq: a waiter's stream can go on, or Shutdown began.
	wakeReq bool
	woken   []*h2Stream // streams whose server wrote (or failed)
}

// h2Out is the output of a cycle: the framer writes here.
type h2Out struct{ b []byte }

func (o *h2Out) Write(p []byte) (int, error) {
	o.b = append(o.b, p...)
	return len(p), nil
}

var h2Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10+9) }}

// serveH2 starts the lean HTTP/2 loop on c, whose client chose h2.
func (l *Listen) serveH2(c net.Conn, accepted time.Time) bool {
	h := &h2Conn{l: l, c: c, accepted: accepted, client: hostOf(c.RemoteAddr()),
		streams: map[uint32]*h2Stream{}, sendWin: h2Window, peerWin: h2Window, peerMax: 16384}
	if !l.trackH2(h, true) {
		return false
	}
	go h.serve()
	return true
}

// serve is the connection's goroutine.
func (h *h2Conn) serve() {
	br := h2Readers.Get().(*bufio.Reader)
	br.Reset(h.c)
	h.br = br
	defer func() {
		h.closeStreams() // closes the server connections waiters wait on
		h.c.Close()
		h.waiters.Wait()
		br.Reset(nil)
		h2Readers.Put(br)
		h.l.trackH2(h, false)
	}()
	h.fr = http2.NewFramer(&h.out, br)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.MaxHeaderListSize = uint32(h.l.cfg.Limits.MaxHeaderBytes)
	h.fr.SetReuseFrames()
	h.henc = hpack.NewEncoder(&h.hbuf)
	if err := h.preface(); err != nil {
		return
	}
	for {
		if !h.armRead() {
			return
		}
		err := h.fillFrame()
		if err == errWoken {
			if !h.cycle() {
				return
			}
			continue
		}
		var f http2.Frame
		if err == nil {
			f, err = h.fr.ReadFrame()
		}
		if err != nil {
			if !h.readFailed(err) {
				return
			}
		} else if err := h.frame(f); err != nil {
			h.goAway(err)
			return
		}
		if h.wholeFrameBuffered() && len(h.out.b) < h2FlushAt {
			continue
		}
		if !h.cycle() {
			return
		}
	}
}

var errWoken = errors.New("woken")

// fillFrame waits until the reader holds the next frame whole (or at
// least the reader's size of it), consuming nothing: a wait ended by a
// waiter or by Shutdown (errWoken) leaves no frame half read.
func (h *h2Conn) fillFrame() error {
	for {
		n, need := h.br.Buffered(), 9
		if n >= 9 {
			p, _ := h.br.Peek(9)
			need = min(9+(int(p[0])<<16|int(p[1])<<8|int(p[2])), h.br.Size())
			if n >= need {
				return nil
			}
		}
		h.mu.Lock()
		if h.wakeReq {
			h.wakeReq = false
			h.mu.Unlock()
			return errWoken
		}
		h.atBoundary = true
		h.mu.Unlock()
		_, err := h.br.Peek(need)
		h.mu.Lock()
		h.atBoundary = false
		woke := h.wakeReq
		if woke {
			h.wakeReq = false
		}
		h.mu.Unlock()
		if err != nil {
			if woke && isTimeout(err) {
				return errWoken
			}
			return err
		}
	}
}

// wakeLocked interrupts the goroutine's wait for a frame, if it waits for
// one; else it will see wakeReq before it waits.
func (h *h2Conn) wakeLocked() {
	h.wakeReq = true
	if h.atBoundary {
		h.rdl.set(aLongTimeAgo)
		_ = h.c.SetReadDeadline(aLongTimeAgo)
	}
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
	_ = h.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(h.l.cfg.Limits.MaxHeaderBytes)},
	)
	f, err := h.fr.ReadFrame()
	if err != nil {
		return err
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		h.goAway(http2.ConnectionError(http2.ErrCodeProtocol))
		return errors.New("first frame not SETTINGS")
	}
	if err := h.frame(f); err != nil {
		h.goAway(err)
		return err
	}
	if !h.cycle() {
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

// armRead sets the deadline of the next read: http_keep_alive while no
// stream is open, client while one is; once Shutdown began, the past
// (a GOAWAY is sent, then streams in flight finish). It reports false
// when the connection is done.
func (h *h2Conn) armRead() bool {
	if h.l.closing.Load() && !h.draining {
		h.startDrain()
		if !h.flushNow() {
			return false
		}
	}
	if (h.goneAway || h.peerGone) && len(h.streams) == 0 {
		return false
	}
	t := &h.l.cfg.Timeouts
	to := t.HTTPKeepAlive
	switch {
	case len(h.streams) > h.nWaiting+len(h.ready):
		to = t.Client
	case h.nWaiting+len(h.ready) > 0:
		to = 0 // every stream waits for its server (server timeout) or for one (queue)
	}
	want := time.Time{}
	if to > 0 {
		want = time.Now().Add(to)
	}
	h.mu.Lock()
	if at, ok := h.rdl.arm(want, slackOf(to)); ok {
		_ = h.c.SetReadDeadline(at)
	}
	h.mu.Unlock()
	return true
}

// wake makes the goroutine notice Shutdown.
func (h *h2Conn) wake() {
	h.mu.Lock()
	h.wakeLocked()
	h.mu.Unlock()
}

// readFailed handles an error of ReadFrame; it reports whether the
// connection goes on.
func (h *h2Conn) readFailed(err error) bool {
	var se http2.StreamError
	if errors.As(err, &se) {
		h.resetStream(se.StreamID, se.Code)
		return true
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		h.goAway(ce)
		return false
	}
	if errors.Is(err, http2.ErrFrameTooLarge) {
		h.goAwayCode(http2.ErrCodeFrameSize)
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && len(h.streams) == 0 && !h.goneAway {
		// Idle past http_keep_alive.
		h.goAwayCode(http2.ErrCodeNo)
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
				h.goAwayGraceful()
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
		h.resetStream(st.id, http2.ErrCodeFlowControl)
	}
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
		st.reset = true
		h.endStream(st, false)
	}
	return nil
}

// resetStream ends a stream with RST_STREAM code.
func (h *h2Conn) resetStream(id uint32, code http2.ErrCode) {
	if h.control() != nil {
		return
	}
	_ = h.fr.WriteRSTStream(id, code)
	if st := h.streams[id]; st != nil {
		st.reset = true
		h.endStream(st, false)
	}
}

// goAway sends a GOAWAY for err (a ConnectionError; else INTERNAL_ERROR)
// and writes what is pending, before the connection closes.
func (h *h2Conn) goAway(err error) {
	code := http2.ErrCodeInternal
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		code = http2.ErrCode(ce)
	}
	h.goAwayCode(code)
}

func (h *h2Conn) goAwayCode(code http2.ErrCode) {
	h.goneAway = true
	_ = h.fr.WriteGoAway(h.lastID, code, nil)
	if h.flushNow() {
		h.linger()
	}
}

// linger ends the connection's writing, then reads and drops what the
// client still sends, up to a second (and 1 MiB), before the connection
// closes: closed with unread bytes, the socket would send a TCP reset,
// which can destroy the GOAWAY before the client reads it (a flooding
// client always has bytes in flight). x/net's server waits a second too.
func (h *h2Conn) linger() {
	if cw, ok := h.c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = h.c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.CopyN(io.Discard, h.c, 1<<20)
}

// drainPing is the payload of the PING sent with the first GOAWAY.
var drainPing = [8]byte{'d', 'r', 'a', 'i', 'n', 'i', 'n', 'g'}

// startDrain begins a graceful shutdown as RFC 9113 section 6.8 advises:
// a GOAWAY with the highest stream id, so that streams the client is
// sending meanwhile are still served, and a PING; its ack, a round trip
// later, brings the GOAWAY with the last stream served (goAwayGraceful).
func (h *h2Conn) startDrain() {
	h.draining = true
	_ = h.fr.WriteGoAway(1<<31-1, http2.ErrCodeNo, nil)
	_ = h.fr.WritePing(false, drainPing)
}

// goAwayGraceful tells the client no new stream will be served; those it
// opened finish.
func (h *h2Conn) goAwayGraceful() {
	h.goneAway = true
	_ = h.fr.WriteGoAway(h.lastID, http2.ErrCodeNo, nil)
}

// cycle ends a read cycle: the requests that became complete are
// forwarded and answered, answers waiting for window go on, and all the
// output is written at once. It reports false when the connection is
// done.
func (h *h2Conn) cycle() bool {
	h.mu.Lock()
	woken := h.woken
	h.woken = nil
	h.mu.Unlock()
	for _, st := range woken {
		h.resume(st)
	}
	for i, st := range h.bodyDone {
		if !st.done {
			h.receive(st)
			h.carryOn(st)
		}
		h.bodyDone[i] = nil
	}
	h.bodyDone = h.bodyDone[:0]
	if len(h.ready) > 0 {
		h.forwardReady()
	}
	for i := 0; i < len(h.sending); i++ {
		st := h.sending[i]
		if h.sendWin <= 0 {
			break
		}
		if st.sendWin > 0 && !st.done && !st.waiting {
			h.pump(st)
		}
	}
	h.sending = compact(h.sending)
	if h.recvUsed > 0 {
		_ = h.fr.WriteWindowUpdate(0, h.recvUsed)
		h.recvUsed = 0
	}
	h.controls = 0
	return h.flushNow()
}

// compact drops the finished streams of ss, keeping its order.
func compact(ss []*h2Stream) []*h2Stream {
	n := 0
	for _, st := range ss {
		if !st.done {
			ss[n] = st
			n++
		}
	}
	clear(ss[n:])
	return ss[:n]
}

// flushNow writes the output, bounded by the client timeout.
func (h *h2Conn) flushNow() bool {
	if len(h.out.b) == 0 {
		return true
	}
	to := h.l.cfg.Timeouts.Client
	if at, ok := h.wdl.arm(time.Now().Add(to), slackOf(to)); ok {
		_ = h.c.SetWriteDeadline(at)
	}
	_, err := h.c.Write(h.out.b)
	if cap(h.out.b) > 4*h2FlushAt {
		h.out.b = nil
	} else {
		h.out.b = h.out.b[:0]
	}
	return err == nil
}

// closeStreams ends the streams left when the connection closes.
func (h *h2Conn) closeStreams() {
	for _, st := range h.streams {
		if st.status == 0 {
			st.status = 499
		}
		h.endStream(st, false)
	}
	h.ready, h.sending = nil, nil
}

// close closes the connection from outside its goroutine (Shutdown past
// its deadline); the goroutine then ends.
func (h *h2Conn) close() { h.c.Close() }

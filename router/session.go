package router

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/internal/rawsock"
	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/rules"
	"github.com/pgswitch/pgswitch/router/track"
	"github.com/pgswitch/pgswitch/wire"
)

// batchFlushAt bounds what a session reads from its client before it sends
// it on, e.g. during a large COPY FROM STDIN.
const batchFlushAt = 64 << 10

// outBufs lend sessions their server-bound buffers between batches.
var outBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// batch is what a session read from its client before sending it on, and
// what sending it learned. It lives from one read that empties the
// client's buffer to the next.
type batch struct {
	buf   []byte     // the client's messages, as sent
	msgs  []span     // where they lie in buf
	out   *[]byte    // what goes to cur, in the order of the requests pushed
	local []byte     // answers pgswitch owes the client while no server is linked
	units int        // units of work begun
	at    int        // the message being sent, in msgs
	used  []usedStmt // named statements run (a stale plan renews them)
	added []string   // client names its Parses added (a retry adds them again)
	retry retryState // whether its unit may run again, and how
}

// span is one client message of a batch: its type and where it lies.
type span struct {
	typ        byte
	start, end int
}

// phase is where a session stands between units of work.
type phase uint8

const (
	// idle: no server connection is linked; the session is the client's
	// writer and answers what needs no server itself.
	idle phase = iota
	// leased: a server connection is linked for the units in flight; its
	// pump is the client's writer.
	leased
	// skipping: pgswitch answered an extended-protocol message with an
	// error and no server is linked; the client's messages are discarded
	// up to Sync, as PostgreSQL would.
	skipping
)

// Session is one logged-in client. Its goroutine (run) is the only reader
// of the client connection, the only writer of the linked server
// connection, and the client's writer while no server connection is linked
// (phase idle or skipping).
type Session struct {
	r     *Router
	cfg   *config.Config // as of login, or of the last unit (reload)
	db    *config.Database
	user  *config.User
	mode  config.PoolMode
	names *clientNames // from the startup packet
	key   wire.CancelKey

	busy   *busyState   // what the session keeps while active; nil while it parks
	client *pool.Client // the client's output
	in     clientReader
	dbs    *dbState
	state  *track.Client // what the client asked for: settings, statements, pins

	cur    *pool.Conn                // linked server connection (phase leased)
	curT   *track.Server             // its record
	server atomic.Pointer[pool.Conn] // cur, for cancel requests from other goroutines
	// The flags sit together, without padding between them: Session fits
	// the 768-byte size class (10,000 idle clients hold 10,000 of them).
	curRead bool // cur is a replica serving reads
	held    bool // cur is held for the batch being sent
	phase   phase
	extOpen bool // extended-protocol messages since the last Sync
	copyIn  bool // a simple Query's COPY FROM STDIN takes the client's data now
	txnOpen bool // cur's transaction is open after what was sent, as its statements say
	wrote   bool // a unit that may write went to cur since the last Mark (routing.consistency)
	// idleTimed: the client's read deadline is set for an idle limit.
	idleTimed bool
	owed      bool // serveClient: cur's pump writes the client an answer to the batch just sent
	watching  bool // serveClient: Serve waits for the client in parkWaiting
	eof       bool // the client sends nothing more: its stream ended, or it sent Terminate (linger)

	b batch // the messages being sent, and what sending them learned

	unnamed unnamedStmt // the client's unnamed statement (transaction mode)
	portal  portalInfo  // what the unnamed portal runs
	portals map[string]portalInfo
	// sessionStmts: in session mode, what the client's statements with
	// tracked effects run, by the client's name.
	sessionStmts map[string]portalInfo
	after        afterSync      // what pgswitch sends after the client's next Sync
	renewed      map[string]int // statements whose plans went stale: base server name → generation
	loadFn       func(*config.Server) int
	pend         <-chan track.Outcome // the outcome of the batch's guarded unit, not yet taken (settle)

	rule  *rules.Action // the routing rule that matched the unit being routed, if any
	route *routeCount   // the SHOW ROUTES line the last unit counted on (routed)

	// Read-your-writes (routing.consistency).
	needLSN    int64                     // how far a replica must have replayed for the unit being routed
	caughtUpFn func(*config.Server) bool // s.caughtUp, made once

	queue  queueWait // the session's wait for a server connection
	kicked atomic.Pointer[wire.Error]
	done   chan struct{} // closed when the session has ended and is unregistered

	// Parking (park_linux.go).
	conn      net.Conn      // the client connection, for a reader made anew after parking
	seen      atomic.Uint64 // the parker's generation when the session last handled a batch
	parkMu    sync.Mutex
	parkState int32  // guarded by parkMu
	parkFD    int32  // while parked: the descriptor in the epoll set
	parkID    uint64 // while parked: the session's key in the parker
	// finish ends a session that parked: what its first goroutine would
	// have done on leaving (unregister, close, count out).
	finish func()
}

// clientNames are the startup parameters a session needs after login; the
// rest of the startup packet (a map of a few hundred bytes) is let go, as
// every idle client holds a session.
type clientNames struct {
	user, database, app string
}

func newSession(r *Router, conn net.Conn, cfg *config.Config, db *config.Database, u *config.User, startup map[string]string) *Session {
	s := &Session{
		r:      r,
		cfg:    cfg,
		db:     db,
		user:   u,
		mode:   cfg.PoolModeFor(db, u),
		names:  &clientNames{user: startup["user"], database: startup["database"], app: startup["application_name"]},
		client: pool.NewClient(conn),
		conn:   conn,
		in:     newClientReader(conn),
		dbs:    r.database(db.Name),
		state:  track.NewClient(r.sets.share(startupSets(startup))),
		done:   make(chan struct{}),
	}
	s.loadFn = s.load
	s.caughtUpFn = s.caughtUp
	return s
}

// serve runs the session until the client leaves, or until it parks
// (true): then its goroutine is given up, and resume carries on in another.
func (s *Session) serve() (parked bool) {
	if s.run() {
		return true
	}
	s.linger()
	s.end()
	return false
}

// linger lets a client that ended its stream (a half-close, or a close
// without Terminate) or sent Terminate behind its queries have the answers
// to what it sent before, as PostgreSQL would: it runs what it has read to
// the end. It waits for no open transaction to end, only for the answers
// owed. A COPY whose data stopped fails (CopyFail), as PostgreSQL fails it
// at the end of the stream, so that the connection serves on. A kick ends
// the wait (kick kills the server connection then).
func (s *Session) linger() {
	if !s.eof {
		return
	}
	s.settleWait() // a refused read runs again on the primary
	c := s.cur
	if c == nil {
		return
	}
	s.parkMu.Lock()
	if s.kicked.Load() != nil {
		s.parkMu.Unlock()
		return
	}
	s.parkState = parkLingering
	s.parkMu.Unlock()
	if c.WaitAnswered(s.client) && c.Claim(s.client, 'f') == nil {
		if c.Write(copyFailEOF) == nil {
			c.WaitAnswered(s.client)
		}
	}
	s.parkMu.Lock()
	s.parkState = parkBusy
	s.parkMu.Unlock()
}

// copyFailEOF fails the COPY of a client that ended its stream.
var copyFailEOF, _ = (&pgproto3.CopyFail{Message: "unexpected EOF on client connection"}).Encode(nil)

// resume carries on a session that parked, in a goroutine of its own, when
// its client wrote (or it was kicked).
func (s *Session) resume() {
	defer s.r.wg.Done()
	s.in = newClientReader(s.conn)
	if s.kicked.Load() != nil {
		s.conn.SetReadDeadline(time.Unix(1, 0))
	}
	if s.serve() {
		return
	}
	s.finish()
}

// run reads the client's messages until it leaves (or parks: true), and
// sends them on in batches: what the client wrote before waiting for an
// answer. A plain socket's messages are read inside rawsock's Serve
// (serveClient), others' with waits.
func (s *Session) run() (parked bool) {
	maxMsg := s.cfg.Limits.MaxMessageSize
	raw := rawsock.Of(s.conn)
	for {
		if raw != nil && !s.idleLimited() {
			if end, park := s.serveClient(raw, maxMsg); end {
				return park
			}
		}
		if end, park := s.readMessage(maxMsg); end {
			return park
		}
	}
}

// readMessage waits for the client's next message and takes it (take);
// end: the session ended, or parked (park).
func (s *Session) readMessage(maxMsg int) (end, park bool) {
	idle, park, err := s.waitMessage()
	if park {
		return true, true
	}
	if idle != nil {
		s.idleOut(idle)
		return true, false
	}
	if err != nil {
		s.readFailed(err)
		return true, false
	}
	// The client wrote before its answer began (it pipelines): the batch
	// before waits for how its unit came out.
	s.settleWait()
	h, err := s.in.next(maxMsg)
	if err != nil {
		s.readFailed(err)
		return true, false
	}
	return !s.take(h), false
}

// take adds the client's message whose header is h to the batch (taken);
// false: the session ends.
func (s *Session) take(h wire.Header) bool {
	if !s.admit(h) {
		return false
	}
	start := len(s.b.buf)
	var err error
	if s.b.buf, err = s.in.appendMessage(s.b.buf, h); err != nil {
		s.readFailed(err)
		return false
	}
	s.b.msgs = append(s.b.msgs, span{typ: h.Type, start: start, end: len(s.b.buf)})
	s.taken()
	return true
}

// admit checks the type of the client's message whose header is h; false:
// the session ends (Terminate, or a type no client sends).
func (s *Session) admit(h wire.Header) bool {
	switch h.Type {
	case 'X':
		s.sendBatch()
		s.eof = true // what came before it is answered first, as PostgreSQL does
		return false
	case 'Q', 'P', 'B', 'D', 'E', 'C', 'S', 'H', 'F', 'd', 'c', 'f':
		return true
	}
	s.sendBatch()
	s.fatal(wire.Fatalf(wire.CodeProtocolViolation, "invalid frontend message type %d", h.Type))
	return false
}

// taken sends the batch, whose last message is whole, when the client has
// nothing more buffered or the batch is large.
func (s *Session) taken() {
	if s.in.buffered() == 0 || len(s.b.buf) >= batchFlushAt {
		s.sendBatch()
	}
}

// sendBatch sends the messages read since the last batch: each is handed
// to the server connection of its unit of work, renamed, prepared for, or
// answered by pgswitch; then the server-bound bytes are written at once.
func (s *Session) sendBatch() {
	if len(s.b.msgs) == 0 {
		return
	}
	s.b.units = 0
	s.b.retry = retryState{}
	for i, m := range s.b.msgs {
		s.b.at = i
		if s.kicked.Load() != nil {
			break // the session is ending: nothing more goes to servers
		}
		var err error
		if s.mode == config.PoolModeTransaction {
			err = s.handle(m)
		} else {
			err = s.handleSession(m)
		}
		if err != nil {
			break // the server connection was lost: its pump told the client
		}
	}
	outcome, deferred := s.write()
	if deferred {
		return // kept until its unit's outcome is known (settle)
	}
	s.batchDone(outcome)
}

// batchDone ends the batch just sent, whose guarded unit (if any) came out
// as outcome: a refused one runs again.
func (s *Session) batchDone(outcome track.Outcome) {
	if outcome == track.Refused || outcome == track.Stale || outcome == track.Behind {
		s.rerun(outcome)
	}
	s.b.buf = s.b.buf[:0]
	s.b.msgs = s.b.msgs[:0]
	s.b.used = s.b.used[:0]
	s.b.added = s.b.added[:0]
	if cap(s.b.buf) > 4*batchFlushAt {
		s.b.buf = nil
	}
}

// write writes what the batch owes: its server-bound bytes to cur, or
// pgswitch's own answers to the client when no server is linked. A unit
// that may run again elsewhere is guarded: its answer is held back until
// it is known to pass. The session then goes on reading its client and
// looks at the outcome when the client writes again or the pump wakes it
// (settle): it reports deferred, and the batch stays until then. Waiting here
// instead cost a hand-off between goroutines on every read a replica
// served. A unit whose replay position is checked (verify), and sessions
// whose reads have idle limits or no parking (session mode), wait here.
func (s *Session) write() (outcome track.Outcome, deferred bool) {
	var guard <-chan track.Outcome
	verify := s.b.retry.verify
	if s.cur != nil && s.b.out != nil && len(*s.b.out) > 0 {
		if verify > 0 || s.b.retry.guardable(s) {
			b := s.active()
			if b.guard == nil {
				b.guard = track.NewGuard(s.policy, s.wakeWait)
			}
			guard = s.curT.Guard(b.guard)
		}
		// A failed write closes the server connection; its pump then
		// tells the client, and the next read here fails.
		s.cur.Write(*s.b.out)
	}
	s.unhold()
	if s.b.out != nil {
		b := s.b.out
		s.b.out = nil
		if cap(*b) <= 4*batchFlushAt {
			*b = (*b)[:0]
			outBufs.Put(b)
		}
	}
	if len(s.b.local) > 0 {
		// No server is linked (a linked one took them as a Substitute).
		s.client.Write(s.b.local)
		s.b.local = s.b.local[:0]
	}
	if guard == nil {
		return track.Passed, false
	}
	if verify == 0 && s.mode == config.PoolModeTransaction && !s.idleLimited() {
		s.pend = guard
		return track.Passed, true
	}
	return s.judge(<-guard, verify), false
}

// judge takes in how the guarded unit just sent came out; one that did not
// pass lost its lease (the pump gave the connection back, or closed it).
func (s *Session) judge(outcome track.Outcome, verify int64) track.Outcome {
	addr := s.cur.Addr()
	if verify > 0 {
		s.verified(addr, outcome)
	}
	if outcome != track.Passed {
		if outcome == track.Refused || outcome == track.Behind {
			s.uncount(addr, s.curRead) // it runs again elsewhere
		}
		s.dropLease()
	}
	return outcome
}

// settleWait waits for the outcome of the batch kept since write deferred
// its guard, if there is one, and settles it.
func (s *Session) settleWait() {
	if s.pend != nil {
		s.settle(<-s.pend)
	}
}

// settle ends the batch kept since write deferred its guard, with the
// outcome the pump sent.
func (s *Session) settle(outcome track.Outcome) {
	s.pend = nil
	s.batchDone(s.judge(outcome, 0))
}

// wakeWait asks a session waiting for its client's next message (parkWaiting)
// to look up from any goroutine: its read returns with a deadline passed,
// and endWait tells it that was a request. The parker's scan asks it to
// park; a deferred guard's pump (its wake), when the unit did not pass:
// the client waits for an answer and writes nothing, so the session must
// look by itself.
func (s *Session) wakeWait() {
	s.parkMu.Lock()
	if s.parkState == parkWaiting {
		s.parkState = parkRequested
		s.conn.SetReadDeadline(time.Unix(1, 0))
	}
	s.parkMu.Unlock()
}

// unhold lets cur go back to its pool once its server is at rest.
func (s *Session) unhold() {
	if s.held {
		s.held = false
		s.cur.Unhold()
	}
}

// dropLease forgets cur: its lease ended.
func (s *Session) dropLease() {
	if s.wrote {
		// A write whose WAL position was never read (the transaction ended
		// where its statements did not say): reads go to the primary until
		// a later position covers it.
		s.dbs.mark.Written(0, false)
		s.state.WrittenUnknown()
		s.wrote = false
	}
	s.cur, s.curT = nil, nil
	s.server.Store(nil)
	s.held = false
	s.curRead = false
	s.phase = idle
}

// fatal ends the session with e. While a server connection is linked its
// pump is the client's writer: closing that connection makes it send e.
func (s *Session) fatal(e *wire.Error) {
	if s.cur != nil {
		killed := s.cur.KillFor(s.client, e)
		s.dropLease()
		if killed {
			return
		}
	}
	s.client.SendError(e)
}

func (s *Session) readFailed(err error) {
	if e := s.kicked.Load(); e != nil {
		s.fatal(e)
		return
	}
	var we *wire.Error
	if errors.As(err, &we) {
		s.fatal(we)
		return
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		s.eof = true
		return
	}
	if !errors.Is(err, net.ErrClosed) {
		s.r.log.Debug("client read failed", "user", s.user.Name, "err", err)
	}
}

// kick ends the session from another goroutine (KILL, shutdown): its read
// returns and the session itself tells the client e.
func (s *Session) kick(e *wire.Error) {
	s.kicked.CompareAndSwap(nil, e)
	s.client.Conn().SetReadDeadline(time.Unix(1, 0))
	s.parkMu.Lock()
	if s.parkState == parkLingering {
		// The session waits for its server's answers (linger): the end of
		// the server connection ends the wait, and tells the client e.
		if c := s.server.Load(); c != nil {
			c.BeginKill(s.client, e)
		}
	}
	s.parkMu.Unlock()
	s.queue.cancelWait()
	s.r.parker.unpark(s) // a parked session has no read to wake
}

// end gives the server connection back: reset in session mode and when
// pinned, rolled back if the client left inside a transaction.
func (s *Session) end() {
	s.queue.stop()
	if s.cur == nil {
		return
	}
	reset := ""
	if s.mode == config.PoolModeSession || s.state.Pinned() != "" {
		reset = s.cfg.Pool.ResetQuery
	}
	s.cur.Detach(s.client, reset) // nothing, if the lease ended already
	s.dropLease()
}

// busyState is what a session keeps only while it is active: made on first
// use, and let go while it parks, as every idle client holds a Session.
type busyState struct {
	pools []poolOf         // looked up pools (poolFor)
	cands []*config.Server // pickReplica's scratch
	memo  classify.Memo    // the last classification by shape
	// guard holds a guarded unit's answer back (write). A session parks
	// only with no outcome owed, so it goes with the rest.
	guard *track.Guard
}

// active returns the session's busyState, made on first use.
func (s *Session) active() *busyState {
	if s.busy == nil {
		s.busy = &busyState{cands: make([]*config.Server, 0, max(8, len(s.db.Servers)))}
	}
	return s.busy
}

// scratch is pickReplica's buffer for candidates.
func (s *Session) scratch() []*config.Server { return s.active().cands }

// view is the session's database's view of the current topology.
func (s *Session) view() *view { return s.dbs.viewOf(s.db, s.r.topology()) }

// classifyText classifies SQL text with the database's classifier.
func (s *Session) classifyText(text string) classify.Result {
	return s.dbs.classifier.ClassifyMemo(&s.active().memo, text)
}

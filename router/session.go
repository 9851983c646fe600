package router

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/wire"
)

// idleStatus is the ReadyForQuery status a session reports itself. It only
// answers on its own while no server connection is linked, which in
// transaction mode means the last server said 'I', and in session mode means
// no server has been used yet.
const idleStatus = 'I'

// outFlushAt bounds what a session buffers for its server before writing,
// e.g. during a large COPY FROM STDIN.
const outFlushAt = 64 << 10

// outBufs lends server-bound buffers to sessions between batches.
var outBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// Session is one logged-in client. Its goroutine (run) is the only reader of
// the client connection and the only writer of the linked server connection.
type Session struct {
	r       *Router
	cfg     *config.Config // as of login
	db      *config.Database
	user    *config.User
	mode    config.PoolMode
	startup map[string]string
	key     wire.CancelKey

	pools  map[*config.Server]*pool.Pool // looked up pools, session-owned
	client *pool.Client                  // everything written to the client
	in     clientReader

	cur    *pool.Conn                // linked server connection, or nil; session-owned
	server atomic.Pointer[pool.Conn] // cur, for cancel requests from other goroutines
	out    *[]byte                   // claimed messages not yet written to cur
	skip   bool                      // discarding until Sync after a failed extended-protocol unit

	dbs        *dbState                 // classifier and balancer of the database
	prepared   map[string]*stmtDef      // named statements, by client name (transaction mode)
	sets       map[string]string        // session settings to replay, by parameter name
	txSets     []txSet                  // SETs of the open transaction block, applied at COMMIT
	cands      []*config.Server         // pickReplica's scratch, session-owned
	loadFn     func(*config.Server) int // s.load, made once: a method value allocates
	waiting    atomic.Bool              // queued in acquire, for SHOW CLIENTS
	pinned     atomic.Bool              // kept on its server connection for good
	staleable  bool                     // the unit in out may run again if its statement's plan is stale
	orig       []byte                   // the client's messages since the last flush, as sent, for a retry
	origOK     bool                     // orig holds all of them (not COPY data, not too large)
	unitDefs   []*stmtDef               // named statements the messages since the last flush use
	rerunning  bool                     // claiming orig again: no second retry
	forcePri   bool                     // while rerunning: the primary, whatever the classification
	renewed    map[string]int           // statements whose plans went stale: server name base → generation
	sqlPrep    map[string]sqlStmt       // statements prepared with SQL PREPARE, by name
	unnamedMsg []byte                   // the client's unnamed Parse, as sent (transaction mode)
	unnamedRes classify.Result          // its classification
	unnamedSeq uint64                   // counts unnamed Parses: which one a server connection has
	heldParse  int                      // named Parses answered by pgswitch, their ParseComplete still owed
	extOpen    bool                     // extended-protocol messages since the last Sync
	curRead    bool                     // cur is a replica serving reads
	guardable  bool                     // the unit in out may be retried on the primary
}

func newSession(r *Router, conn net.Conn, cfg *config.Config, db *config.Database, u *config.User, startup map[string]string) *Session {
	s := &Session{
		r:       r,
		cfg:     cfg,
		db:      db,
		user:    u,
		mode:    cfg.PoolModeFor(db, u),
		startup: startup,
		client:  pool.NewClient(conn),
		in:      newClientReader(conn),
		dbs:     r.database(db.Name),
		sets:    startupSets(startup),
		cands:   make([]*config.Server, 0, max(8, len(db.Servers))),
		origOK:  true,
	}
	s.loadFn = s.load
	return s
}

// run reads the client's messages until it leaves.
func (s *Session) run() {
	defer s.end()
	maxMsg := s.cfg.Limits.MaxMessageSize
	for {
		h, err := s.in.next(maxMsg)
		if err != nil {
			s.readFailed(err)
			return
		}
		switch h.Type {
		case 'X':
			return
		case 'Q', 'P', 'B', 'D', 'E', 'C', 'S', 'H', 'F', 'd', 'c', 'f':
		default:
			s.client.SendError(wire.Fatalf(wire.CodeProtocolViolation, "invalid frontend message type %d", h.Type))
			return
		}
		if s.skip {
			if err := s.in.skip(h); err != nil {
				return
			}
			if h.Type == 'S' {
				s.skip = false
				s.client.Write(wire.AppendReadyForQuery(nil, idleStatus))
			}
			continue
		}
		if s.out == nil {
			s.out = outBufs.Get().(*[]byte)
		}
		start := len(*s.out)
		if *s.out, err = s.in.appendMessage(*s.out, h); err != nil {
			return
		}
		s.record(h.Type, (*s.out)[start:])
		if err := s.claim(h.Type, start); err != nil {
			*s.out = (*s.out)[:start]
			s.unitFailed(h.Type, err)
			continue
		}
		if s.in.buffered() == 0 || len(*s.out) >= outFlushAt {
			s.flush()
		}
	}
}

// unitFailed answers a message that could not reach any server.
func (s *Session) unitFailed(typ byte, err error) {
	if errors.Is(err, errAnswered) {
		if typ == 'S' {
			s.client.Write(wire.AppendReadyForQuery(nil, idleStatus))
		}
		return
	}
	e := wire.AsError(err)
	s.r.log.Info("unit of work failed", "user", s.user.Name, "database", s.db.Name, "code", e.Code, "err", err)
	buf := e.AppendResponse(nil)
	switch typ {
	case 'Q', 'S':
		buf = wire.AppendReadyForQuery(buf, idleStatus)
	default:
		// Extended protocol: the server would discard until Sync; so do we.
		s.skip = true
	}
	s.client.Write(buf)
}

// flush writes the claimed messages to the server connection. A guarded
// unit (an autocommit read on a replica) waits for the server's first answer
// and runs again on the primary if the replica refused it as read-only.
func (s *Session) flush() {
	if s.out == nil {
		return
	}
	buf := *s.out
	outcome := pool.Passed
	if len(buf) > 0 && s.cur != nil {
		// A failed write closes the server connection; its pump then tells
		// the client, and the next read here fails.
		if (s.guardable || s.staleable) && unitComplete(buf) {
			guard := s.cur.Guard()
			s.cur.Write(buf)
			outcome = <-guard
		} else {
			s.cur.Write(buf)
		}
	}
	s.guardable, s.staleable = false, false
	b := s.out
	s.out = nil
	switch outcome {
	case pool.Refused, pool.Stale:
		s.retry(outcome, buf)
	}
	s.orig, s.origOK, s.unitDefs = s.orig[:0], true, s.unitDefs[:0]
	if cap(*b) <= 4*outFlushAt {
		*b = (*b)[:0]
		outBufs.Put(b)
	}
}

func (s *Session) readFailed(err error) {
	var we *wire.Error
	if errors.As(err, &we) {
		s.client.SendError(we)
		return
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.r.log.Debug("client read failed", "user", s.user.Name, "err", err)
	}
}

// end gives the server connection back: reset in session mode, rolled back
// if the client left inside a transaction.
func (s *Session) end() {
	s.flush()
	if s.cur != nil {
		reset := ""
		if s.mode == config.PoolModeSession || s.pinned.Load() {
			reset = s.cfg.Pool.ResetQuery
		}
		s.cur.Detach(s.client, reset)
		s.cur = nil
		s.server.Store(nil)
	}
}

package router

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/pool"
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
}

func newSession(r *Router, conn net.Conn, cfg *config.Config, db *config.Database, u *config.User, startup map[string]string) *Session {
	return &Session{
		r:       r,
		cfg:     cfg,
		db:      db,
		user:    u,
		mode:    cfg.PoolModeFor(db, u),
		startup: startup,
		client:  pool.NewClient(conn),
		in:      clientReader{nc: conn},
	}
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
		if err := s.claim(h.Type); err != nil {
			if err := s.in.skip(h); err != nil {
				return
			}
			s.unitFailed(h.Type, err)
			continue
		}
		if s.out == nil {
			s.out = outBufs.Get().(*[]byte)
		}
		if *s.out, err = s.in.appendMessage(*s.out, h); err != nil {
			return
		}
		if s.in.buffered() == 0 || len(*s.out) >= outFlushAt {
			s.flush()
		}
	}
}

// errAnswered means the session answered the message itself: no server needed.
var errAnswered = errors.New("answered by pgswitch")

// claim makes sure a server connection is linked and accounts for a message
// of type typ on it.
func (s *Session) claim(typ byte) error {
	if s.cur != nil {
		if s.cur.Claim(s.client, typ) == nil {
			return nil
		}
		// The server finished the last unit and went back to its pool.
		s.cur = nil
		s.server.Store(nil)
	}
	switch typ {
	case 'd', 'c', 'f':
		// Late COPY data after a failed COPY: PostgreSQL ignores it too.
		return errAnswered
	case 'H':
		return errAnswered // nothing is pending, so nothing to flush
	case 'S':
		// A lone Sync with no unit open: the server would only say it is idle.
		return errAnswered
	}
	c, err := s.acquire()
	if err != nil {
		return err
	}
	c.Link(s.client, s.mode == config.PoolModeSession)
	s.cur = c
	s.server.Store(c)
	return c.Claim(s.client, typ)
}

// acquire takes a server connection for the next unit of work.
func (s *Session) acquire() (*pool.Conn, error) {
	p := s.poolFor(s.primaryTarget())
	c, err := p.Acquire(s.r.ctx, s.cfg.Timeouts.QueryWait)
	if err != nil {
		return nil, pool.AcquireError(p.Key(), s.cfg.Timeouts.QueryWait, err)
	}
	return c, nil
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

// flush writes the claimed messages to the server connection.
func (s *Session) flush() {
	if s.out == nil {
		return
	}
	if len(*s.out) > 0 && s.cur != nil {
		// A failed write closes the server connection; its pump then tells
		// the client, and the next read here fails.
		s.cur.Write(*s.out)
	}
	b := s.out
	s.out = nil
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
	s.in.giveBack()
	if s.cur != nil {
		reset := ""
		if s.mode == config.PoolModeSession {
			reset = s.cfg.Pool.ResetQuery
		}
		s.cur.Detach(s.client, reset)
		s.cur = nil
		s.server.Store(nil)
	}
}

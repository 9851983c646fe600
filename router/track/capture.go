package track

import (
	"strconv"

	"github.com/pgswitch/pgswitch/wire"
)

// CaptureQuery reads back a server connection's session settings: those a
// session set (source "session"), which is every setting pgswitch or the
// client changed there, and the role, which pg_settings does not show.
const CaptureQuery = `SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session'
UNION ALL SELECT 'role', pg_catalog.current_setting('role')
UNION ALL SELECT 'session_authorization', pg_catalog.current_setting('session_authorization')`

// capture collects the rows of a Capture request.
type capture struct {
	rows   [][]string
	err    string // SQLSTATE of its failure
	errMsg []byte // the failure, for a Reply
}

func (c *capture) row(msg []byte) {
	if cols := dataRowText(msg); cols != nil {
		c.rows = append(c.rows, cols)
	}
}

// captureDoneLocked turns what a Capture read into the session's settings,
// a change of the open transaction like any other. If the settings cannot
// be read, or a role was set, the state can only live on this connection:
// the client is pinned to it.
func (s *Server) captureDoneLocked(r Request) {
	c := s.capture
	s.capture = capture{}
	if r.Reply != nil {
		r.Reply <- Reply{Rows: c.rows, Err: c.errMsg}
		return
	}
	cl := s.client
	if cl == nil {
		return
	}
	switch {
	case c.err == wire.CodeInFailedSQLTransaction:
		// The client's transaction failed: it will roll back whatever it set.
		return
	case c.err != "":
		cl.Pin("session settings that could not be read back (SQLSTATE " + c.err + ")")
		return
	}
	snap := make(map[string]string, len(c.rows))
	for _, row := range c.rows {
		if len(row) != 2 {
			continue
		}
		switch name, value := row[0], row[1]; name {
		case "role", "session_authorization":
			if name == "role" && value != "none" || name == "session_authorization" && value != s.user {
				cl.Pin("SET ROLE or SESSION AUTHORIZATION")
				return
			}
		default:
			snap[name] = SetConfig(name, value)
		}
	}
	s.noteLocked(change{kind: changeSnapshot, snapshot: snap, client: true})
}

// nextIsMarkLocked reports whether the next request owed is a Mark.
func (s *Server) nextIsMarkLocked() bool {
	h := s.headLocked()
	return h != nil && h.Mark
}

// verifyDoneLocked compares what a Verify read with the position the unit
// behind it needs; short of it (or unread), the guarded unit is refused.
func (s *Server) verifyDoneLocked(need int64) {
	lsn, ok := s.captured()
	if ok {
		s.replayed = lsn
	}
	if g := s.guard; (!ok || lsn < need) && g != nil && !g.refusing {
		g.refusing, g.outcome = true, Behind
		g.held = g.held[:0]
	}
}

// Replayed returns the replay position the last Verify read (0: none).
func (s *Server) Replayed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replayed
}

// captured returns the one integer a Capture read, and clears it.
func (s *Server) captured() (int64, bool) {
	c := s.capture
	s.capture = capture{}
	if c.err != "" || len(c.rows) != 1 || len(c.rows[0]) != 1 {
		return 0, false
	}
	n, err := strconv.ParseInt(c.rows[0][0], 10, 64)
	return n, err == nil
}

// markDoneLocked reports what a Mark read: the WAL position the client's
// write is at or before, to the database and to the client.
func (s *Server) markDoneLocked() {
	lsn, ok := s.captured()
	if s.db != nil {
		s.db.Written(lsn, ok)
	}
	if s.client != nil {
		s.client.written(lsn, ok)
	}
}

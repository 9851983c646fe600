package track

import (
	"cmp"
	"slices"
	"sync"
	"unsafe"

	"github.com/pgswitch/pgswitch/pool"
)

// DB is what the server connections of one database report to the
// database's shared state.
type DB interface {
	// Parsed: a server accepted the Parse of statement name, so its text
	// is valid SQL for that name's parse context.
	Parsed(name string)
	// CatalogChanged: a catalog change committed; statements prepared
	// before it may be stale.
	CatalogChanged()
	// Written: a transaction that may have written committed, and the
	// primary's WAL had reached lsn after it (ok false: the position could
	// not be read).
	Written(lsn int64, ok bool)
}

// Edit says what becomes of the answer to one request.
type Edit uint8

const (
	// Pass forwards the answer: the request is the client's.
	Pass Edit = iota
	// Swallow drops the answer: pgswitch sent the request itself (a
	// replayed setting, a statement prepared on demand). An ErrorResponse
	// to an extended-protocol request still reaches the client: it says
	// why the client's own messages that follow fail.
	Swallow
	// Substitute was sent only to get an answer in its turn: the client
	// gets Request.Subst instead of that answer, whatever it is. This is
	// how pgswitch answers a message itself while a server is linked, in
	// order, and (with a request that fails) how it fails a batch exactly
	// as the server would.
	Substitute
	// Capture is pgswitch's query of the server's session settings: its
	// rows are read here and nothing of it reaches the client.
	Capture
)

// Request is one message a server connection owes an answer to.
type Request struct {
	Type  byte // the message type sent: P B D E C S Q F
	Edit  Edit
	Subst []byte // Substitute: what the client gets instead
	// Stmt is the server statement a Parse prepares (forgotten if the server
	// skips or refuses it).
	Stmt string
	// Client is the client's name for the statement a Parse prepares,
	// dropped from the client if the Parse fails.
	Client string
	// Unnamed: a Parse of the client's unnamed statement.
	Unnamed bool
	// Effects are what the statements of a Query (or the one an Execute
	// runs) do to session state, applied as the server completes each.
	Effects []Effect
	// Replay: pgswitch brings the server to what the client has already;
	// the effects change the server's record only.
	Replay bool
	// Reply, for a Capture, gets what the query returned instead of it
	// being taken as the session's settings.
	Reply chan<- Reply
	// Mark, for a Capture: it reads the primary's WAL position after the
	// client's transaction (MarkQuery), for read-your-writes. The client's
	// ReadyForQuery before it is held back until the position is known, so
	// that no read the client sends next can miss its write.
	Mark bool
	// Verify, for a Capture of a replica's replay position (one integer): the replay
	// position the guarded unit behind it must see. Short of it the unit's
	// answer is discarded and its outcome is Behind.
	Verify int64
}

// MarkQuery reads where the primary's WAL stands after the client's
// transaction: its flush position, which a synchronous commit waits for
// (and a replica replays up to); after an asynchronous one (synchronous_commit
// off for the session) the insert position, which a replica reaches only
// once the WAL writer flushed it.
const MarkQuery = `SELECT pg_catalog.pg_wal_lsn_diff(CASE WHEN pg_catalog.current_setting('synchronous_commit') = 'off'
THEN pg_catalog.pg_current_wal_insert_lsn() ELSE pg_catalog.pg_current_wal_flush_lsn() END, '0/0')::int8`

// Reply is what a Capture request with a Reply channel got back.
type Reply struct {
	Rows [][]string // the rows, as text
	Err  []byte     // the ErrorResponse that ended it, if any
}

// Server is what one server connection carries and owes.
//
// Invariants: settings holds the session settings the server has (as
// statements that set them), stmts the protocol-level statements it has
// or is being sent, sqlNames the SQL-level ones; each entry got there from
// a request the server confirmed or is answering, and leaves when the
// server drops the statement or refuses the request. reqs[head:] are the
// requests the server owes answers to, in the order they were sent.
//
// Locking: mu guards every field below it; the session (sending) and the
// pump (answering) both take it. Client.mu is taken after mu.
type Server struct {
	db   DB
	user string // the role the connection logged in as

	mu       sync.Mutex
	client   *Client // the linked client, whose requests are owed
	settings map[string]string
	// sameAs is a client settings map that never changes (shared) which
	// settings was found equal to, so that Sync need not compare them
	// again; nil when none, or since settings changed.
	sameAs    unsafe.Pointer
	txn       []change           // changes of the open transaction, until it ends
	failed    bool               // the open transaction (explicit or implicit) saw an error
	ddl       bool               // a catalog change was confirmed in the open transaction
	stmts     map[string]*uint64 // protocol statements by server name → last use (one lookup marks a use)
	tick      uint64
	sqlNames  map[string]string // SQL-level statements → their PREPARE text
	unnamedBy *Client           // whose unnamed statement the server has; nil: none, or not a client's
	unnamedN  uint64            // which of that client's unnamed Parses
	reqs      []Request
	head      int
	qi        int     // statements of the head Query completed so far
	guard     *Guard  // the unit's answer is held until it passes or is refused
	capture   capture // rows of the head Capture request
	heldReady []byte  // the client's ReadyForQuery, until the Mark behind it is read
	replayed  int64   // the replay position the last Verify read (0: none)
}

// NewServer returns the record of a new server connection to a database
// that reports to db, logged in as user.
func NewServer(db DB, user string) *Server {
	return &Server{db: db, user: user, settings: map[string]string{}}
}

// Link starts serving client: its requests follow.
func (s *Server) Link(c *Client) {
	s.mu.Lock()
	s.client = c
	s.reqs, s.head, s.qi = s.reqs[:0], 0, 0
	s.guard = nil
	s.replayed = 0
	s.mu.Unlock()
}

// Detached ends serving the client, who left (pool.Answers). An open
// transaction is rolled back (the pool does so); with reset, the
// connection is reset with DISCARD ALL and carries nothing any more.
func (s *Server) Detached(reset bool) {
	s.mu.Lock()
	g := s.guard
	s.guard = nil // sent once: the pump may be about to send it too
	s.mu.Unlock()
	if g != nil {
		g.send(Failed)
	}
	s.unlink(reset)
}

func (s *Server) unlink(discard bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.client = nil
	s.reqs, s.head, s.qi = s.reqs[:0], 0, 0
	s.txn, s.failed, s.ddl = s.txn[:0], false, false
	s.guard = nil
	s.unnamedBy = nil
	if discard {
		clear(s.settings)
		s.sameAs = nil
		s.stmts, s.sqlNames = nil, nil
	}
}

// Push records a request sent to the server.
func (s *Server) Push(r Request) {
	s.mu.Lock()
	s.pushLocked(r)
	s.mu.Unlock()
}

func (s *Server) pushLocked(r Request) {
	if s.head > 0 && s.head == len(s.reqs) {
		s.reqs, s.head = s.reqs[:0], 0
	}
	switch r.Type {
	case 'Q':
		s.unnamedBy = nil // a simple Query destroys the unnamed statement
	case 'P':
		if r.Stmt != "" {
			s.useLocked(r.Stmt)
		}
	}
	s.reqs = append(s.reqs, r)
}

// Owed reports whether the server owes answers to requests.
func (s *Server) Owed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head < len(s.reqs)
}

// HasStmt reports whether the server has (or is being sent) the protocol
// statement name, and marks it used.
func (s *Server) HasStmt(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.touchLocked(name)
}

// touchLocked marks the statement name used, if the server has it.
func (s *Server) touchLocked(name string) bool {
	used := s.stmts[name]
	if used == nil {
		return false
	}
	s.tick++
	*used = s.tick
	return true
}

func (s *Server) useLocked(name string) {
	if s.touchLocked(name) {
		return
	}
	if s.stmts == nil {
		s.stmts = map[string]*uint64{}
	}
	s.tick++
	tick := s.tick
	s.stmts[name] = &tick
}

// Statements is how many protocol statements the server keeps.
func (s *Server) Statements() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.stmts)
}

// Evict forgets the least recently used protocol statements beyond limit
// and returns them: the caller closes them on the server.
func (s *Server) Evict(limit int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.stmts) <= limit {
		return nil
	}
	names := make([]string, 0, len(s.stmts))
	for n := range s.stmts {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(*s.stmts[a], *s.stmts[b]) })
	names = names[:len(names)-limit]
	for _, n := range names {
		delete(s.stmts, n)
	}
	return names
}

// HasUnnamed reports whether the server's unnamed statement is client's
// n-th unnamed Parse.
func (s *Server) HasUnnamed(c *Client, n uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unnamedBy == c && s.unnamedN == n
}

// SetUnnamed records that the server's unnamed statement is (being made)
// client's n-th unnamed Parse.
func (s *Server) SetUnnamed(c *Client, n uint64) {
	s.mu.Lock()
	s.unnamedBy, s.unnamedN = c, n
	s.mu.Unlock()
}

var _ pool.Answers = (*Server)(nil)

// DropSQL forgets the SQL-level statement name, which the client is closing.
func (s *Server) DropSQL(name string) {
	s.mu.Lock()
	delete(s.sqlNames, name)
	s.mu.Unlock()
}

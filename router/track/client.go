package track

import (
	"hash/maphash"
	"maps"
	"slices"
	"sync"

	"github.com/pgswitch/pgswitch/router/classify"
)

// Stmt is a prepared statement of a client. Protocol-level statements live
// on server connections under a name pgswitch derives from their text, types
// and parse context, so that clients share them; SQL-level ones (PREPARE)
// keep the client's own name there, which pg_prepared_statements shows.
type Stmt struct {
	Server string // name on server connections
	Base   string // Server of the first generation; renewals after stale plans add a suffix
	Gen    int    // renewals
	Text   string // the query (protocol), or the whole PREPARE statement (SQL)
	Types  []byte // the Parse message's parameter type section (protocol)
	SQL    bool   // made by SQL PREPARE
	Res    classify.Result
}

// Client is what one client asked for: its settings, its prepared
// statements, and whether it is pinned to its server connection.
//
// Invariant: settings holds, for each parameter the client's session has
// set, the statement that sets it on a server connection; a parameter it
// never set (or reset to a default that is not a startup value) is absent.
// Only what a server confirmed changes settings and stmts (Server.Answer).
//
// Locking: mu guards every field below it. Server.mu is taken before mu
// when both are held.
type Client struct {
	mu       sync.Mutex
	startup  map[string]string // the startup parameters, as statements: RESET and RESET ALL return to these
	settings map[string]string
	// shared: settings is startup itself, until a change (most clients
	// never change a setting, and every idle client holds its Client).
	shared   bool
	key      uint64           // hash of settings: the parse context of new statements
	stmts    map[string]*Stmt // by the client's name: protocol and SQL share one namespace, as in PostgreSQL
	stmtSize int              // bytes the statements hold (stmtBytes of each)
	sqlStmts int              // how many of stmts are SQL-level: Sync skips them all when none
	pin      string           // why the client keeps its server connection; "" when it does not

	mark Mark // where the primary's WAL stood after the client's last write
}

// Mark is how far a replica must have replayed for a read to see the
// writes it follows: the greatest WAL position read after them, or unknown
// since a position could not be read (until the next one is: WAL positions
// only grow).
type Mark struct {
	mu      sync.Mutex
	lsn     int64
	unknown bool
}

// Written notes a write followed by the WAL position lsn (ok false: not
// read).
func (m *Mark) Written(lsn int64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !ok {
		m.unknown = true
		return
	}
	m.unknown = false
	m.lsn = max(m.lsn, lsn)
}

// Get returns the mark; ok false while it is unknown (reads must go to
// the primary).
func (m *Mark) Get() (lsn int64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lsn, !m.unknown
}

// written records the client's own write (routing.consistency session).
func (c *Client) written(lsn int64, ok bool) { c.mark.Written(lsn, ok) }

// WrittenUnknown notes a write of the client whose WAL position was not read.
func (c *Client) WrittenUnknown() { c.mark.Written(0, false) }

// Mark returns where a replica must have replayed for the client's reads to
// see its own writes; ok false while unknown.
func (c *Client) Mark() (int64, bool) { return c.mark.Get() }

// NewClient returns a client whose session starts with the startup
// settings (parameter name → statement that sets it).
func NewClient(startup map[string]string) *Client {
	c := &Client{startup: startup, settings: startup, shared: true}
	c.rekeyLocked()
	return c
}

// contextSeed makes parse context keys comparable across the clients of a
// process, so that clients with equal settings share server statements.
var contextSeed = maphash.MakeSeed()

// rekeyLocked recomputes the parse context after settings changed.
func (c *Client) rekeyLocked() {
	var h maphash.Hash
	h.SetSeed(contextSeed)
	for _, name := range slices.Sorted(maps.Keys(c.settings)) {
		h.WriteString(name)
		h.WriteByte(0)
		h.WriteString(c.settings[name])
		h.WriteByte(0)
	}
	c.key = h.Sum64()
}

// ContextKey identifies the client's settings: statements parsed under
// different settings (search_path, DateStyle, …) may mean different things,
// so clients share a server statement only when their keys are equal.
func (c *Client) ContextKey() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.key
}

// Settings returns a copy of the client's settings.
func (c *Client) Settings() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.settings)
}

// Startup returns the statement setting name at startup ("" if none).
func (c *Client) Startup(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.startup[name]
}

// HasStartup reports whether the client gave any startup parameter.
func (c *Client) HasStartup() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.startup) > 0
}

// Stmt returns the client's statement called name, or nil.
func (c *Client) Stmt(name string) *Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stmts[name]
}

// AddStmt records a statement the client is preparing. The Parse that
// carries it removes it again if the server refuses it (Request.Client).
func (c *Client) AddStmt(name string, st *Stmt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addStmtLocked(name, st)
}

// DropStmt forgets the client's statement name (a Close).
func (c *Client) DropStmt(name string) {
	c.mu.Lock()
	c.dropStmtLocked(name)
	c.mu.Unlock()
}

// StmtUse is how many statements the client has and the bytes they hold.
func (c *Client) StmtUse() (n, size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.stmts), c.stmtSize
}

// StmtBytes is what a statement of the client costs to keep, roughly: its
// name, text and parameter types.
func StmtBytes(name string, st *Stmt) int {
	return len(name) + len(st.Text) + len(st.Types) + 64
}

func (c *Client) addStmtLocked(name string, st *Stmt) {
	if c.stmts == nil {
		c.stmts = map[string]*Stmt{}
	}
	c.dropStmtLocked(name)
	c.stmts[name] = st
	c.stmtSize += StmtBytes(name, st)
	if st.SQL {
		c.sqlStmts++
	}
}

func (c *Client) dropStmtLocked(name string) {
	if old := c.stmts[name]; old != nil {
		c.stmtSize -= StmtBytes(name, old)
		if old.SQL {
			c.sqlStmts--
		}
		delete(c.stmts, name)
	}
}

func (c *Client) clearStmtsLocked() {
	clear(c.stmts)
	c.stmtSize, c.sqlStmts = 0, 0
}

// SQLStmts returns the client's SQL-level statements by name.
func (c *Client) SQLStmts() map[string]*Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*Stmt{}
	for name, st := range c.stmts {
		if st.SQL {
			out[name] = st
		}
	}
	return out
}

// Pin keeps the client on its server connection for good; why is kept for
// logs and SHOW CLIENTS. It reports whether the client was pinned just now.
func (c *Client) Pin(why string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pin != "" {
		return false
	}
	c.pin = why
	return true
}

// Pinned returns why the client is pinned, "" when it is not.
func (c *Client) Pinned() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pin
}

// ownSettingsLocked gives the client a settings map of its own, to change.
func (c *Client) ownSettingsLocked() {
	if !c.shared && c.settings != nil {
		return
	}
	c.settings, c.shared = maps.Clone(c.settings), false
	if c.settings == nil {
		c.settings = map[string]string{}
	}
}

// applyLocked applies a committed settings change to the client.
func (c *Client) applyLocked(ch change) {
	switch ch.kind {
	case changeSet:
		c.ownSettingsLocked()
		c.settings[ch.name] = ch.sql
	case changeReset:
		c.ownSettingsLocked()
		if v, ok := c.startup[ch.name]; ok {
			c.settings[ch.name] = v // RESET returns to the startup value, as in PostgreSQL
		} else {
			delete(c.settings, ch.name)
		}
	case changeResetAll:
		c.settings, c.shared = c.startup, true
	case changeSnapshot:
		c.settings, c.shared = maps.Clone(ch.snapshot), false
	default:
		return
	}
	c.rekeyLocked()
}

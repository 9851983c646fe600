package pool

import (
	"cmp"
	"log/slog"
	"slices"
)

// Edit says how the pump treats the answer to one request the session sent
// (or pretended to send) on a connection.
type Edit uint8

const (
	// Pass forwards the answer.
	Pass Edit = iota
	// Swallow drops the answer: pgswitch sent the request itself (a Parse
	// preparing a statement on demand, a replayed SET). An ErrorResponse to
	// an extended-protocol request still reaches the client: it explains why
	// the client's own messages that follow fail.
	Swallow
	// Fake was not sent: the statement is already prepared there, or the
	// client closed a statement pgswitch keeps. The pump answers it itself
	// (ParseComplete, CloseComplete) when its turn comes.
	Fake
)

// request is one message the server owes an answer to, in order.
type request struct {
	typ  byte
	edit Edit
	// stmt is the server-side statement a Parse adds; if the server skips
	// the Parse after an error, the statement is not there after all.
	stmt string
}

// answers reports whether the server answers a message of type typ.
func answers(typ byte) bool {
	switch typ {
	case 'P', 'B', 'D', 'E', 'C', 'S', 'Q', 'F':
		return true
	}
	return false
}

// answered returns the request type whose answer a message of type typ ends.
func answered(typ byte) byte {
	switch typ {
	case '1':
		return 'P'
	case '2':
		return 'B'
	case '3':
		return 'C'
	}
	return 'D' // RowDescription or NoData
}

// pushLocked records a request; c.mu is held.
func (c *Conn) pushLocked(r request) {
	if c.rhead > 0 && c.rhead == len(c.reqs) {
		c.reqs, c.rhead = c.reqs[:0], 0
	}
	c.reqs = append(c.reqs, r)
}

func (c *Conn) resetRequestsLocked() {
	c.reqs, c.rhead = c.reqs[:0], 0
}

func (c *Conn) headLocked() *request {
	if c.rhead == len(c.reqs) {
		return nil
	}
	return &c.reqs[c.rhead]
}

func (c *Conn) popLocked() request {
	r := c.reqs[c.rhead]
	c.rhead++
	return r
}

// fakesLocked appends the answers of the fake requests now at the head of
// the queue to dst.
func (c *Conn) fakesLocked(dst []byte) []byte {
	for h := c.headLocked(); h != nil && h.edit == Fake; h = c.headLocked() {
		switch c.popLocked().typ {
		case 'P':
			dst = append(dst, '1', 0, 0, 0, 4)
		case 'C':
			dst = append(dst, '3', 0, 0, 0, 4)
		}
	}
	return dst
}

// trackLocked accounts for a server message of type typ against the
// requests it answers and says whether to drop it. Only the message that
// ends an answer pops its request; an ErrorResponse ends the answer of an
// extended-protocol request and the server skips the rest until Sync.
func (c *Conn) trackLocked(typ byte) (swallow bool) {
	h := c.headLocked()
	if h == nil {
		return false
	}
	switch typ {
	case 'S', 'A':
		return false // ParameterStatus and notifications are the client's too
	case '1', '2', '3', 'T', 'n':
		swallow = h.edit == Swallow
		if h.typ == answered(typ) {
			c.popLocked()
		}
		return swallow
	case 'C', 'I', 's':
		swallow = h.edit == Swallow
		if h.typ == 'E' {
			c.popLocked()
		}
		return swallow
	case 'E':
		if h.typ == 'Q' || h.typ == 'F' {
			if h.edit == Swallow {
				slog.Warn("a query pgswitch replayed on a server connection failed", "server", c.Addr())
				return true
			}
			return false
		}
		for h := c.headLocked(); h != nil && h.typ != 'S'; h = c.headLocked() {
			if r := c.popLocked(); r.stmt != "" {
				delete(c.stmts, r.stmt) // skipped: never prepared
			}
		}
		return false
	case 'Z':
		for h := c.headLocked(); h != nil; h = c.headLocked() {
			r := c.popLocked()
			if r.typ == 'S' || r.typ == 'Q' || r.typ == 'F' {
				return r.edit == Swallow
			}
		}
		return false
	}
	return h.edit == Swallow
}

// Send records that the client is about to send a message of type typ on
// this connection with the given treatment of its answer; stmt names the
// server-side statement a Parse prepares. For a Fake request nothing is
// sent; its answer comes in turn. It fails with ErrUnlinked when the
// connection no longer serves client.
func (c *Conn) Send(client *Client, typ byte, edit Edit, stmt string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != client || c.closed {
		if c.client == nil && c.status != 'I' {
		}
		return ErrUnlinked
	}
	if edit != Fake && answers(typ) {
		c.startQueryLocked()
	}
	c.claimLocked(typ)
	if answers(typ) {
		c.pushLocked(request{typ: typ, edit: edit, stmt: stmt})
	}
	if stmt != "" && edit != Fake {
		c.useStmtLocked(stmt)
	}
	return nil
}

// AnswerFakes writes the answers of fake requests that are next in line,
// for when no server answer is due before them (a Parse followed by Flush).
func (c *Conn) AnswerFakes(client *Client) {
	client.Lock()
	defer client.Unlock()
	c.mu.Lock()
	var out []byte
	if c.client == client {
		out = c.fakesLocked(nil)
	}
	c.mu.Unlock()
	if len(out) > 0 {
		client.WriteLocked(out)
	}
}

// HasStmt reports whether the server-side statement name is prepared on
// the connection, and marks it used.
func (c *Conn) HasStmt(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.stmts[name]; !ok {
		return false
	}
	c.useStmtLocked(name)
	return true
}

func (c *Conn) useStmtLocked(name string) {
	if c.stmts == nil {
		c.stmts = map[string]uint64{}
	}
	c.tick++
	c.stmts[name] = c.tick
}

// Sets is the session state (SET statements by parameter name) applied on
// the connection. Only the linked session reads or changes it.
func (c *Conn) Sets() map[string]string {
	if c.sets == nil {
		c.sets = map[string]string{}
	}
	return c.sets
}

// EvictCandidates returns the least recently used statements beyond limit,
// without forgetting them.
func (c *Conn) EvictCandidates(limit int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.stmts) <= limit {
		return nil
	}
	names := make([]string, 0, len(c.stmts))
	for n := range c.stmts {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(c.stmts[a], c.stmts[b]) })
	return names[:len(names)-limit]
}

// Forget drops statements from the registry (they are being closed).
func (c *Conn) Forget(names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range names {
		delete(c.stmts, n)
	}
}

// ForgetReset forgets what query (DISCARD ALL, DEALLOCATE ALL, RESET ALL)
// drops on the server, as the linked session sends it.
func (c *Conn) ForgetReset(query string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	forgetReset(c, query)
}

// SQLNames maps the names of statements prepared on the connection with SQL
// PREPARE to their PREPARE text. Only the linked session reads or changes it.
func (c *Conn) SQLNames() map[string]string {
	if c.sqlNames == nil {
		c.sqlNames = map[string]string{}
	}
	return c.sqlNames
}

// HasUnnamed reports whether the server's unnamed statement is the one
// client parsed as its seq-th.
func (c *Conn) HasUnnamed(client *Client, seq uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unnamedBy == client && c.unnamedSeq == seq
}

// SetUnnamed records whose unnamed statement the server has (nil: none or
// unknown).
func (c *Conn) SetUnnamed(client *Client, seq uint64) {
	c.mu.Lock()
	c.unnamedBy, c.unnamedSeq = client, seq
	c.mu.Unlock()
}

package pool

import (
	"bufio"
	"errors"
	"github.com/pgswitch/pgswitch/wire"
	"maps"
	"net"
	"strings"
	"sync"
	"time"
)

// ErrUnlinked is returned by Claim when the server connection is no longer
// linked to the client: the unit of work it served is over.
var ErrUnlinked = errors.New("server connection not linked to this client")

// Conn is one authenticated server connection. Its pump goroutine reads the
// server for the connection's whole life; a session links its client to it
// for a unit of work (transaction mode) or for good (session mode, pinning).
type Conn struct {
	pool    *Pool
	nc      net.Conn      // reads: the pump only; writes: the linked session, or Detach
	br      *bufio.Reader // owned by the pump
	pid     uint32
	secret  []byte
	created time.Time
	done    chan struct{} // closed when the pump has exited

	mu       sync.Mutex
	client   *Client           // linked client, nil when idle or being cleaned up
	keep     bool              // stay linked at ReadyForQuery 'I' (session mode, pinned)
	holding  bool              // the session is preparing a unit here (Hold): not released
	pending  int               // Query/Sync sent whose ReadyForQuery has not arrived
	unsynced bool              // extended-protocol messages sent since the last Sync
	status   byte              // last ReadyForQuery status
	closed   bool              // no further use; the pump is exiting or has exited
	killed   string            // why pgswitch closed it (Kill), told to the client
	cleaning bool              // detached with ROLLBACK/reset queries in flight
	params   map[string]string // server's ParameterStatus values, replaced whole on change
	served   uint64            // units of work served, for stats
	linked   time.Time         // when Link gave it to a client, for stats (waits.go)
	qstart   time.Time         // when the batch being answered was sent, for stats (waits.go)
	guard    chan Outcome      // set by Guard, cleared by the pump when resolved
	idleWait chan struct{}     // closed when pending reaches 0 (WaitIdle)

	reqs       []request         // requests the server owes answers to, from rhead on
	rhead      int               //
	stmts      map[string]uint64 // server-side statements prepared by pgswitch, by name: last use
	tick       uint64            // use counter for stmts
	sets       map[string]string // session state applied here; owned by the linked session
	sqlNames   map[string]string // SQL PREPARE names here → their text; owned by the linked session
	unnamedBy  *Client           // whose unnamed statement the server has (SetUnnamed)
	unnamedSeq uint64

	refusing bool    // pump-owned: discarding a refused unit's answer
	refusal  Outcome // pump-owned: Refused or Stale, while refusing
	fakeBuf  []byte  // pump-owned: answers to fake requests being written
	held     []byte  // pump-owned: answers held back while guarded

	// Fields below are guarded by pool.mu.
	idleSince time.Time
	inIdle    bool
}

// PID is the server's backend process id.
func (c *Conn) PID() uint32 { return c.pid }

// Addr is the server's address.
func (c *Conn) Addr() string { return c.pool.key.Server }

// Pool returns the pool the connection belongs to.
func (c *Conn) Pool() *Pool { return c.pool }

// Params returns the server's current ParameterStatus values. Callers must not
// modify the map.
func (c *Conn) Params() map[string]string {
	c.mu.Lock()
	p := c.params
	c.mu.Unlock()
	return p
}

// Link gives the connection to client for a unit of work. With keep, it stays
// linked when the server becomes idle until Detach.
func (c *Conn) Link(client *Client, keep bool) {
	c.mu.Lock()
	c.client = client
	c.keep = keep
	c.pending = 0
	c.unsynced = false
	c.qstart = time.Time{}
	c.resetRequestsLocked()
	c.served++
	c.linked = c.pool.now()
	c.mu.Unlock()
}

// Hold keeps the connection with client while the session reads the
// connection's session state and prepares a unit; Unhold ends that. It
// fails with ErrUnlinked when the connection no longer serves client.
func (c *Conn) Hold(client *Client) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != client || c.closed {
		return ErrUnlinked
	}
	c.holding = true
	return nil
}

// Unhold ends Hold. The unit the session sent keeps the connection busy
// until its answer, so nothing is released here.
func (c *Conn) Unhold() {
	c.mu.Lock()
	c.holding = false
	c.mu.Unlock()
}

// SetKeep pins (or unpins) the client to the connection.
func (c *Conn) SetKeep(keep bool) {
	c.mu.Lock()
	c.keep = keep
	c.mu.Unlock()
}

// LinkedTo reports whether the connection currently serves client.
func (c *Conn) LinkedTo(client *Client) bool {
	c.mu.Lock()
	ok := c.client == client && !c.closed
	c.mu.Unlock()
	return ok
}

// Claim records that the client is about to send a message of type typ on
// this connection, so the pump cannot release it before the server answers.
// It fails with ErrUnlinked when the connection no longer serves client.
func (c *Conn) Claim(client *Client, typ byte) error {
	return c.Send(client, typ, Pass, "")
}

// claimLocked counts a message toward the answers the server owes.
func (c *Conn) claimLocked(typ byte) {
	switch typ {
	case 'Q':
		c.pending++
	case 'S':
		c.pending++
		c.unsynced = false
	case 'F':
		// FunctionCall (fastpath) is answered with ReadyForQuery, as a Query.
		c.pending++
	case 'P', 'B', 'D', 'E', 'C', 'H':
		c.unsynced = true
	}
	// CopyData/CopyDone/CopyFail belong to a Query or Sync already counted.
}

// TxStatus is the server's transaction status ('I', 'T' or 'E') as its last
// ReadyForQuery said, or 'T' while answers are still owed: not at rest.
func (c *Conn) TxStatus() byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status == 'I' && (c.pending > 0 || c.unsynced) {
		return 'T'
	}
	return c.status
}

// InTransaction reports whether the server is inside a transaction block or
// has work in flight for the client.
func (c *Conn) InTransaction() bool {
	c.mu.Lock()
	busy := c.pending > 0 || c.unsynced || c.status != 'I'
	c.mu.Unlock()
	return busy
}

// Write sends bytes the session has claimed. A failed write closes the
// connection; the pump then reports the loss to the linked client.
func (c *Conn) Write(p []byte) error {
	if _, err := c.nc.Write(p); err != nil {
		c.nc.Close()
		return err
	}
	return nil
}

// Detach ends the client's use of the connection. A connection at rest goes
// back to its pool (after resetQuery, if any); one in a transaction is rolled
// back first; one with an answer still in flight is closed, because waiting
// for an unknown amount of output to discard is worse than a new connection.
func (c *Conn) Detach(client *Client, resetQuery string) {
	c.mu.Lock()
	if c.client != client || c.closed {
		c.mu.Unlock()
		return
	}
	c.client = nil
	c.resetRequestsLocked()
	if c.pending > 0 || c.unsynced {
		c.closed = true
		c.mu.Unlock()
		c.nc.Close()
		return
	}
	var q []byte
	if c.status != 'I' {
		q = wire.AppendQuery(q, "ROLLBACK")
		c.pending++
	}
	if resetQuery != "" {
		q = wire.AppendQuery(q, resetQuery)
		c.pending++
		forgetReset(c, resetQuery)
	}
	if len(q) == 0 {
		c.mu.Unlock()
		c.pool.release(c)
		return
	}
	c.cleaning = true
	c.mu.Unlock()
	if _, err := c.nc.Write(q); err != nil {
		c.nc.Close()
	}
}

// Close closes the connection; the pump removes it from its pool.
func (c *Conn) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.nc.Close()
}

// Kill closes the connection on pgswitch's own decision; a linked client is
// told reason instead of "connection lost".
func (c *Conn) Kill(reason string) {
	c.mu.Lock()
	c.killed = reason
	c.closed = true
	c.mu.Unlock()
	c.nc.Close()
}

// Closed reports whether the connection is closed or closing.
func (c *Conn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Wait blocks until the pump has exited (the connection is fully closed).
func (c *Conn) Wait() { <-c.done }

func (c *Conn) setParam(name, value string) {
	c.mu.Lock()
	p := maps.Clone(c.params)
	if p == nil {
		p = map[string]string{}
	}
	p[name] = value
	c.params = p
	c.mu.Unlock()
}

// Release gives an unlinked connection back to its pool.
func (c *Conn) Release() { c.pool.release(c) }

// WaitIdle blocks until every Query and Sync the client sent on the
// connection has been answered, or the connection stops serving the client.
func (c *Conn) WaitIdle(client *Client) {
	c.mu.Lock()
	if c.client != client || c.closed || c.pending == 0 {
		c.mu.Unlock()
		return
	}
	if c.idleWait == nil {
		c.idleWait = make(chan struct{})
	}
	ch := c.idleWait
	c.mu.Unlock()
	select {
	case <-ch:
	case <-c.done:
	}
}

// notifyIdleLocked wakes WaitIdle; c.mu is held.
func (c *Conn) notifyIdleLocked() {
	if c.idleWait != nil && (c.pending == 0 || c.client == nil) {
		close(c.idleWait)
		c.idleWait = nil
	}
}

// forgetReset forgets the statements and settings resetQuery drops.
func forgetReset(c *Conn, resetQuery string) {
	q := strings.ToUpper(resetQuery)
	if strings.Contains(q, "DISCARD ALL") || strings.Contains(q, "DEALLOCATE ALL") {
		c.stmts, c.sqlNames = nil, nil
	}
	c.unnamedBy = nil // any query destroys the unnamed statement
	if strings.Contains(q, "DISCARD ALL") || strings.Contains(q, "RESET ALL") {
		c.sets = nil
	}
}

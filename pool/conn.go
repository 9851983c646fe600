package pool

import (
	"bufio"
	"errors"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgswitch/pgswitch/internal/rawsock"
	"github.com/pgswitch/pgswitch/wire"
)

// ErrUnlinked is returned when the server connection no longer serves the
// client: the unit of work it served is over, or the connection closed.
var ErrUnlinked = errors.New("server connection not linked to this client")

// Conn is one authenticated server connection: a lease that a session
// takes for a unit of work (transaction mode) or for good (session mode,
// pinned), and the pump that forwards the server's answers to the linked
// client and ends the lease when the server is at rest.
//
// The session is the only writer of nc while linked (Detach writes its
// cleanup after unlinking); the pump is its only reader.
type Conn struct {
	pool    *Pool
	nc      net.Conn
	br      *bufio.Reader // the pump's
	pid     uint32
	secret  []byte
	created time.Time     // for display
	born    int64         // monotime at creation, for server_lifetime
	done    chan struct{} // closed when the pump has exited
	answers Answers       // asked by the pump about every answer while linked

	mu       sync.Mutex
	client   *Client           // linked client, nil when idle or being cleaned up
	released chan struct{}     // closed when the client's link ends; made by WaitReleased only, as few units need it
	answered chan struct{}     // closed when nothing is pending for the client any more; made by WaitAnswered only
	keep     bool              // stay linked at rest (session mode, pinned)
	holding  bool              // the session is preparing a unit here (Hold): not released
	writing  bool              // the pump is writing an answer that may end the lease
	cancels  int               // cancel requests in flight for the client: not released
	pending  int               // Query/Sync/FunctionCall sent whose ReadyForQuery has not come
	unsynced bool              // extended-protocol messages sent since the last Sync
	copies   int               // COPYs that wait for the client's data: CopyIn/CopyBothResponses less the client's CopyDone/CopyFails
	status   byte              // last ReadyForQuery status
	closed   bool              // no further use; the pump is exiting or has exited
	killed   *wire.Error       // what to tell the linked client when pgswitch closes it (Kill)
	fatal    bool              // the server's FATAL went to the client: it needs no second
	cleaning bool              // detached with ROLLBACK/reset queries in flight
	discard  bool              // close rather than hand on (a cancel was not confirmed)
	params   map[string]string // server's ParameterStatus values, replaced whole on change
	served   uint64            // units of work served, for stats
	linked   int64             // monotime when Link gave it to a client, for stats (waits.go)
	qstart   int64             // monotime when the batch being answered was sent, for stats (waits.go)

	// The pump's: its output buffer; its socket when raw (then it reads
	// inside Serve); whether the last message it took was a ReadyForQuery
	// (pump.go).
	out []byte
	raw *rawsock.Conn
	atZ bool
	// shutting: pgswitch ended the socket (shut); the pump reads no more of it,
	// as it could not once the socket was closed.
	shutting atomic.Bool

	// Fields below are guarded by pool.mu.
	idleSince int64 // monotime
	inIdle    bool
}

// PID is the server's backend process id.
func (c *Conn) PID() uint32 { return c.pid }

// Addr is the server's address.
func (c *Conn) Addr() string { return c.pool.key.Server }

// Pool returns the pool the connection belongs to.
func (c *Conn) Pool() *Pool { return c.pool }

// Answers returns what the connection's answers are decided by: the
// router's record of the connection's session state.
func (c *Conn) Answers() Answers { return c.answers }

// Params returns the server's current ParameterStatus values. Callers must not
// modify the map.
func (c *Conn) Params() map[string]string {
	c.mu.Lock()
	p := c.params
	c.mu.Unlock()
	return p
}

// Link gives the connection to client for a unit of work, held (see Hold).
// With keep, it stays linked at rest until Detach. From now on the pump
// writes to the client, until the link ends.
func (c *Conn) Link(client *Client, keep bool) {
	c.mu.Lock()
	c.client = client
	c.released, c.answered = nil, nil
	c.keep = keep
	c.holding = true
	c.pending = 0
	c.unsynced = false
	c.copies = 0
	c.fatal = false
	c.qstart = 0
	c.served++
	c.linked = monotime()
	c.mu.Unlock()
}

// Hold keeps the connection with client while the session prepares and
// sends a unit (it reads and changes the connection's session state);
// Unhold ends that. It fails with ErrUnlinked when the connection no
// longer serves client.
func (c *Conn) Hold(client *Client) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != client || c.closed {
		return ErrUnlinked
	}
	c.holding = true
	return nil
}

// Unhold ends Hold. A connection left at rest (the session sent nothing)
// goes back to its pool.
func (c *Conn) Unhold() {
	c.mu.Lock()
	c.holding = false
	release := c.unlinkIfIdleLocked()
	c.mu.Unlock()
	if release {
		c.pool.release(c, true)
	}
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
// this connection, so that the lease cannot end before the server answers.
// It fails with ErrUnlinked when the connection no longer serves client.
func (c *Conn) Claim(client *Client, typ byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != client || c.closed {
		return ErrUnlinked
	}
	switch typ {
	case 'Q', 'F':
		// FunctionCall (fastpath) is answered with ReadyForQuery, as a Query.
		c.startQueryLocked()
		c.pending++
	case 'S':
		c.startQueryLocked()
		c.pending++
		c.unsynced = false
	case 'P', 'B', 'D', 'E', 'C', 'H':
		c.startQueryLocked()
		c.unsynced = true
	case 'c', 'f':
		c.copies--
	}
	// CopyData/CopyDone/CopyFail belong to a Query or Sync already counted.
	return nil
}

// unlinkIfIdleLocked ends the link when the server is at rest and nothing
// keeps the client; the caller then releases the connection. c.mu is held.
func (c *Conn) unlinkIfIdleLocked() bool {
	if c.client == nil || c.closed || c.keep || c.holding || c.writing || c.cancels > 0 ||
		c.pending > 0 || c.unsynced || c.status != 'I' {
		return false
	}
	c.client = nil
	// Counted before the client can see the link end: a session that leases
	// again at once waits for this connection rather than dial another. The
	// caller's release(c, true) counts it back.
	c.pool.homing.Add(1)
	c.unlinkedLocked()
	return true
}

// unlinkedLocked wakes WaitReleased and WaitAnswered; c.mu is held.
func (c *Conn) unlinkedLocked() {
	c.answeredLocked()
	if c.released != nil {
		close(c.released)
		c.released = nil
	}
}

// AtRest reports whether the server has answered everything sent and is
// outside a transaction: the client's next unit of work may go elsewhere.
func (c *Conn) AtRest() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending == 0 && !c.unsynced && c.status == 'I' && c.cancels == 0
}

// StateFor reports, for client, whether the server is still answering it
// (requests not answered up to a ReadyForQuery) and whether the last
// ReadyForQuery left its transaction open; neither once the connection no
// longer serves client.
func (c *Conn) StateFor(client *Client) (busy, inTxn bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != client {
		return false, false
	}
	return c.pending > 0 || c.unsynced, c.status != 'I'
}

// WaitReleased blocks until the connection no longer serves client: the
// server answered everything the client sent and the lease ended, or the
// connection closed. The pump has written the client's last answer then.
func (c *Conn) WaitReleased(client *Client) {
	c.mu.Lock()
	if c.client != client {
		c.mu.Unlock()
		return
	}
	if c.released == nil {
		c.released = make(chan struct{})
	}
	ch := c.released
	c.mu.Unlock()
	select {
	case <-ch:
	case <-c.done:
	}
}

// WaitAnswered blocks while the server owes client the answer to a Query,
// Sync or FunctionCall it sent, as long as the connection serves client:
// the pump has written the client those answers when it returns. Unlike
// WaitReleased, it does not wait for the end of an open transaction. It
// returns early, with copyIn, when the server waits for COPY data the
// client has not sent.
func (c *Conn) WaitAnswered(client *Client) (copyIn bool) {
	c.mu.Lock()
	for !c.closed && c.client == client && c.pending > 0 {
		if c.copies > 0 {
			c.mu.Unlock()
			return true
		}
		if c.answered == nil {
			c.answered = make(chan struct{})
		}
		ch := c.answered
		c.mu.Unlock()
		select {
		case <-ch:
		case <-c.done:
		}
		c.mu.Lock()
	}
	closed := c.closed
	c.mu.Unlock()
	if closed {
		<-c.done // its pump tells a client it served why it closed
	}
	return false
}

// answeredLocked wakes WaitAnswered; c.mu is held.
func (c *Conn) answeredLocked() {
	if c.answered != nil {
		close(c.answered)
		c.answered = nil
	}
}

// BeginCancel notes a cancel request of client for this connection: until
// EndCancel, the connection is not handed to another client, so that a
// cancel that arrives late cannot stop someone else's query. It reports
// false when the connection does not serve client (nothing to cancel).
func (c *Conn) BeginCancel(client *Client) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != client || c.closed {
		return false
	}
	c.cancels++
	return true
}

// EndCancel ends BeginCancel. settled reports whether the server confirmed
// the cancel request (it closed the cancel connection after signalling the
// backend); if not, nobody can tell when it lands, so the connection is
// closed when the client is done with it rather than handed on.
func (c *Conn) EndCancel(settled bool) {
	c.mu.Lock()
	if !settled {
		c.discard = true
	}
	c.cancels--
	release := c.unlinkIfIdleLocked()
	c.mu.Unlock()
	if release {
		c.pool.release(c, true)
	}
}

// Write sends bytes the session has claimed. A failed write closes the
// connection; the pump then reports the loss to the linked client.
func (c *Conn) Write(p []byte) error {
	if _, err := c.nc.Write(p); err != nil {
		c.shut()
		return err
	}
	return nil
}

// Detach ends the client's use of the connection. A connection at rest goes
// back to its pool (after resetQuery, if any); one in a transaction is rolled
// back first; one with an answer still in flight is closed, because waiting
// for an unknown amount of output to discard is worse than a new connection.
// It returns whether the connection may be used again (false: it closes).
func (c *Conn) Detach(client *Client, resetQuery string) bool {
	c.mu.Lock()
	if c.client != client || c.closed {
		c.mu.Unlock()
		return false
	}
	c.client = nil
	c.unlinkedLocked()
	// Still under c.mu: nobody can take the connection before its record
	// forgets the client.
	c.answers.Detached(resetQuery != "")
	if c.pending > 0 || c.unsynced || c.cancels > 0 {
		c.closed = true
		c.mu.Unlock()
		c.shut()
		return false
	}
	var q []byte
	if c.status != 'I' {
		q = wire.AppendQuery(q, "ROLLBACK")
		c.pending++
	}
	if resetQuery != "" {
		q = wire.AppendQuery(q, resetQuery)
		c.pending++
	}
	if len(q) == 0 {
		c.mu.Unlock()
		c.pool.release(c, false)
		return true
	}
	c.cleaning = true
	c.mu.Unlock()
	if _, err := c.nc.Write(q); err != nil {
		c.shut()
		return false
	}
	return true
}

// shut ends the connection's socket for whoever reads or writes it: the
// pump's next step ends it (net.ErrClosed, what a closed socket's read
// says), before what the server may still send (its answer to the end of
// the stream, say) reaches a client, and the pump closes the socket as it
// exits. A socket the pump reads inside rawsock's Serve is shut down
// rather than closed: closing it would wait for Serve's read to return,
// which, when it is the pump itself that closes, never happens, and when
// another goroutine does, may wait for the pump's write to a client that
// does not read.
func (c *Conn) shut() {
	c.shutting.Store(true)
	if c.raw == nil {
		c.nc.Close()
		return
	}
	c.raw.Shutdown()
}

// Close closes the connection; the pump removes it from its pool.
func (c *Conn) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.shut()
}

// Kill closes the connection on pgswitch's own decision; a linked client is
// told e (FATAL) instead of "connection lost".
func (c *Conn) Kill(e *wire.Error) {
	c.mu.Lock()
	c.killed = e
	c.closed = true
	c.mu.Unlock()
	c.shut()
}

// KillFor kills the connection (see Kill) if it still serves client, and
// waits until its pump, the client's writer, has told the client e. It
// reports whether it did.
func (c *Conn) KillFor(client *Client, e *wire.Error) bool {
	if !c.BeginKill(client, e) {
		return false
	}
	<-c.done
	return true
}

// BeginKill kills the connection as KillFor does, without waiting for its
// pump: for a goroutine other than the client's session.
func (c *Conn) BeginKill(client *Client, e *wire.Error) bool {
	c.mu.Lock()
	if c.client != client || c.closed {
		c.mu.Unlock()
		return false
	}
	c.killed = e
	c.closed = true
	c.mu.Unlock()
	c.shut()
	return true
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
func (c *Conn) Release() { c.pool.release(c, false) }

// Done is closed when the connection is fully closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

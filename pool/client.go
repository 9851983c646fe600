package pool

import (
	"net"
	"sync"
	"time"

	"github.com/pgswitch/pgswitch/wire"
)

// outBufs holds client output buffers between batches, so that an idle client
// holds no output buffer at all.
var outBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8192); return &b }}

// fatalWriteTimeout bounds the write of a FATAL error to a client.
const fatalWriteTimeout = 5 * time.Second

// flushAt is the buffered size after which output is written even in the
// middle of a server's answer, bounding memory for large results.
const flushAt = 64 << 10

// Client is the output side of a client connection. Everything written to the
// client goes through it: the pump of the linked server connection forwards
// answers here, and the session writes its own messages (errors, its
// ReadyForQuery when no server is linked). Its mutex serialises the two, so a
// new server's answer never overtakes the end of the previous one.
type Client struct {
	mu   sync.Mutex // held by whoever is writing a batch
	conn net.Conn   // written only under mu
	buf  *[]byte    // pending output, nil between batches; guarded by mu
	err  error      // first write error; later output is dropped; guarded by mu
}

// NewClient returns the output side of conn.
func NewClient(conn net.Conn) *Client { return &Client{conn: conn} }

// Lock starts a batch of output.
func (c *Client) Lock() { c.mu.Lock() }

// Unlock flushes the batch and ends it.
func (c *Client) Unlock() {
	c.flushLocked()
	c.mu.Unlock()
}

// WriteLocked appends raw message bytes; the caller holds the lock.
func (c *Client) WriteLocked(p []byte) {
	if c.err != nil {
		return
	}
	if c.buf == nil {
		c.buf = outBufs.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= flushAt {
		c.flushLocked()
	}
}

func (c *Client) flushLocked() {
	if c.buf == nil {
		return
	}
	if len(*c.buf) > 0 && c.err == nil {
		_, c.err = c.conn.Write(*c.buf)
	}
	b := c.buf
	c.buf = nil
	if cap(*b) <= 4*flushAt {
		*b = (*b)[:0]
		outBufs.Put(b)
	}
}

// Write sends p as one batch.
func (c *Client) Write(p []byte) error {
	c.mu.Lock()
	c.WriteLocked(p)
	c.flushLocked()
	err := c.err
	c.mu.Unlock()
	return err
}

// SendError sends e; a FATAL error also closes the connection so that the
// session's read returns.
func (c *Client) SendError(e *wire.Error) {
	if e.IsFatal() {
		// A client that stopped reading must not hold up whoever is
		// disconnecting it (KILL, shutdown, a server marked down).
		c.conn.SetWriteDeadline(time.Now().Add(fatalWriteTimeout))
	}
	c.mu.Lock()
	c.WriteLocked(e.AppendResponse(nil))
	c.flushLocked()
	c.mu.Unlock()
	if e.IsFatal() {
		c.conn.Close()
	}
}

// Close closes the client connection; the session's read then fails.
func (c *Client) Close() { c.conn.Close() }

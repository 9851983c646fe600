package pool

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/pgswitch/pgswitch/internal/rawsock"
	"github.com/pgswitch/pgswitch/wire"
)

// fatalWriteTimeout bounds the write of a FATAL error to a client.
const fatalWriteTimeout = 5 * time.Second

// flushAt is the buffered size after which output is written even in the
// middle of a server's answer, bounding memory for large results.
const flushAt = 64 << 10

// Client is the output side of a client connection. It has exactly one
// writer at a time, and no lock: the pump of the server connection linked
// to the client while there is one (from Link until the pump has written
// the answer that ends the link), the client's session otherwise. Other
// goroutines never write to a client: they close server connections (whose
// pumps tell the client why) or wake the session.
type Client struct {
	conn   net.Conn
	broken atomic.Bool  // a write failed: the client is gone, later output is dropped
	cut    atomic.Int64 // Cut's deadline (Unix nanoseconds); 0: none
}

// Cut makes every write to the client fail from at on, whoever is writing
// and whatever deadline they set: a client that stops reading cannot hold
// up pgswitch's shutdown. Any goroutine may call it.
func (c *Client) Cut(at time.Time) {
	c.cut.Store(at.UnixNano())
	c.conn.SetWriteDeadline(at)
}

// NewClient returns the output side of conn.
func NewClient(conn net.Conn) *Client { return &Client{conn: conn} }

// Write sends p; the caller is the client's writer.
func (c *Client) Write(p []byte) error {
	if len(p) == 0 || c.broken.Load() {
		return nil
	}
	if _, err := c.conn.Write(p); err != nil {
		c.broken.Store(true)
		if raw := rawsock.Of(c.conn); raw != nil {
			// The session may wait for the client without a read that
			// would see it gone (a client that closed right behind its
			// query, on a Unix socket): waking it is Shutdown's to do.
			raw.Shutdown()
		}
		return err
	}
	return nil
}

// SendError sends e; a FATAL error also closes the connection, so that the
// session's read returns. The caller is the client's writer.
func (c *Client) SendError(e *wire.Error) {
	if e.IsFatal() {
		// A client that stopped reading must not hold up whoever is
		// disconnecting it.
		at := time.Now().Add(fatalWriteTimeout)
		if cut := c.cut.Load(); cut != 0 && cut < at.UnixNano() {
			at = time.Unix(0, cut)
		}
		c.conn.SetWriteDeadline(at)
	}
	c.Write(e.AppendResponse(nil))
	if e.IsFatal() {
		c.conn.Close()
	}
}

// Close closes the client connection; the session's read then fails.
func (c *Client) Close() { c.conn.Close() }

// Conn returns the client's connection, for its addresses.
func (c *Client) Conn() net.Conn { return c.conn }

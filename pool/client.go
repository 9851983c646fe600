package pool

import (
	"net"
	"sync/atomic"
	"time"

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
	broken atomic.Bool // a write failed: the client is gone, later output is dropped
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
		c.conn.SetWriteDeadline(time.Now().Add(fatalWriteTimeout))
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

package pool

import (
	"net"

	"github.com/pgswitch/pgswitch/wire"
)

// passThroughConn is a server connection while pgconn logs in over it for
// a user whose password pgswitch does not know. It answers the server's
// authentication request itself, from the user's wire.PassThrough, and
// hands pgconn every other message, so that pgconn sees the server go from
// the startup packet straight to its verdict (AuthenticationOk or an
// error). After the verdict it only forwards, and connect unwraps it.
type passThroughConn struct {
	net.Conn
	pt      *wire.PassThrough
	user    string
	pending []byte // a message read for pgconn, not all handed over yet
	done    bool   // the server's verdict came: forward only
}

// Read hands pgconn the server's messages, having answered the
// authentication request among them. pgconn's reads come one at a time.
func (c *passThroughConn) Read(b []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.done {
			return c.Conn.Read(b)
		}
		msg, err := wire.ReadServerAuth(c.Conn)
		if err != nil {
			return 0, err
		}
		if code := wire.AuthRequest(msg); c.pt.Answers(code) {
			serverErr, err := c.pt.Answer(c.Conn, c.user, msg)
			if err != nil {
				return 0, err
			}
			if serverErr == nil {
				continue // the verdict comes next
			}
			msg = serverErr
		}
		if wire.AuthRequest(msg) == 0 || msg[0] == 'E' {
			c.done = true
		}
		c.pending = msg
	}
	n := copy(b, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// unwrapPassThrough returns the connection under nc once its login is
// over, so that the pump reads the server without the wrapper.
func unwrapPassThrough(nc net.Conn) net.Conn {
	if c, ok := nc.(*passThroughConn); ok && c.done && len(c.pending) == 0 {
		return c.Conn
	}
	return nc
}

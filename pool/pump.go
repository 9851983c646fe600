package pool

import (
	"bytes"
	"errors"
	"io"
	"net"

	"github.com/pgswitch/pgswitch/internal/rawsock"
	"github.com/pgswitch/pgswitch/wire"
)

// maxServerMessage bounds a server message; PostgreSQL's own limit is 1 GB.
const maxServerMessage = 1 << 30

// errLinkEnded stops forwarding: the client's lease ended.
var errLinkEnded = errors.New("link ended")

// errLarge leaves rawsock's Serve: a message too large to hold is read
// with waits, outside it. Nothing of the message is consumed yet.
var errLarge = errors.New("message too large to read without waiting")

// pump reads the server for the connection's whole life. While a client is
// linked it asks Answers what the client gets for each message, writes that
// when the answer is complete or the server's read buffer is drained, and
// ends the lease at a ReadyForQuery that leaves the server at rest.
// Unlinked, it keeps the connection's state current and notices a server
// that goes away while the connection sits idle.
//
// On a raw socket the pump runs inside rawsock's Serve, which saves the
// read that would find nothing (EAGAIN) after every answer; it steps out
// only to read a message too large to hold, with waits.
func (c *Conn) pump() {
	defer close(c.done)
	defer c.pool.removed(c)
	for {
		var err error
		if c.raw != nil {
			err = c.raw.Serve(c.step)
			if err == errLarge {
				err = c.step()
			}
		} else {
			err = c.step()
		}
		if err != nil {
			c.fail(err)
			return
		}
	}
}

// serving reports whether the pump reads inside rawsock's Serve now.
func (c *Conn) serving() bool { return c.raw != nil && c.raw.Serving() }

// step handles the next message and whatever is buffered behind it.
func (c *Conn) step() error {
	if c.shutting.Load() {
		return net.ErrClosed
	}
	h, err := c.peekHeader()
	if err != nil {
		return err
	}
	c.mu.Lock()
	client := c.client
	c.mu.Unlock()
	if client == nil {
		err = c.unlinkedMessage(h)
	} else {
		err = c.forward(client, h)
	}
	if err == errLinkEnded {
		err = nil
	}
	if err == nil && c.serving() && c.atZ && c.br.Buffered() == 0 && c.raw.Drained() {
		// The server waits for a query: whatever it sends next (an answer,
		// or an error before it closes) comes after the read that drained
		// the socket, and Serve sees it arrive. Only a close right behind
		// the ReadyForQuery (a backend killed) goes unseen until the
		// connection is written to or closed (a stale connection, as if it
		// died a moment later).
		return rawsock.ErrWouldWait
	}
	return err
}

func (c *Conn) peekHeader() (wire.Header, error) {
	b, err := c.br.Peek(wire.HeaderSize)
	if err != nil {
		return wire.Header{}, err
	}
	return wire.ParseHeader(b, maxServerMessage)
}

// forward handles the server's messages to client, starting with the one
// whose header is h, for as long as they are already buffered, and writes
// what the client gets. Inside Serve, a message not yet whole ends it
// with what was handled written (ErrWouldWait, errLarge), to be taken up
// again from its header.
func (c *Conn) forward(client *Client, h wire.Header) error {
	out := c.out[:0]
	defer func() {
		if cap(out) > 4*flushAt {
			out = nil // a large message passed: do not keep its room
		}
		c.out = out[:0]
	}()
	for {
		n := wire.HeaderSize + h.Len
		var msg []byte
		var err error
		consumed := false
		switch {
		case n <= c.br.Size():
			msg, err = c.br.Peek(n)
			if err == rawsock.ErrWouldWait {
				client.Write(out)
				out = out[:0]
				return err
			}
		case c.serving():
			client.Write(out)
			out = out[:0]
			return errLarge
		case h.Type != 'D' && h.Type != 'd':
			// Too large to peek, and not rows: read it whole.
			msg = make([]byte, n)
			_, err = io.ReadFull(c.br, msg)
			consumed = true
		}
		if err != nil {
			return err
		}
		c.atZ = h.Type == 'Z'
		switch h.Type {
		case 'S':
			if name, value, ok := splitParameterStatus(msg[wire.HeaderSize:]); ok {
				c.setParam(name, value)
			}
		case 'G', 'W':
			// The server waits for the client's COPY data now, which a
			// client that ended its stream may never send (WaitAnswered).
			c.mu.Lock()
			c.copies++
			if c.copies > 0 {
				c.answeredLocked()
			}
			c.mu.Unlock()
		case 'E':
			if isFatal(msg) {
				// The server closes the connection after it: it is the
				// client's last word, whoever's request it answers.
				out = append(out, msg...)
				c.br.Discard(n)
				c.mu.Lock()
				c.closed, c.fatal = true, true
				c.mu.Unlock()
				client.Write(out)
				out = out[:0]
				return nil
			}
		}
		var v Verdict
		out, v = c.answers.Answer(out, h.Type, msg)
		switch {
		case msg == nil && v.Stream:
			client.Write(out)
			out = out[:0]
			if err := c.stream(client, n); err != nil {
				return err
			}
		case msg == nil:
			if _, err := c.br.Discard(n); err != nil {
				return err
			}
		case !consumed:
			c.br.Discard(n)
		}
		if h.Type == 'Z' {
			if len(msg) != wire.HeaderSize+1 {
				return wire.Fatalf(wire.CodeProtocolViolation, "server sent ReadyForQuery of length %d", h.Len)
			}
			ended := c.ready(client, msg[wire.HeaderSize], v.Keep, out)
			out = out[:0]
			if ended {
				c.pool.release(c, true)
				return errLinkEnded
			}
			if !c.LinkedTo(client) {
				return errLinkEnded
			}
		}
		if len(out) >= flushAt {
			client.Write(out)
			out = out[:0]
		}
		if c.br.Buffered() < wire.HeaderSize {
			client.Write(out)
			out = out[:0]
			return nil
		}
		if h, err = c.peekHeader(); err != nil {
			return err
		}
	}
}

// stream forwards a message of n bytes too large to hold, as it arrives.
func (c *Conn) stream(client *Client, n int) error {
	for n > 0 {
		k := min(n, c.br.Size())
		b, err := c.br.Peek(k)
		if err != nil {
			return err
		}
		client.Write(b)
		c.br.Discard(k)
		n -= k
	}
	return nil
}

// ready accounts for a ReadyForQuery with status, writes out (the answer
// so far), and then ends the lease if the server is at rest and nothing
// keeps the client (keep: Answers says its state is pinned here). The
// accounting comes first, so that whatever the client does once it has the
// answer finds the connection's state current; the lease ends last, so that
// the client's next writer comes after this one. It reports whether the
// lease ended.
func (c *Conn) ready(client *Client, status byte, keep bool, out []byte) bool {
	c.mu.Lock()
	if c.pending > 0 {
		c.pending--
	}
	c.endQueryLocked()
	c.status = status
	if keep {
		c.keep = true
	}
	c.writing = true
	c.mu.Unlock()
	client.Write(out)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writing = false
	if c.pending == 0 {
		c.answeredLocked()
	}
	return c.client == client && c.unlinkIfIdleLocked()
}

// unlinkedMessage handles what a server says with no client linked: answers
// to cleanup queries, parameter changes, notices, or its goodbye.
func (c *Conn) unlinkedMessage(h wire.Header) error {
	n := wire.HeaderSize + h.Len
	c.atZ = h.Type == 'Z'
	switch h.Type {
	case 'Z':
		if h.Len != 1 {
			return wire.Fatalf(wire.CodeProtocolViolation, "server sent ReadyForQuery of length %d", h.Len)
		}
		b, err := c.br.Peek(n)
		if err != nil {
			return err
		}
		status := b[wire.HeaderSize]
		c.br.Discard(n)
		c.mu.Lock()
		if c.pending > 0 {
			c.pending--
		}
		c.status = status
		done := c.cleaning && c.pending == 0
		if done {
			c.cleaning = false
		}
		c.mu.Unlock()
		if done {
			if status != 'I' {
				c.Close()
				return nil
			}
			c.pool.release(c, false)
		}
		return nil
	case 'S', 'E':
		if n > c.br.Size() {
			if c.serving() {
				return errLarge
			}
			_, err := c.br.Discard(n)
			return err
		}
		b, err := c.br.Peek(n)
		if err != nil {
			return err
		}
		if h.Type == 'S' {
			if name, value, ok := splitParameterStatus(b[wire.HeaderSize:]); ok {
				c.setParam(name, value)
			}
		} else {
			fatal := isFatal(b)
			c.mu.Lock()
			cleaning := c.cleaning
			c.mu.Unlock()
			if fatal || !cleaning {
				c.pool.log.Debug("server error on unlinked connection", "server", c.Addr(), "code", string(wire.ErrorField(b[wire.HeaderSize:], 'C')))
			}
			if fatal {
				c.Close()
			}
		}
		c.br.Discard(n)
		return nil
	default:
		if c.serving() && c.br.Buffered() < n {
			// Discard would consume part of it before it waits.
			if n > c.br.Size() {
				return errLarge
			}
			if _, err := c.br.Peek(n); err != nil {
				return err
			}
		}
		_, err := c.br.Discard(n)
		return err
	}
}

// fail ends the connection after a read error. A linked client loses its
// unit of work: unless the server's own FATAL reached it already, it gets a
// FATAL 08006 (or why pgswitch closed the connection) and is disconnected,
// as it would be if its own server connection had dropped.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	client := c.client
	wasClosed := c.closed
	c.client = nil
	c.closed = true
	c.unlinkedLocked()
	killed, fatal := c.killed, c.fatal
	c.mu.Unlock()
	c.nc.Close()
	if client != nil {
		c.answers.Lost()
		switch {
		case fatal:
			client.Close()
		case killed != nil:
			client.SendError(killed.WithCause(err))
		default:
			client.SendError(wire.Fatalf(wire.CodeConnectionFailure, "server connection to %s lost", c.Addr()).WithCause(err))
		}
	}
	if !wasClosed {
		c.pool.log.Info("server connection closed", "server", c.Addr(), "pid", c.pid, "reason", err.Error())
	}
}

// isFatal reports whether an ErrorResponse message is FATAL or PANIC.
func isFatal(msg []byte) bool {
	sev := wire.ErrorField(msg[wire.HeaderSize:], 'V')
	return string(sev) == wire.SeverityFatal || string(sev) == wire.SeverityPanic
}

func splitParameterStatus(body []byte) (name, value string, ok bool) {
	i := bytes.IndexByte(body, 0)
	if i < 0 {
		return "", "", false
	}
	j := bytes.IndexByte(body[i+1:], 0)
	if j < 0 {
		return "", "", false
	}
	return string(body[:i]), string(body[i+1 : i+1+j]), true
}

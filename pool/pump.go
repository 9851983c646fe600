package pool

import (
	"bytes"
	"errors"
	"io"
	"log/slog"

	"github.com/pgswitch/pgswitch/wire"
)

// errConsumed tells callers of message that it was read out of the buffer.
var errConsumed = errors.New("message consumed")

// maxServerMessage bounds a server message; PostgreSQL's own limit is 1 GB.
const maxServerMessage = 1 << 30

// pump reads the server for the connection's whole life. While a client is
// linked it forwards every message undecoded but for ReadyForQuery, ErrorResponse
// and ParameterStatus; it flushes when the answer is complete or the server's
// read buffer is drained, and it releases the connection at ReadyForQuery 'I'
// in transaction mode. Unlinked, it keeps the connection's state current and
// notices a server that goes away while the connection sits idle.
func (c *Conn) pump() {
	defer close(c.done)
	defer c.pool.removed(c)
	for {
		h, err := c.peekHeader()
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		client := c.client
		c.mu.Unlock()
		if client == nil {
			if err := c.unlinkedMessage(h); err != nil {
				c.fail(err)
				return
			}
			continue
		}
		release, err := c.forwardBatch(client, h)
		if err != nil {
			c.fail(err)
			return
		}
		if release {
			c.pool.release(c)
		}
	}
}

func (c *Conn) peekHeader() (wire.Header, error) {
	b, err := c.br.Peek(wire.HeaderSize)
	if err != nil {
		return wire.Header{}, err
	}
	return wire.ParseHeader(b, maxServerMessage)
}

// forwardBatch forwards messages to client, starting with the one whose header
// is h, for as long as they are already buffered. It reports whether the
// connection must go back to the pool.
func (c *Conn) forwardBatch(client *Client, h wire.Header) (release bool, err error) {
	client.Lock()
	defer client.Unlock()
	for {
		c.mu.Lock()
		still := c.client == client
		g := c.guard
		var before, after []byte
		swallow := false
		if still && len(c.reqs) > c.rhead {
			// Answers to fake requests go out in their turn: those due
			// before this message, and those it makes due by ending an answer.
			before = c.fakesLocked(c.fakeBuf[:0])
			swallow = c.trackLocked(h.Type)
			all := c.fakesLocked(before)
			before, after = all[:len(before)], all[len(before):]
			c.fakeBuf = all[:0]
		}
		c.mu.Unlock()
		if !still {
			return false, nil
		}
		if len(before) > 0 {
			c.emitFakes(client, g, before)
		}
		consumed := false
		if g != nil && !swallow {
			// pgswitch's own requests are not the client's answer: they
			// neither lift nor trip the guard.
			consumed, release, err = c.guarded(client, h, g)
			if err != nil || release {
				return release, err
			}
		}
		if !consumed {
			switch {
			case h.Type == 'Z':
				release, err = c.readyForQuery(client, h, swallow)
				if err != nil || release {
					return release, err
				}
			case h.Type == 'E':
				if err := c.errorResponse(client, h, swallow); err != nil {
					return false, err
				}
			case h.Type == 'S':
				if err := c.parameterStatus(client, h); err != nil {
					return false, err
				}
			case swallow:
				if _, err := c.br.Discard(wire.HeaderSize + h.Len); err != nil {
					return false, err
				}
			default:
				if err := c.copyMessage(client, h); err != nil {
					return false, err
				}
			}
		}
		if len(after) > 0 {
			c.mu.Lock()
			g = c.guard
			c.mu.Unlock()
			c.emitFakes(client, g, after)
		}
		if c.br.Buffered() < wire.HeaderSize {
			return false, nil
		}
		if h, err = c.peekHeader(); err != nil {
			return false, err
		}
	}
}

// emitFakes writes answers to fake requests, or holds them back with the
// rest of a guarded answer (a retried unit answers them again).
func (c *Conn) emitFakes(client *Client, g chan Outcome, b []byte) {
	if g != nil {
		c.held = append(c.held, b...)
		return
	}
	client.WriteLocked(b)
}

// message returns a whole small message (header included) without consuming it.
func (c *Conn) message(h wire.Header) ([]byte, error) {
	n := wire.HeaderSize + h.Len
	if n <= c.br.Size() {
		return c.br.Peek(n)
	}
	// Too large to peek: read it whole; the caller must not discard it again.
	buf := make([]byte, n)
	if _, err := io.ReadFull(c.br, buf); err != nil {
		return nil, err
	}
	return buf, errConsumed
}

// copyMessage forwards one message of any size without decoding it.
func (c *Conn) copyMessage(client *Client, h wire.Header) error {
	n := wire.HeaderSize + h.Len
	for n > 0 {
		k := min(n, c.br.Size())
		b, err := c.br.Peek(k)
		if err != nil {
			return err
		}
		client.WriteLocked(b)
		c.br.Discard(k)
		n -= k
	}
	return nil
}

func (c *Conn) readyForQuery(client *Client, h wire.Header, swallow bool) (release bool, err error) {
	if h.Len != 1 {
		return false, wire.Fatalf(wire.CodeProtocolViolation, "server sent ReadyForQuery of length %d", h.Len)
	}
	b, err := c.br.Peek(wire.HeaderSize + 1)
	if err != nil {
		return false, err
	}
	status := b[5]
	c.mu.Lock()
	if c.pending > 0 {
		c.pending--
	}
	c.endQueryLocked()
	c.status = status
	linked := c.client == client
	if linked && c.pending == 0 && !c.unsynced && status == 'I' && !c.keep && !c.holding {
		c.client = nil
		release = true
	}
	c.notifyIdleLocked()
	c.mu.Unlock()
	if linked && !swallow {
		client.WriteLocked(b)
	}
	c.br.Discard(len(b))
	return release, nil
}

func (c *Conn) errorResponse(client *Client, h wire.Header, swallow bool) error {
	b, err := c.message(h)
	consumed := err == errConsumed
	if err != nil && !consumed {
		return err
	}
	if !swallow {
		client.WriteLocked(b)
	}
	if !consumed {
		c.br.Discard(len(b))
	}
	if sev := errorField(b[wire.HeaderSize:], 'V'); bytes.Equal(sev, []byte("FATAL")) || bytes.Equal(sev, []byte("PANIC")) {
		// The server closes the connection after a FATAL; stop using it now.
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
	}
	return nil
}

func (c *Conn) parameterStatus(client *Client, h wire.Header) error {
	b, err := c.message(h)
	consumed := err == errConsumed
	if err != nil && !consumed {
		return err
	}
	if name, value, ok := splitParameterStatus(b[wire.HeaderSize:]); ok {
		c.setParam(name, value)
	}
	if client != nil {
		client.WriteLocked(b)
	}
	if !consumed {
		c.br.Discard(len(b))
	}
	return nil
}

// unlinkedMessage handles what a server says with no client linked: answers
// to cleanup queries, parameter changes, notices, or its goodbye.
func (c *Conn) unlinkedMessage(h wire.Header) error {
	switch h.Type {
	case 'Z':
		if h.Len != 1 {
			return wire.Fatalf(wire.CodeProtocolViolation, "server sent ReadyForQuery of length %d", h.Len)
		}
		b, err := c.br.Peek(wire.HeaderSize + 1)
		if err != nil {
			return err
		}
		status := b[5]
		c.br.Discard(len(b))
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
			c.pool.release(c)
		}
		return nil
	case 'S':
		return c.parameterStatus(nil, h)
	case 'E':
		b, err := c.message(h)
		consumed := err == errConsumed
		if err != nil && !consumed {
			return err
		}
		sev := errorField(b[wire.HeaderSize:], 'V')
		fatal := bytes.Equal(sev, []byte("FATAL")) || bytes.Equal(sev, []byte("PANIC"))
		if fatal || !c.isCleaning() {
			slog.Debug("server error on unlinked connection", "server", c.Addr(), "code", string(errorField(b[wire.HeaderSize:], 'C')))
		}
		if !consumed {
			c.br.Discard(len(b))
		}
		if fatal {
			c.Close()
		}
		return nil
	default:
		_, err := c.br.Discard(wire.HeaderSize + h.Len)
		return err
	}
}

func (c *Conn) isCleaning() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cleaning
}

// fail ends the connection after a read error. A linked client loses its
// unit of work: it gets a FATAL 08006 and is disconnected, as it would be if
// its own server connection had dropped.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	client := c.client
	wasClosed := c.closed
	g := c.guard
	c.guard = nil
	c.client = nil
	c.closed = true
	killed := c.killed
	c.mu.Unlock()
	c.nc.Close()
	if g != nil {
		g <- Failed
	}
	if client != nil {
		e := wire.Fatalf(wire.CodeConnectionFailure, "server connection to %s lost", c.Addr())
		if killed != "" {
			e = wire.Fatalf(wire.CodeConnectionFailure, "server connection to %s closed by pgswitch: %s", c.Addr(), killed)
		}
		client.SendError(e.WithCause(err))
	}
	if !wasClosed {
		slog.Info("server connection closed", "server", c.Addr(), "pid", c.pid, "reason", err.Error())
	}
}

// errorField returns the value of field code of an ErrorResponse body.
func errorField(body []byte, code byte) []byte {
	for len(body) > 0 && body[0] != 0 {
		f := body[0]
		end := bytes.IndexByte(body[1:], 0)
		if end < 0 {
			return nil
		}
		if f == code {
			return body[1 : 1+end]
		}
		body = body[2+end:]
	}
	return nil
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

package pool

import (
	"bytes"

	"github.com/pgswitch/pgswitch/wire"
)

// Outcome is how a guarded unit of work ended its first answer.
type Outcome uint8

const (
	// Passed: the server answered; its answer is going to the client.
	Passed Outcome = iota
	// Refused: the server refused the unit as read-only (25006) before any
	// of its answer reached the client; the connection went back to its pool
	// and the unit may run elsewhere.
	Refused
	// Failed: the connection was lost; the client has been told.
	Failed
	// Stale: a prepared statement's plan no longer matches its result type
	// after a schema change (0A000) and nothing reached the client; the
	// unit may run again with the statement prepared afresh.
	Stale
)

// staleMessage is the start of PostgreSQL's message for a stale plan; 0A000
// alone also means other unsupported features.
var staleMessage = []byte("cached plan must not change result type")

// codeReadOnlyTransaction is what a hot standby says to a write.
var codeReadOnlyTransaction = []byte("25006")

// Guard makes the pump hold back the answer to the unit the session is about
// to send until it knows whether the server refused it as read-only. The
// session must wait for the outcome before it sends anything more.
func (c *Conn) Guard() <-chan Outcome {
	ch := make(chan Outcome, 1)
	c.mu.Lock()
	c.guard = ch
	c.mu.Unlock()
	return ch
}

// heldBack reports whether a message may precede a refusal: descriptions and
// acknowledgements that say nothing of the outcome.
func heldBack(typ byte) bool {
	switch typ {
	case '1', '2', 't', 'n', 'T', 'S', 'N':
		return true
	}
	return false
}

// guarded handles a message while a guard is set. It returns done=true when
// the message was consumed here, and otherwise lifts the guard so that the
// caller forwards the message as usual.
func (c *Conn) guarded(client *Client, h wire.Header, g chan Outcome) (done, release bool, err error) {
	if c.refusing {
		if h.Type != 'Z' {
			_, err := c.br.Discard(5 + h.Len)
			return true, false, err
		}
		b, err := c.br.Peek(6)
		if err != nil {
			return true, false, err
		}
		status := b[5]
		c.br.Discard(6)
		c.refusing = false
		c.held = c.held[:0]
		c.mu.Lock()
		if c.pending > 0 {
			c.pending--
		}
		c.status = status
		c.guard = nil
		ok := c.pending == 0 && !c.unsynced && status == 'I'
		c.client = nil
		if !ok {
			c.closed = true
		}
		c.notifyIdleLocked()
		c.mu.Unlock()
		if !ok {
			c.nc.Close()
		}
		out := c.refusal
		c.refusal = Refused
		g <- out
		return true, ok, nil
	}
	if heldBack(h.Type) {
		n := 5 + h.Len
		for n > 0 {
			k := min(n, c.br.Size())
			b, err := c.br.Peek(k)
			if err != nil {
				return true, false, err
			}
			c.held = append(c.held, b...)
			c.br.Discard(k)
			n -= k
		}
		return true, false, nil
	}
	if h.Type == 'E' {
		b, err := c.message(h)
		consumed := err == errConsumed
		if err != nil && !consumed {
			return true, false, err
		}
		code := errorField(b[5:], 'C')
		stale := string(code) == "0A000" && bytes.HasPrefix(errorField(b[5:], 'M'), staleMessage)
		if string(code) == string(codeReadOnlyTransaction) || stale {
			if !consumed {
				c.br.Discard(len(b))
			}
			c.refusing = true
			c.refusal = Refused
			if stale {
				c.refusal = Stale
			}
			return true, false, nil
		}
		// Any other error is the client's answer: fall through unconsumed.
	}
	client.WriteLocked(c.held)
	c.held = c.held[:0]
	c.mu.Lock()
	c.guard = nil
	c.mu.Unlock()
	g <- Passed
	return false, false, nil
}

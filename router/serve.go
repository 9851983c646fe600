package router

import (
	"errors"
	"slices"

	"github.com/pgswitch/pgswitch/internal/rawsock"
	"github.com/pgswitch/pgswitch/wire"
)

// Reading the client inside rawsock's Serve saves, once per answer, the
// read that finds nothing: after a batch that the server answers, the
// session waits for the client's next message at once (see rawsock.Serve).
// The read it skips could also have found the client's end of stream if
// that came with the batch; but then the answer's write finds the client
// gone (a reset wakes the wait; on a Unix socket the failed write shuts it
// down, pool.Client.Write), and a client that only half-closed is found
// when the parker asks the idle session to park. So only sessions the
// parker watches (transaction mode, where parking is on) skip that read.
// Sessions with idle limits read with waits: their deadlines are per wait.

var (
	// errStepOut leaves Serve: idle limits apply now, and the client is
	// read with waits (readMessage).
	errStepOut = errors.New("client message larger than the read buffer")
	// errEnded leaves Serve: the session ended, and said why.
	errEnded = errors.New("session ended")
)

// serveClient reads the client's messages inside Serve until the session
// ends (end), parks (park), or steps out to read a message with waits.
func (s *Session) serveClient(raw *rawsock.Conn, maxMsg int) (end, park bool) {
	err := raw.Serve(func() error { return s.serveStep(raw, maxMsg) })
	switch err {
	case errStepOut:
		return false, false
	case errEnded:
		return true, false
	}
	// Serve's wait ended without a message: a deadline (the parker's
	// request, a pump's wake, a kick), or the socket's error.
	s.watching = false
	park, err = s.woken(err)
	if err != nil {
		s.readFailed(err)
		return true, false
	}
	return park, park
}

// serveStep is one turn of run inside Serve: it takes the client's next
// message once it is whole, and never waits (rawsock.ErrWouldWait asks
// Serve to).
func (s *Session) serveStep(raw *rawsock.Conn, maxMsg int) error {
	if s.watching {
		// The wait ended with the socket ready (a deadline ends Serve).
		s.watching = false
		s.heard()
	}
	if e := s.kicked.Load(); e != nil {
		// Reads inside Serve do not see the kick's deadline; a client
		// that never stops sending must not outlast it.
		s.fatal(e)
		return errEnded
	}
	if n := len(s.b.msgs); n > 0 && s.b.msgs[n-1].end > len(s.b.buf) {
		return s.rest()
	}
	if s.idleLimited() {
		return errStepOut // limits came with a reload
	}
	if s.in.buffered() == 0 {
		watch := s.watches()
		if watch {
			s.setWaiting()
			if s.settleSent() {
				return nil
			}
		}
		if watch && s.owed && raw.Drained() && s.r.parker.scans() {
			// The client waits for the answer to what it sent, and the
			// read that took it found nothing behind it.
			s.owed = false
			s.watching = true
			return rawsock.ErrWouldWait
		}
		_, err := s.in.br.Peek(1)
		if err == rawsock.ErrWouldWait {
			s.watching = watch
			return err
		}
		if watch {
			s.heard()
		}
		if err != nil {
			s.readFailed(err)
			return errEnded
		}
	}
	s.owed = false
	large, err := s.in.whole(maxMsg)
	switch err {
	case nil:
	case rawsock.ErrWouldWait:
		return err
	default:
		s.readFailed(err)
		return errEnded
	}
	s.settleWait() // the client pipelines (see readMessage)
	h, err := s.in.next(maxMsg)
	if err != nil {
		s.readFailed(err)
		return errEnded
	}
	if !large {
		if !s.take(h) {
			return errEnded
		}
		s.owe(h.Type)
		return nil
	}
	// Larger than the read buffer: read into the batch as it comes.
	if !s.admit(h) {
		return errEnded
	}
	start := len(s.b.buf)
	s.b.buf = append(slices.Grow(s.b.buf, wire.HeaderSize+h.Len), s.in.hdr[:]...)
	s.b.msgs = append(s.b.msgs, span{typ: h.Type, start: start, end: start + wire.HeaderSize + h.Len})
	return s.rest()
}

// rest reads the rest of the batch's last message, one larger than the
// read buffer, as far as it has come; once it is whole, the batch goes on
// (taken).
func (s *Session) rest() error {
	m := s.b.msgs[len(s.b.msgs)-1]
	for len(s.b.buf) < m.end {
		n, err := s.in.br.Read(s.b.buf[len(s.b.buf):m.end])
		s.b.buf = s.b.buf[:len(s.b.buf)+n]
		if err == rawsock.ErrWouldWait {
			return err
		} else if err != nil {
			s.readFailed(err)
			return errEnded
		}
	}
	s.taken()
	s.owe(m.typ)
	return nil
}

// owe notes, after the client's message of type typ was taken, whether an
// answer is owed: for a query or a Sync that went to a server, once the
// batch has gone (nothing of the client's is buffered).
func (s *Session) owe(typ byte) {
	s.owed = (typ == 'Q' || typ == 'S') && s.in.buffered() == 0 && s.cur != nil
}

// whole reports whether the next message is whole in the read buffer (nil)
// or too large for it (large: its header is), and ErrWouldWait inside
// Serve until then. A bad header counts as whole: next says what is wrong.
func (r *clientReader) whole(max int) (large bool, err error) {
	b, err := r.br.Peek(wire.HeaderSize)
	if err != nil {
		return false, err
	}
	h, err := wire.ParseHeader(b, max)
	if err != nil {
		return false, nil
	}
	if n := wire.HeaderSize + h.Len; n > r.br.Size() {
		return true, nil
	} else if _, err := r.br.Peek(n); err != nil {
		return false, err
	}
	return false, nil
}

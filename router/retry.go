// Retries of a unit refused before any answer reached the client: on the
// primary after 25006, with statements prepared afresh after 0A000.

package router

import (
	"encoding/binary"
	"github.com/pgswitch/pgswitch/config"

	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/wire"
)

// origMax bounds the client messages kept for a retry.
const origMax = 64 << 10

// record keeps a copy of a client message until the next flush, so that a
// unit refused before any answer reached the client can run again.
func (s *Session) record(typ byte, msg []byte) {
	if s.rerunning || !s.origOK || s.mode != config.PoolModeTransaction {
		return // only transaction-mode units are retried
	}
	switch {
	case typ == 'd' || typ == 'c' || typ == 'f', len(s.orig)+len(msg) > origMax:
		s.origOK = false
		s.orig = s.orig[:0]
	default:
		s.orig = append(s.orig, msg...)
	}
}

// retry runs the unit just answered with a refusal again: on the primary
// after a replica refused it as read-only, or with its statements prepared
// afresh after the server found their plans stale. Nothing of the refused
// answer reached the client.
func (s *Session) retry(outcome pool.Outcome, buf []byte) {
	s.cur = nil // the pump gave it back to its pool, or closed it
	s.server.Store(nil)
	if !s.origOK || len(s.orig) == 0 {
		if outcome == pool.Refused {
			s.retryOnPrimary(buf)
			return
		}
		e := wire.Errorf(wire.CodeFeatureNotSupported, "cached plan must not change result type")
		s.client.Write(wire.AppendReadyForQuery(e.AppendResponse(nil), idleStatus))
		return
	}
	if outcome == pool.Stale {
		for _, d := range s.unitDefs {
			d.renew()
			if s.renewed == nil {
				s.renewed = map[string]int{}
			}
			s.renewed[d.base] = d.gen
		}
		if !describesResult(s.orig) {
			// The client decodes rows with a description it cached: rows of
			// the new shape would break it. Tell it, as PostgreSQL would; its
			// next Parse prepares the statement afresh.
			e := wire.Errorf(wire.CodeFeatureNotSupported, "cached plan must not change result type").
				WithHint("The table changed; prepare the statement again.")
			s.client.Write(wire.AppendReadyForQuery(e.AppendResponse(nil), idleStatus))
			return
		}
		s.r.log.Info("statement plan stale after a schema change; preparing it again", "database", s.db.Name)
	} else {
		write := classify.Result{Route: classify.Write, Reason: "write: a replica refused it as read-only (25006)"}
		for _, d := range s.unitDefs {
			d.res = write
		}
		if h, err := wire.ParseHeader(buf, len(buf)); err == nil {
			if sql := s.unitText(h.Type, buf); sql != "" {
				s.dbs.classifier.Remember(sql, write)
			}
		}
		s.r.log.Info("replica refused a read as read-only; retrying on the primary", "database", s.db.Name)
	}
	orig := s.orig
	s.orig = nil
	s.rerunning, s.forcePri = true, outcome == pool.Refused
	defer func() { s.rerunning, s.forcePri = false, false }()
	s.extOpen = false
	for len(orig) >= wire.HeaderSize {
		h, err := wire.ParseHeader(orig, len(orig))
		if err != nil || wire.HeaderSize+h.Len > len(orig) {
			break
		}
		msg := orig[:wire.HeaderSize+h.Len]
		orig = orig[len(msg):]
		if s.out == nil {
			s.out = outBufs.Get().(*[]byte)
		}
		start := len(*s.out)
		*s.out = append(*s.out, msg...)
		if err := s.claim(h.Type, start); err != nil {
			*s.out = (*s.out)[:start]
			s.unitFailed(h.Type, err)
		}
	}
	s.flush()
}

// describesResult reports whether a unit asks for its rows' description
// (Describe) and leaves result formats to one code for all columns, so that
// rows of a new shape after a schema change are what the client expects.
func describesResult(msgs []byte) bool {
	described := false
	for len(msgs) >= wire.HeaderSize {
		h, err := wire.ParseHeader(msgs, len(msgs))
		if err != nil || wire.HeaderSize+h.Len > len(msgs) {
			return false
		}
		body := msgs[wire.HeaderSize : wire.HeaderSize+h.Len]
		msgs = msgs[wire.HeaderSize+h.Len:]
		switch h.Type {
		case 'D':
			described = true
		case 'B':
			if n, ok := bindResultFormats(body); !ok || n > 1 {
				return false
			}
		}
	}
	return described
}

// bindResultFormats returns the number of result format codes of a Bind.
func bindResultFormats(b []byte) (int, bool) {
	_, b = splitCString(b) // portal
	_, b = splitCString(b) // statement
	u16 := func() (int, bool) {
		if len(b) < 2 {
			return 0, false
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		return n, true
	}
	n, ok := u16()
	if !ok || len(b) < 2*n {
		return 0, false
	}
	b = b[2*n:]
	if n, ok = u16(); !ok {
		return 0, false
	}
	for range n {
		if len(b) < 4 {
			return 0, false
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l > 0 {
			if len(b) < l {
				return 0, false
			}
			b = b[l:]
		}
	}
	return u16()
}

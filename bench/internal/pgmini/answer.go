package pgmini

import "encoding/binary"

// Scanner follows a server's message stream to tell when an answer ends
// (its ReadyForQuery is complete). Its zero value is ready; it reads
// headers only, and the bytes it is fed may split them anywhere.
type Scanner struct {
	skip int    // bytes of the current message's body still to come
	typ  byte   // the current message's type
	hdr  []byte // a partial header
}

// Feed consumes p and reports whether a ReadyForQuery ended in it.
func (s *Scanner) Feed(p []byte) bool {
	done := false
	for len(p) > 0 {
		if s.skip > 0 {
			k := min(s.skip, len(p))
			s.skip -= k
			p = p[k:]
			if s.skip == 0 && s.typ == 'Z' {
				done = true
			}
			continue
		}
		k := min(5-len(s.hdr), len(p))
		s.hdr = append(s.hdr, p[:k]...)
		p = p[k:]
		if len(s.hdr) < 5 {
			break
		}
		s.typ = s.hdr[0]
		s.skip = int(binary.BigEndian.Uint32(s.hdr[1:5])) - 4
		s.hdr = s.hdr[:0]
		if s.skip == 0 && s.typ == 'Z' {
			done = true
		}
	}
	return done
}

package track

import "maps"

// A change is one confirmed effect on session settings, or a savepoint
// marker. Settings are transactional in PostgreSQL: changes made in a
// transaction (explicit, or the implicit one of a multi-statement Query or
// of an extended-protocol batch up to Sync) last only if it commits, and
// ROLLBACK TO SAVEPOINT undoes those made after the savepoint.
type changeKind uint8

const (
	changeSet changeKind = iota + 1
	changeReset
	changeResetAll
	changeSnapshot // the server's whole set of session settings, read back (capture)
	changeSavepoint
	changeRelease
	changeRollbackTo
)

type change struct {
	kind     changeKind
	name     string            // parameter, or savepoint
	sql      string            // changeSet: the statement that sets it
	snapshot map[string]string // changeSnapshot
	// client: the change is the client's own, not pgswitch's replay of
	// what the client had already (which changes only the server's record).
	client bool
}

// note records a change of the open transaction; s.mu is held.
func (s *Server) noteLocked(ch change) {
	switch ch.kind {
	case changeRelease:
		// RELEASE drops the savepoint and those after it; changes stay.
		if i := s.savepointLocked(ch.name); i >= 0 {
			kept := s.txn[:i]
			for _, c := range s.txn[i:] {
				if c.kind != changeSavepoint {
					kept = append(kept, c)
				}
			}
			s.txn = kept
		}
	case changeRollbackTo:
		if i := s.savepointLocked(ch.name); i >= 0 {
			s.txn = s.txn[:i+1]
		}
		s.failed = false // the transaction is usable again
	default:
		s.txn = append(s.txn, ch)
	}
}

func (s *Server) savepointLocked(name string) int {
	for i := len(s.txn) - 1; i >= 0; i-- {
		if s.txn[i].kind == changeSavepoint && s.txn[i].name == name {
			return i
		}
	}
	return -1
}

// commitLocked applies the open transaction's changes to the server's
// record and, for the client's own, to the linked client's; s.mu is held.
func (s *Server) commitLocked() {
	if len(s.txn) == 0 {
		return
	}
	cl := s.client
	if cl != nil {
		cl.mu.Lock()
	}
	for _, ch := range s.txn {
		s.applyLocked(ch)
		if ch.client && cl != nil {
			cl.applyLocked(ch)
		}
	}
	if cl != nil {
		cl.mu.Unlock()
	}
	s.txn = s.txn[:0]
}

// applyLocked applies a committed change to the server's settings.
func (s *Server) applyLocked(ch change) {
	s.sameAs = nil
	switch ch.kind {
	case changeSet:
		s.settings[ch.name] = ch.sql
	case changeReset:
		delete(s.settings, ch.name) // the server's default: it has no startup values
	case changeResetAll:
		clear(s.settings)
	case changeSnapshot:
		s.settings = maps.Clone(ch.snapshot)
	}
}

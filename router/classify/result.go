package classify

import "strings"

// Route says where a unit of work may run.
type Route uint8

const (
	// Write is the zero value on purpose: what is not provably read-only goes
	// to the primary.
	Write Route = iota
	Read
)

func (r Route) String() string {
	if r == Read {
		return "read"
	}
	return "write"
}

// Kind flags the statements the router must notice for transactions and
// session state, whatever their route. A multi-statement text ORs the kinds of
// its statements; Stmts keeps them apart.
type Kind uint32

const (
	KindBegin                  Kind = 1 << iota // BEGIN, START TRANSACTION
	KindBeginReadOnly                           // BEGIN/START TRANSACTION … READ ONLY (not SERIALIZABLE: a standby refuses it)
	KindSetTransactionReadOnly                  // SET TRANSACTION … READ ONLY (not SERIALIZABLE)
	KindCommit                                  // COMMIT, END
	KindRollback                                // ROLLBACK, ABORT; not ROLLBACK TO SAVEPOINT
	KindSet                                     // session SET name = value (Stmt.Name names it)
	KindSetLocal                                // SET LOCAL, SET TRANSACTION
	KindListen                                  // LISTEN
	KindAdvisoryLock                            // a call to a session-level advisory lock or unlock function
	KindTemp                                    // creates a temporary object of any kind (table, view, sequence, type, function, …)
	KindDeclareWithHold                         // DECLARE … WITH HOLD
	KindPrepare                                 // PREPARE (Route is the prepared statement's; Stmt.Name its name)
	KindExecute                                 // EXECUTE (Stmt.Name)
	KindDeallocate                              // DEALLOCATE name (Stmt.Name), or ALL ("")
	KindDiscardAll                              // DISCARD ALL
	KindCopyFrom                                // COPY … FROM
	KindCopyTo                                  // COPY … TO
	KindEmpty                                   // empty text, or only comments and semicolons
	KindCursor                                  // DECLARE, FETCH, MOVE, CLOSE
	KindReset                                   // RESET name, SET name TO DEFAULT, RESET ALL (Stmt.Name "all")
	KindSetUnknown                              // may change session settings in a way only the server can tell: set_config(…, not true), DO, CALL, SET … FROM CURRENT, SET SESSION CHARACTERISTICS
	KindRole                                    // SET or RESET of ROLE or SESSION AUTHORIZATION
	KindSavepoint                               // SAVEPOINT (Stmt.Name)
	KindRelease                                 // RELEASE SAVEPOINT (Stmt.Name)
	KindRollbackTo                              // ROLLBACK TO SAVEPOINT (Stmt.Name)
	KindDDL                                     // changes the catalog: plans of statements prepared before it may be stale
)

var kindNames = [...]string{
	"begin", "begin-read-only", "set-transaction-read-only", "commit", "rollback",
	"set", "set-local", "listen", "advisory-lock", "temp", "declare-with-hold",
	"prepare", "execute", "deallocate", "discard-all", "copy-from", "copy-to", "empty",
	"cursor", "reset", "set-unknown", "role", "savepoint", "release", "rollback-to", "ddl",
}

// Has reports whether all flags of f are set in k.
func (k Kind) Has(f Kind) bool { return k&f == f }

// Any reports whether any flag of f is set in k.
func (k Kind) Any(f Kind) bool { return k&f != 0 }

func (k Kind) String() string {
	var b strings.Builder
	for i, name := range kindNames {
		if k&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(name)
		}
	}
	return b.String()
}

// Stmt is one statement of a text, as far as session state goes. Names are
// identifiers, never literals, so a Stmt holds for every text of the same
// literal-free shape (the cache key).
type Stmt struct {
	Kind  Kind
	Route Route
	// Name is what the statement names: the parameter of SET/RESET (lower
	// case; "all" for RESET ALL), the statement of PREPARE, EXECUTE and
	// DEALLOCATE ("" for DEALLOCATE ALL), the savepoint of SAVEPOINT,
	// RELEASE and ROLLBACK TO.
	Name string
}

// Result is the classification of one query text. Results come from a cache
// shared by all sessions: treat Stmts as read-only.
type Result struct {
	Route  Route
	Kind   Kind
	Reason string   // "read: SELECT", "write: nextval() is on the write list", "hint: replica", …
	Hint   HintKind // the hint the text carried, if any
	Stmts  []Stmt   // the text's statements in order; nil when it has none or cannot be parsed
	// Shape is the hash of the text's literal-free form (see Classifier.ShapeKey),
	// set on every call: equal for texts that differ only in literals.
	Shape uint64
}

// Single returns the text's only statement, and false when it has more or none.
func (r Result) Single() (Stmt, bool) {
	if len(r.Stmts) != 1 {
		return Stmt{}, false
	}
	return r.Stmts[0], true
}

// Combine classifies two parts of one unit of work together (statements of
// one extended-protocol batch): a write if either writes, a hint only if
// both carry it.
func Combine(a, b Result) Result {
	out := a
	out.Kind |= b.Kind
	if a.Hint != b.Hint {
		out.Hint = HintNone
	}
	if a.Route != Write && b.Route == Write {
		out.Route, out.Reason = Write, b.Reason
	}
	return out
}

// Reasons that are not built from a name.
const (
	reasonUnparsable = "write: pg_query could not parse it"
	reasonEmpty      = "read: empty query"
	reasonHintPri    = "hint: primary"
	reasonHintRep    = "hint: replica"
)

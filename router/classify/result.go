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
// its statements. It is a uint32, not a uint8: there are more than 8 flags.
type Kind uint32

const (
	KindBegin                  Kind = 1 << iota // BEGIN, START TRANSACTION
	KindBeginReadOnly                           // BEGIN/START TRANSACTION … READ ONLY (not SERIALIZABLE: a standby refuses it)
	KindSetTransactionReadOnly                  // SET TRANSACTION … READ ONLY (not SERIALIZABLE)
	KindCommit                                  // COMMIT, END
	KindRollback                                // ROLLBACK, ABORT; not ROLLBACK TO SAVEPOINT
	KindSet                                     // session SET, RESET, RESET ALL (Params names them; RESET ALL is "ALL")
	KindSetLocal                                // SET LOCAL, SET TRANSACTION
	KindListen                                  // LISTEN
	KindAdvisoryLock                            // a call to a session-level advisory lock or unlock function
	KindTempTable                               // CREATE TEMP TABLE/VIEW/SEQUENCE, CREATE TEMP TABLE AS, SELECT INTO TEMP
	KindDeclareWithHold                         // DECLARE … WITH HOLD
	KindPrepare                                 // PREPARE (Route is the prepared statement's)
	KindExecute                                 // EXECUTE
	KindDeallocate                              // DEALLOCATE name / ALL
	KindDiscardAll                              // DISCARD ALL
	KindCopyFrom                                // COPY … FROM
	KindCopyTo                                  // COPY … TO
	KindEmpty                                   // empty text, or only comments and semicolons
	KindCursor                                  // DECLARE, FETCH, MOVE, CLOSE
)

var kindNames = [...]string{
	"begin", "begin-read-only", "set-transaction-read-only", "commit", "rollback",
	"set", "set-local", "listen", "advisory-lock", "temp-table", "declare-with-hold",
	"prepare", "execute", "deallocate", "discard-all", "copy-from", "copy-to", "empty",
	"cursor",
}

// Has reports whether all flags of f are set in k.
func (k Kind) Has(f Kind) bool { return k&f == f }

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

// Result is the classification of one query text. Results come from a cache
// shared by all sessions: treat Params as read-only.
type Result struct {
	Route  Route
	Kind   Kind
	Reason string   // "read: SELECT", "write: nextval() is on the write list", "hint: replica", …
	Hint   HintKind // the hint the text carried, if any
	Params []string // parameters named by SET/RESET/SET LOCAL, in order; "ALL" for RESET ALL
}

// Reasons that are not built from a name.
const (
	reasonUnparsable = "write: pg_query could not parse it"
	reasonEmpty      = "read: empty query"
	reasonHintPri    = "hint: primary"
	reasonHintRep    = "hint: replica"
)

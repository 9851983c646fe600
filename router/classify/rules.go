package classify

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The routing rules, applied to pg_query's parse tree on a cache miss. They are
// pure functions of the text and the function sets, so they table-test alone.

// funcSets are the function names, beyond the built-in write list, that make a
// query a write.
type funcSets struct {
	user     map[string]struct{} // Options.WriteFunctions
	volatile map[string]struct{} // SetVolatile
}

// verdict is the outcome of one parse.
type verdict struct {
	Result
	// exact: the outcome depends on a literal's value (EXPLAIN (ANALYZE 0)),
	// so it must be cached by exact text, not by the literal-free form.
	exact bool
}

// decide classifies sql, which the scanner found to carry hint and at least
// one token.
func decide(sql string, hint HintKind, fs funcSets) verdict {
	v := decideText(sql, fs)
	v.Hint = hint
	switch hint {
	case HintPrimary:
		v.Route, v.Reason = Write, reasonHintPri
	case HintReplica:
		v.Route, v.Reason = Read, reasonHintRep
	}
	return v
}

func decideText(sql string, fs funcSets) verdict {
	// pg_query reads a C string: it would stop at a NUL byte and miss what
	// follows. The server refuses such a Query message anyway.
	if strings.IndexByte(sql, 0) >= 0 {
		return verdict{Result: Result{Route: Write, Reason: "write: text holds a NUL byte"}}
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return verdict{Result: Result{Route: Write, Reason: reasonUnparsable}}
	}
	if len(tree.Stmts) == 0 {
		return verdict{Result: Result{Route: Read, Kind: KindEmpty, Reason: reasonEmpty}}
	}
	out := verdict{Result: Result{Route: Read}}
	for i, raw := range tree.Stmts {
		s := classifyStmt(raw.GetStmt(), fs)
		// BEGIN; SET TRANSACTION READ ONLY; … is a read-only transaction, as
		// BEGIN READ ONLY is.
		if s.plainBegin && i+1 < len(tree.Stmts) {
			if next := classifyStmt(tree.Stmts[i+1].GetStmt(), fs); next.Kind.Has(KindSetTransactionReadOnly) {
				s.Route, s.Kind, s.Reason = Read, s.Kind|KindBeginReadOnly, "read: BEGIN; SET TRANSACTION READ ONLY"
			}
		}
		out.Kind |= s.Kind
		out.Stmts = append(out.Stmts, Stmt{Kind: s.Kind, Route: s.Route, Name: s.name})
		out.exact = out.exact || s.exact
		switch {
		case s.Route == Write && out.Route == Read:
			out.Route, out.Reason = Write, s.Reason
		case i == 0:
			out.Reason = s.Reason
		}
	}
	return out
}

// stmtVerdict is the outcome for one statement.
type stmtVerdict struct {
	verdict
	plainBegin bool   // BEGIN or START TRANSACTION that is not READ ONLY
	name       string // Stmt.Name
}

func read(reason string) stmtVerdict {
	return stmtVerdict{verdict: verdict{Result: Result{Route: Read, Reason: reason}}}
}

func write(reason string) stmtVerdict {
	return stmtVerdict{verdict: verdict{Result: Result{Route: Write, Reason: reason}}}
}

// readIf is a read with reason unless the walk found something that writes.
func readIf(f *findings, reason string) stmtVerdict {
	if f.writeReason != "" {
		return write(f.writeReason)
	}
	return read(reason)
}

// Cursor options from PostgreSQL's parsenodes.h.
const cursorOptHold = 0x0020

func classifyStmt(n *pg_query.Node, fs funcSets) stmtVerdict {
	if n == nil {
		return write("write: empty statement node")
	}
	var f findings
	f.walk(n.ProtoReflect(), fs)
	v := classifyNode(n, &f, fs)
	return v
}

// classifyNode applies the statement rules. f holds what the walk of n found.
func classifyNode(n *pg_query.Node, f *findings, fs funcSets) stmtVerdict {
	// Kinds that follow from what the statement runs; statements that do not
	// run their query (PREPARE, EXPLAIN without ANALYZE) clear them.
	var ran Kind
	if f.advisory {
		ran |= KindAdvisoryLock
	}
	if f.tempInto {
		ran |= KindTemp | KindDDL
	}
	if f.setUnknown {
		ran |= KindSetUnknown
	}
	var v stmtVerdict
	switch s := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		v = readIf(f, "read: SELECT")
		v.Kind = ran
	case *pg_query.Node_VariableShowStmt:
		v = read("read: SHOW")
	case *pg_query.Node_ExplainStmt:
		analyze, exact := explainAnalyze(s.ExplainStmt.GetOptions())
		if !analyze {
			v = read("read: EXPLAIN without ANALYZE runs nothing")
		} else {
			inner := classifyStmt(s.ExplainStmt.GetQuery(), fs)
			v = read("read: EXPLAIN ANALYZE of a read")
			if inner.Route == Write {
				v = write(inner.Reason)
			}
			v.Kind = inner.Kind & (KindAdvisoryLock | KindTemp | KindSetUnknown | KindDDL)
		}
		v.exact = exact
	case *pg_query.Node_CopyStmt:
		c := s.CopyStmt
		switch {
		case c.IsFrom:
			v = write("write: COPY FROM")
			v.Kind = KindCopyFrom
		case c.Query != nil:
			inner := classifyStmt(c.Query, fs)
			v = read("read: COPY (query) TO")
			if inner.Route == Write {
				v = write(inner.Reason)
			}
			v.Kind = KindCopyTo | inner.Kind&(KindAdvisoryLock|KindTemp|KindSetUnknown)
		default:
			v = read("read: COPY TO")
			v.Kind = KindCopyTo
		}
	case *pg_query.Node_DeclareCursorStmt:
		if s.DeclareCursorStmt.Options&cursorOptHold != 0 {
			// A held cursor outlives the transaction: it is session state on
			// the server that made it.
			v = write("write: DECLARE … WITH HOLD")
			v.Kind = KindCursor | KindDeclareWithHold | ran
		} else {
			inner := classifyStmt(s.DeclareCursorStmt.GetQuery(), fs)
			v = inner
			v.Kind = KindCursor | inner.Kind
			if inner.Route == Read {
				v.Reason = "read: DECLARE of a read"
			}
		}
	case *pg_query.Node_PrepareStmt:
		inner := classifyStmt(s.PrepareStmt.GetQuery(), fs)
		v = inner
		v.Kind = KindPrepare
		v.name = s.PrepareStmt.Name
		if inner.Route == Read {
			v.Reason = "read: PREPARE of a read"
		}
	case *pg_query.Node_ExecuteStmt:
		v = write("write: EXECUTE of a statement the classifier cannot see")
		v.Kind = KindExecute
		v.name = s.ExecuteStmt.Name
	case *pg_query.Node_DeallocateStmt:
		v = write("write: DEALLOCATE")
		v.Kind = KindDeallocate
		if !s.DeallocateStmt.Isall {
			v.name = s.DeallocateStmt.Name
		}
	case *pg_query.Node_DiscardStmt:
		v = write("write: DISCARD")
		if s.DiscardStmt.Target == pg_query.DiscardMode_DISCARD_ALL {
			v.Kind = KindDiscardAll
		}
	case *pg_query.Node_FetchStmt:
		v = write("write: FETCH/MOVE follows its cursor")
		v.Kind = KindCursor
	case *pg_query.Node_ClosePortalStmt:
		v = write("write: CLOSE follows its cursor")
		v.Kind = KindCursor
	case *pg_query.Node_TransactionStmt:
		v = transaction(s.TransactionStmt)
	case *pg_query.Node_VariableSetStmt:
		v = variableSet(s.VariableSetStmt)
	case *pg_query.Node_ListenStmt:
		v = write("write: LISTEN")
		v.Kind = KindListen
	default:
		tag := tagOf(n)
		v = write("write: " + tag)
		v.Kind = ran
		if _, ok := notDDL[tag]; !ok {
			v.Kind |= KindDDL
			if f.temp {
				v.Kind |= KindTemp
			}
		}
		switch n.Node.(type) {
		case *pg_query.Node_DoStmt, *pg_query.Node_CallStmt:
			// Their code may call set_config.
			v.Kind |= KindSetUnknown
		}
	}
	return v
}

// notDDL are the utility statements (by tagOf) that change no catalog
// object a prepared statement's plan could depend on. CALL is here: a
// procedure that changes the schema is rare, and a stale plan is still
// noticed when the server reports it.
var notDDL = map[string]struct{}{
	"TRUNCATE": {}, "VACUUM/ANALYZE": {}, "CLUSTER": {}, "REINDEX": {}, "CHECKPOINT": {},
	"LOCK": {}, "NOTIFY": {}, "UNLISTEN": {}, "LOAD": {}, "GRANT": {}, "GRANT ROLE": {},
	"COMMENT": {}, "REFRESH MATERIALIZED VIEW": {}, "SECURITY LABEL": {}, "ALTER SYSTEM": {},
	"ConstraintsSetStmt": {}, "INSERT": {}, "UPDATE": {}, "DELETE": {}, "MERGE": {}, "CALL": {},
}

// explainAnalyze reports whether EXPLAIN's options turn ANALYZE on, and
// whether that came from a value that may be a literal (ANALYZE 0, ANALYZE
// 'off'), which the literal-free cache key cannot see.
func explainAnalyze(opts []*pg_query.Node) (analyze, exact bool) {
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || !strings.EqualFold(d.Defname, "analyze") {
			continue
		}
		if d.Arg == nil {
			analyze = true
			continue
		}
		exact = true
		switch a := d.Arg.Node.(type) {
		case *pg_query.Node_String_:
			switch strings.ToLower(a.String_.Sval) {
			case "false", "off":
				analyze = false
			default: // true, on, or a value the server refuses anyway
				analyze = true
			}
		case *pg_query.Node_Integer:
			analyze = a.Integer.Ival != 0
		case *pg_query.Node_Boolean:
			analyze = a.Boolean.Boolval
		default:
			analyze = true
		}
	}
	return analyze, exact
}

// transactionMode reads BEGIN / SET TRANSACTION options.
func transactionMode(opts []*pg_query.Node) (readOnly, serializable bool) {
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil {
			continue
		}
		c := d.GetArg().GetAConst()
		switch d.Defname {
		case "transaction_read_only":
			readOnly = c.GetIval().GetIval() == 1
		case "transaction_isolation":
			serializable = strings.EqualFold(c.GetSval().GetSval(), "serializable")
		}
	}
	return readOnly, serializable
}

func transaction(t *pg_query.TransactionStmt) stmtVerdict {
	var v stmtVerdict
	switch t.Kind {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
		readOnly, serializable := transactionMode(t.Options)
		switch {
		case readOnly && !serializable:
			v = read("read: BEGIN READ ONLY")
			v.Kind = KindBegin | KindBeginReadOnly
		case readOnly:
			// A hot standby refuses SERIALIZABLE.
			v = write("write: BEGIN SERIALIZABLE READ ONLY (a standby refuses SERIALIZABLE)")
			v.Kind = KindBegin
		default:
			v = write("write: BEGIN (a read-write transaction)")
			v.Kind = KindBegin
			v.plainBegin = true
		}
	// Transaction control follows its transaction and is valid on a standby.
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:
		v = read("read: COMMIT")
		v.Kind = KindCommit
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		v = read("read: ROLLBACK")
		v.Kind = KindRollback
	case pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		v = read("read: SAVEPOINT")
		v.Kind, v.name = KindSavepoint, t.SavepointName
	case pg_query.TransactionStmtKind_TRANS_STMT_RELEASE:
		v = read("read: RELEASE SAVEPOINT")
		v.Kind, v.name = KindRelease, t.SavepointName
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		v = read("read: ROLLBACK TO SAVEPOINT")
		v.Kind, v.name = KindRollbackTo, t.SavepointName
	default: // PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED
		v = write("write: two-phase commit")
	}
	return v
}

func variableSet(s *pg_query.VariableSetStmt) stmtVerdict {
	// SET is session (or transaction) state that any server accepts: the
	// router tracks it through the kind, not the route.
	v := read("read: SET")
	name := strings.ToLower(s.Name)
	switch s.Kind {
	case pg_query.VariableSetKind_VAR_SET_MULTI:
		if s.Name == "TRANSACTION" {
			v.Reason = "read: SET TRANSACTION"
			v.Kind = KindSetLocal
			if readOnly, serializable := transactionMode(s.Args); readOnly && !serializable {
				v.Kind |= KindSetTransactionReadOnly
			}
			return v
		}
		// SET SESSION CHARACTERISTICS AS TRANSACTION …: several defaults.
		v.Kind = KindSetUnknown
		return v
	case pg_query.VariableSetKind_VAR_RESET_ALL:
		v.Reason = "read: RESET ALL"
		v.Kind, v.name = KindReset, "all"
		return v
	}
	v.name = name
	switch {
	case s.IsLocal:
		v.Reason = "read: SET LOCAL"
		v.Kind = KindSetLocal
		return v
	case s.Kind == pg_query.VariableSetKind_VAR_RESET, s.Kind == pg_query.VariableSetKind_VAR_SET_DEFAULT:
		v.Reason = "read: RESET"
		v.Kind = KindReset
	case s.Kind == pg_query.VariableSetKind_VAR_SET_CURRENT:
		v.Kind = KindSetUnknown
	default:
		v.Kind = KindSet
	}
	if name == "role" || name == "session_authorization" {
		v.Kind |= KindRole
	}
	return v
}

// findings is what a walk of a statement's whole tree found.
type findings struct {
	writeReason string // the first thing that makes a query a write
	advisory    bool   // a session-level advisory lock function is called
	tempInto    bool   // INTO TEMP
	temp        bool   // a name in pg_temp, or a relation made TEMP
	setUnknown  bool   // set_config that may change a session setting
}

func (f *findings) note(reason string) {
	if f.writeReason == "" {
		f.writeReason = reason
	}
}

// walk visits every message under m. It is generic over pg_query's node types
// on purpose: a hand-written walk would have to name every place a function
// call or a sub-select can hide, and a missed one would route a write to a
// replica. It runs only on a cache miss.
func (f *findings) walk(m protoreflect.Message, fs funcSets) {
	switch n := m.Interface().(type) {
	case *pg_query.FuncCall:
		f.call(n, fs)
	case *pg_query.SelectStmt:
		if len(n.LockingClause) > 0 {
			f.note("write: SELECT … FOR UPDATE/SHARE locks rows")
		}
	case *pg_query.IntoClause:
		f.note("write: SELECT INTO creates a table")
		if n.GetRel().GetRelpersistence() == "t" {
			f.tempInto = true
		}
	case *pg_query.InsertStmt, *pg_query.UpdateStmt, *pg_query.DeleteStmt, *pg_query.MergeStmt:
		f.note("write: data-modifying statement in WITH")
	case *pg_query.RangeVar:
		if n.Relpersistence == "t" || isTempSchema(n.Schemaname) {
			f.temp = true
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			if l.Len() > 1 {
				// A qualified name (function, type, …) in pg_temp.
				if nd, ok := l.Get(0).Message().Interface().(*pg_query.Node); ok && isTempSchema(nd.GetString_().GetSval()) {
					f.temp = true
				}
			}
			for i := 0; i < l.Len(); i++ {
				f.walk(l.Get(i).Message(), fs)
			}
		case !fd.IsMap():
			f.walk(v.Message(), fs)
		}
		return true
	})
}

func (f *findings) call(fc *pg_query.FuncCall, fs funcSets) {
	if len(fc.Funcname) == 0 {
		return
	}
	name := strings.ToLower(fc.Funcname[len(fc.Funcname)-1].GetString_().GetSval())
	if _, ok := sessionAdvisory[name]; ok {
		f.advisory = true
	}
	if name == "set_config" && !isLocalSet(fc.Args) {
		f.setUnknown = true
	}
	switch {
	case isBuiltinWrite(name):
		f.note("write: " + name + "() is on the write list")
	case has(fs.user, name):
		f.note("write: " + name + "() is on the user's write list")
	case has(fs.volatile, name):
		f.note("write: " + name + "() is a volatile user function")
	}
}

// isLocalSet reports whether set_config's arguments make its change local to
// the transaction: a literal true as the third argument.
func isLocalSet(args []*pg_query.Node) bool {
	if len(args) != 3 {
		return false
	}
	c := args[2].GetAConst()
	return c != nil && c.GetBoolval() != nil && c.GetBoolval().Boolval
}

// isTempSchema reports whether schema names the session's temporary schema.
func isTempSchema(schema string) bool {
	return strings.HasPrefix(strings.ToLower(schema), "pg_temp")
}

func has(set map[string]struct{}, name string) bool {
	_, ok := set[name]
	return ok
}

// tags name statements in reasons; others are named by pg_query's node type.
var tags = map[string]string{
	"CreateStmt": "CREATE TABLE", "ViewStmt": "CREATE VIEW", "CreateSeqStmt": "CREATE SEQUENCE",
	"InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE",
	"CreateTableAsStmt": "CREATE TABLE AS", "IndexStmt": "CREATE INDEX", "DropStmt": "DROP",
	"AlterTableStmt": "ALTER TABLE", "TruncateStmt": "TRUNCATE", "CallStmt": "CALL", "DoStmt": "DO",
	"LockStmt": "LOCK", "VacuumStmt": "VACUUM/ANALYZE", "ClusterStmt": "CLUSTER", "ReindexStmt": "REINDEX",
	"NotifyStmt": "NOTIFY", "UnlistenStmt": "UNLISTEN", "CheckPointStmt": "CHECKPOINT", "LoadStmt": "LOAD",
	"CreateFunctionStmt": "CREATE FUNCTION", "CreateSchemaStmt": "CREATE SCHEMA", "GrantStmt": "GRANT",
	"GrantRoleStmt": "GRANT ROLE", "RenameStmt": "ALTER … RENAME", "CommentStmt": "COMMENT",
	"RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW", "CreateExtensionStmt": "CREATE EXTENSION",
	"CreatedbStmt": "CREATE DATABASE", "DropdbStmt": "DROP DATABASE", "CreateRoleStmt": "CREATE ROLE",
	"AlterSystemStmt": "ALTER SYSTEM", "CreateTrigStmt": "CREATE TRIGGER", "RuleStmt": "CREATE RULE",
	"SecLabelStmt": "SECURITY LABEL", "ReassignOwnedStmt": "REASSIGN OWNED", "DropOwnedStmt": "DROP OWNED",
}

func tagOf(n *pg_query.Node) string {
	// n's only populated field is the statement; its message names the type.
	name := ""
	n.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() == protoreflect.MessageKind {
			name = string(fd.Message().Name())
			return false
		}
		return true
	})
	if t, ok := tags[name]; ok {
		return t
	}
	if name == "" {
		return "unknown statement"
	}
	return name
}

// Package classify decides whether a query text may run on a hot-standby
// replica or must go to the primary, with PostgreSQL's own parser (pg_query)
// behind a bounded cache keyed on a literal-free form of the text, and flags
// the statements that matter for transactions and session state (Kind).
//
// It does not pick a server, track transaction state (that comes from the
// server's ReadyForQuery) or talk to any server: the router does that with the
// Result it gets here.
//
// # Rules
//
// A text is a write unless it is provably read-only:
//
//   - SELECT, VALUES, TABLE are reads unless anywhere in them (subqueries, CTEs,
//     set operations, sublinks, FROM functions) there is a locking clause, an
//     INTO, a data-modifying statement, or a call to a function on the write
//     list (writelist.go), the user's write functions, or the user-defined
//     volatile functions given to SetVolatile. Names match case-insensitively on
//     their last component. Built-in volatile functions such as random() or
//     now() stay reads.
//   - SHOW is a read; EXPLAIN without ANALYZE is a read; EXPLAIN ANALYZE and
//     COPY (query) TO take the route of their statement; COPY table TO is a read;
//     COPY FROM is a write.
//   - SET, RESET, SET LOCAL, SET TRANSACTION are reads flagged with a Kind: any
//     server accepts them, and the router tracks them as session state.
//   - BEGIN READ ONLY (not SERIALIZABLE, which a standby refuses) is a read, as
//     is "BEGIN; SET TRANSACTION READ ONLY; …" in one text; any other BEGIN is a
//     write. COMMIT, ROLLBACK and savepoint statements are reads: they follow
//     their transaction and are valid on a standby.
//   - DECLARE takes its query's route, except WITH HOLD (a write); PREPARE takes
//     its statement's route; EXECUTE, FETCH, MOVE, CLOSE are writes (the
//     classifier cannot see what they run, or where their cursor lives).
//   - Everything else is a write: DML, DDL, CALL, DO, LOCK, VACUUM, ANALYZE,
//     LISTEN, NOTIFY, DISCARD, DEALLOCATE, two-phase commit, and any text
//     pg_query cannot parse (the server will report the syntax error).
//   - Several statements in one text are a read only if every one is.
//   - A comment before the first token, /* pgswitch:primary */ or
//     -- pgswitch:replica (any case, spaces allowed inside), overrides the route.
//
// The parser is PostgreSQL 17's with standard_conforming_strings on. A session
// that turns it off can make the server read a text differently; a text routed
// to a replica by such a mismatch can still write nothing there, since the
// standby refuses writes with SQLSTATE 25006.
package classify

package classify

import (
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

type classifyCase struct {
	sql   string
	route Route
	kind  Kind
	hint  HintKind
	names []string // Stmt.Name of the statements that name something
}

// R and W shorten the table.
const (
	R = Read
	W = Write
)

var classifyCases = []classifyCase{
	// Plain reads.
	{sql: "SELECT 1", route: R},
	{sql: "select 1;", route: R},
	{sql: "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;", route: R},
	{sql: "SELECT * FROM t WHERE a = $1 AND b = $2", route: R},
	{sql: "VALUES (1), (2)", route: R},
	{sql: "TABLE t", route: R},
	{sql: "SELECT a, count(*) FROM t GROUP BY a HAVING count(*) > 1 ORDER BY 2 DESC LIMIT 10 OFFSET 5", route: R},
	{sql: "SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b", route: R},
	{sql: "SELECT * FROM a JOIN b ON a.id = b.a_id LEFT JOIN c USING (id)", route: R},
	{sql: "SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.x = a.x LIMIT 1) s", route: R},
	{sql: "SELECT * FROM t WHERE id IN (SELECT id FROM u)", route: R},
	{sql: "SELECT (SELECT max(x) FROM u) FROM t", route: R},
	{sql: "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)", route: R},
	{sql: "WITH x AS (SELECT 1 AS a) SELECT * FROM x", route: R},
	{sql: "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n < 10) SELECT * FROM r", route: R},
	{sql: "SELECT 1 UNION SELECT 2 INTERSECT SELECT 3 EXCEPT SELECT 4", route: R},
	{sql: "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t", route: R},
	{sql: "SELECT random(), now(), clock_timestamp(), gen_random_uuid()", route: R},
	{sql: "SELECT currval_like_name FROM t", route: R},
	{sql: "SELECT 'nextval(1)', 'INSERT INTO t VALUES (1)'", route: R},
	{sql: "SELECT nextval FROM t", route: R},
	{sql: "SELECT pg_is_in_recovery()", route: R},
	{sql: "SELECT pg_last_wal_replay_lsn(), txid_current_snapshot()", route: R},
	{sql: "SELECT lower('X'), coalesce(a, 0), a::text FROM t", route: R},
	{sql: "SELECT * FROM generate_series(1, 10) g", route: R},
	{sql: "SELECT jsonb_path_query(j, '$.a') FROM t WHERE j ? 'a'", route: R},
	{sql: "SELECT * FROM t TABLESAMPLE SYSTEM (10)", route: R},
	{sql: "SELECT CASE WHEN a > 0 THEN 'p' ELSE 'n' END FROM t", route: R},
	{sql: `SELECT "Weird Column", "select" FROM "My Table"`, route: R},
	{sql: "SELECT прізвище, 名前 FROM таблиця WHERE ключ = 1", route: R},
	{sql: "SELECT $$it's a string; DELETE FROM t$$", route: R},
	{sql: "SELECT $tag$ $$ nested $$ $tag$, $a$x$a$", route: R},
	{sql: "SELECT E'it\\'s; DROP TABLE t', B'1010', X'FF', U&'d\\0061t\\+000061', N'nat'", route: R},
	{sql: "SELECT 1_000_000, 0x1F, 0o17, 0b101, 1.5e-3, .5", route: R},
	{sql: "SELECT a FROM t FETCH FIRST 5 ROWS ONLY", route: R},
	{sql: "SELECT * FROM json_to_recordset('[]') AS x(a int)", route: R},
	{sql: "select xmin, * from t", route: R},

	// Locking clauses, INTO and data-modifying CTEs, at any depth.
	{sql: "SELECT * FROM t FOR UPDATE", route: W},
	{sql: "SELECT * FROM t FOR NO KEY UPDATE", route: W},
	{sql: "SELECT * FROM t FOR SHARE", route: W},
	{sql: "SELECT * FROM t FOR KEY SHARE SKIP LOCKED", route: W},
	{sql: "SELECT * FROM t FOR UPDATE OF t NOWAIT", route: W},
	{sql: "SELECT * FROM (SELECT * FROM t FOR UPDATE) s", route: W},
	{sql: "SELECT * FROM t WHERE id IN (SELECT id FROM u FOR SHARE)", route: W},
	{sql: "WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x", route: W},
	{sql: "SELECT 1 UNION ALL (SELECT 2 FROM t FOR UPDATE)", route: W},
	{sql: "SELECT * INTO newt FROM t", route: W},
	{sql: "SELECT * INTO TEMP tmpt FROM t", route: W, kind: KindTemp | KindDDL},
	{sql: "SELECT * INTO TEMPORARY TABLE tmpt FROM t", route: W, kind: KindTemp | KindDDL},
	{sql: "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", route: W},
	{sql: "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", route: W},
	{sql: "WITH x AS (DELETE FROM t RETURNING *) SELECT count(*) FROM x", route: W},
	{sql: "WITH a AS (SELECT 1), b AS (DELETE FROM t RETURNING id) SELECT * FROM a", route: W},
	{sql: "WITH x AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING t.*) SELECT * FROM x", route: W},
	{sql: "SELECT * FROM (WITH x AS (INSERT INTO t DEFAULT VALUES RETURNING id) SELECT id FROM x) s", route: W},

	// Functions on the write list, wherever they are.
	{sql: "SELECT nextval('s')", route: W},
	{sql: "SELECT NEXTVAL('s')", route: W},
	{sql: "SELECT pg_catalog.nextval('s')", route: W},
	{sql: `SELECT "nextval"('s')`, route: W},
	{sql: "SELECT setval('s', 10)", route: W},
	{sql: "SELECT currval('s')", route: W},
	{sql: "SELECT lastval()", route: W},
	{sql: "SELECT * FROM t WHERE id = nextval('s')", route: W},
	{sql: "SELECT * FROM nextval('s')", route: W},
	{sql: "SELECT * FROM t WHERE a IN (SELECT setval('s', 1))", route: W},
	{sql: "SELECT coalesce(nullif(a, 0), nextval('s')) FROM t", route: W},
	{sql: "SELECT * FROM t ORDER BY nextval('s')", route: W},
	{sql: "SELECT * FROM a JOIN b ON a.id = b.id AND nextval('s') > 0", route: W},
	{sql: "WITH x AS (SELECT nextval('s')) SELECT * FROM x", route: W},
	{sql: "SELECT 1 UNION SELECT nextval('s')", route: W},
	{sql: "VALUES (nextval('s'))", route: W},
	{sql: "SELECT set_config('search_path', 'x', false)", route: W, kind: KindSetUnknown},
	{sql: "SELECT pg_notify('ch', 'payload')", route: W},
	{sql: "SELECT txid_current()", route: W},
	{sql: "SELECT txid_current_if_assigned()", route: W},
	{sql: "SELECT pg_current_xact_id()", route: W},
	{sql: "SELECT pg_current_xact_id_if_assigned()", route: W},
	{sql: "SELECT pg_current_wal_lsn()", route: W},
	{sql: "SELECT pg_switch_wal()", route: W},
	{sql: "SELECT pg_create_restore_point('r')", route: W},
	{sql: "SELECT pg_create_physical_replication_slot('s')", route: W},
	{sql: "SELECT pg_create_logical_replication_slot('s', 'pgoutput')", route: W},
	{sql: "SELECT pg_drop_replication_slot('s')", route: W},
	{sql: "SELECT pg_promote()", route: W},
	{sql: "SELECT pg_reload_conf()", route: W},
	{sql: "SELECT pg_terminate_backend(123)", route: W},
	{sql: "SELECT pg_cancel_backend(123)", route: W},
	{sql: "SELECT dblink_exec('conn', 'DELETE FROM t')", route: W},
	{sql: "SELECT pg_stat_reset()", route: W},
	{sql: "SELECT pg_stat_reset_shared('bgwriter')", route: W},
	{sql: "SELECT lo_create(0)", route: W},
	{sql: "SELECT lo_import('/tmp/x')", route: W},
	{sql: "SELECT lo_unlink(123)", route: W},
	{sql: "SELECT lo_from_bytea(0, 'x')", route: W},
	{sql: "SELECT pg_advisory_lock(1)", route: W, kind: KindAdvisoryLock},
	{sql: "SELECT pg_advisory_lock_shared(1)", route: W, kind: KindAdvisoryLock},
	{sql: "SELECT pg_try_advisory_lock(1, 2)", route: W, kind: KindAdvisoryLock},
	{sql: "SELECT pg_advisory_unlock(1)", route: W, kind: KindAdvisoryLock},
	{sql: "SELECT pg_advisory_unlock_all()", route: W, kind: KindAdvisoryLock},
	{sql: "SELECT pg_advisory_xact_lock(1)", route: W},
	{sql: "SELECT pg_try_advisory_xact_lock_shared(1)", route: W},
	{sql: "SELECT * FROM jobs WHERE pg_try_advisory_lock(id) LIMIT 1", route: W, kind: KindAdvisoryLock},
	// The user's write functions and volatile functions (see newTestClassifier).
	{sql: "SELECT audit_log('x')", route: W},
	{sql: "SELECT app.audit_log('x')", route: W},
	{sql: "SELECT other.AUDIT_LOG('x')", route: W},
	{sql: "SELECT * FROM t WHERE bump_counter(id) > 0", route: W},
	{sql: "SELECT my_volatile()", route: W},
	{sql: "SELECT * FROM (SELECT public.my_volatile() AS v) s", route: W},
	{sql: "SELECT audit_logger('x')", route: R},

	// EXPLAIN.
	{sql: "EXPLAIN SELECT * FROM t", route: R},
	{sql: "EXPLAIN INSERT INTO t VALUES (1)", route: R},
	{sql: "EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM t", route: R},
	{sql: "EXPLAIN SELECT nextval('s')", route: R},
	{sql: "EXPLAIN ANALYZE SELECT * FROM t", route: R},
	{sql: "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM t", route: R},
	{sql: "EXPLAIN ANALYZE INSERT INTO t VALUES (1)", route: W},
	{sql: "EXPLAIN (ANALYZE true) UPDATE t SET a = 1", route: W},
	{sql: "EXPLAIN (ANALYZE) SELECT nextval('s')", route: W},
	{sql: "EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE", route: W},
	{sql: "EXPLAIN (ANALYZE off) INSERT INTO t VALUES (1)", route: R},
	{sql: "EXPLAIN (ANALYZE 0) INSERT INTO t VALUES (1)", route: R},
	{sql: "EXPLAIN (ANALYZE 1) INSERT INTO t VALUES (1)", route: W},
	{sql: "EXPLAIN (ANALYZE 'off') INSERT INTO t VALUES (1)", route: R},
	{sql: "EXPLAIN (ANALYZE 'on') INSERT INTO t VALUES (1)", route: W},
	{sql: "EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", route: W, kind: KindDDL},
	{sql: "EXPLAIN ANALYZE EXECUTE p(1)", route: W},

	// COPY.
	{sql: "COPY t TO STDOUT", route: R, kind: KindCopyTo},
	{sql: "COPY t (a, b) TO STDOUT WITH (FORMAT csv, HEADER)", route: R, kind: KindCopyTo},
	{sql: "COPY (SELECT * FROM t WHERE a > 1) TO STDOUT", route: R, kind: KindCopyTo},
	{sql: "COPY t TO '/tmp/t.csv'", route: R, kind: KindCopyTo},
	{sql: "COPY (SELECT nextval('s')) TO STDOUT", route: W, kind: KindCopyTo},
	{sql: "COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT", route: W, kind: KindCopyTo},
	{sql: "COPY t FROM STDIN", route: W, kind: KindCopyFrom},
	{sql: "COPY t FROM '/tmp/t.csv' WITH (FORMAT csv)", route: W, kind: KindCopyFrom},

	// SHOW, SET, RESET.
	{sql: "SHOW search_path", route: R},
	{sql: "SHOW ALL", route: R},
	{sql: "SET search_path = app, public", route: R, kind: KindSet, names: []string{"search_path"}},
	{sql: "SET statement_timeout TO '5s'", route: R, kind: KindSet, names: []string{"statement_timeout"}},
	{sql: "SET SESSION work_mem = '64MB'", route: R, kind: KindSet, names: []string{"work_mem"}},
	{sql: "SET TIME ZONE 'UTC'", route: R, kind: KindSet, names: []string{"timezone"}},
	{sql: "SET ROLE app_reader", route: R, kind: KindSet | KindRole, names: []string{"role"}},
	{sql: "SET LOCAL statement_timeout = 0", route: R, kind: KindSetLocal, names: []string{"statement_timeout"}},
	{sql: "RESET search_path", route: R, kind: KindReset, names: []string{"search_path"}},
	{sql: "RESET ALL", route: R, kind: KindReset, names: []string{"all"}},
	{sql: "SET TRANSACTION READ ONLY", route: R, kind: KindSetTransactionReadOnly | KindSetLocal},
	{sql: "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", route: R, kind: KindSetTransactionReadOnly | KindSetLocal},
	{sql: "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY", route: R, kind: KindSetLocal},
	{sql: "SET TRANSACTION READ WRITE", route: R, kind: KindSetLocal},

	// Transactions.
	{sql: "BEGIN", route: W, kind: KindBegin},
	{sql: "BEGIN TRANSACTION", route: W, kind: KindBegin},
	{sql: "START TRANSACTION", route: W, kind: KindBegin},
	{sql: "BEGIN READ WRITE", route: W, kind: KindBegin},
	{sql: "BEGIN READ ONLY", route: R, kind: KindBegin | KindBeginReadOnly},
	{sql: "START TRANSACTION READ ONLY", route: R, kind: KindBegin | KindBeginReadOnly},
	{sql: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", route: R, kind: KindBegin | KindBeginReadOnly},
	{sql: "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE", route: W, kind: KindBegin},
	{sql: "COMMIT", route: R, kind: KindCommit},
	{sql: "END", route: R, kind: KindCommit},
	{sql: "COMMIT AND CHAIN", route: R, kind: KindCommit},
	{sql: "ROLLBACK", route: R, kind: KindRollback},
	{sql: "ABORT", route: R, kind: KindRollback},
	{sql: "SAVEPOINT sp1", route: R, kind: KindSavepoint, names: []string{"sp1"}},
	{sql: "RELEASE SAVEPOINT sp1", route: R, kind: KindRelease, names: []string{"sp1"}},
	{sql: "ROLLBACK TO SAVEPOINT sp1", route: R, kind: KindRollbackTo, names: []string{"sp1"}},
	{sql: "PREPARE TRANSACTION 'gx'", route: W},
	{sql: "COMMIT PREPARED 'gx'", route: W},

	// DML and DDL.
	{sql: "INSERT INTO t VALUES (1)", route: W},
	{sql: "INSERT INTO t SELECT * FROM u", route: W},
	{sql: "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = excluded.a", route: W},
	{sql: "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 2", route: W},
	{sql: "DELETE FROM t WHERE id = 1 RETURNING *", route: W},
	{sql: "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.a)", route: W},
	{sql: "TRUNCATE t", route: W},
	{sql: "CREATE TABLE t (id int PRIMARY KEY)", route: W, kind: KindDDL},
	{sql: "CREATE TEMP TABLE tt (id int)", route: W, kind: KindTemp | KindDDL},
	{sql: "CREATE TEMPORARY TABLE tt (id int) ON COMMIT DROP", route: W, kind: KindTemp | KindDDL},
	{sql: "CREATE TEMP TABLE tt AS SELECT 1", route: W, kind: KindTemp | KindDDL},
	{sql: "CREATE TEMP VIEW tv AS SELECT 1", route: W, kind: KindTemp | KindDDL},
	{sql: "CREATE TEMP SEQUENCE ts", route: W, kind: KindTemp | KindDDL},
	{sql: "CREATE UNLOGGED TABLE u (id int)", route: W, kind: KindDDL},
	{sql: "CREATE TABLE x AS SELECT * FROM t", route: W, kind: KindDDL},
	{sql: "CREATE INDEX CONCURRENTLY i ON t (a)", route: W, kind: KindDDL},
	{sql: "CREATE VIEW v AS SELECT * FROM t", route: W, kind: KindDDL},
	{sql: "CREATE MATERIALIZED VIEW mv AS SELECT 1", route: W, kind: KindDDL},
	{sql: "REFRESH MATERIALIZED VIEW mv", route: W},
	{sql: "CREATE SEQUENCE s", route: W, kind: KindDDL},
	{sql: "CREATE SCHEMA app", route: W, kind: KindDDL},
	{sql: "CREATE EXTENSION IF NOT EXISTS pgcrypto", route: W, kind: KindDDL},
	{sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$SELECT 1$$", route: W, kind: KindDDL},
	{sql: "CREATE OR REPLACE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $body$BEGIN RETURN NEW; END$body$", route: W, kind: KindDDL},
	{sql: "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", route: W, kind: KindDDL},
	{sql: "ALTER TABLE t ADD COLUMN b int", route: W, kind: KindDDL},
	{sql: "ALTER TABLE t RENAME TO u", route: W, kind: KindDDL},
	{sql: "DROP TABLE IF EXISTS t CASCADE", route: W, kind: KindDDL},
	{sql: "DROP INDEX i", route: W, kind: KindDDL},
	{sql: "GRANT SELECT ON t TO app", route: W},
	{sql: "REVOKE ALL ON t FROM app", route: W},
	{sql: "COMMENT ON TABLE t IS 'x'", route: W},
	{sql: "CREATE ROLE r LOGIN", route: W, kind: KindDDL},
	{sql: "ALTER SYSTEM SET work_mem = '1GB'", route: W},
	{sql: "CREATE DATABASE d", route: W, kind: KindDDL},

	// Maintenance and other utility statements.
	{sql: "VACUUM", route: W},
	{sql: "VACUUM (VERBOSE, ANALYZE) t", route: W},
	{sql: "ANALYZE t", route: W},
	{sql: "CLUSTER t USING i", route: W},
	{sql: "REINDEX TABLE t", route: W},
	{sql: "CHECKPOINT", route: W},
	{sql: "CALL proc(1)", route: W, kind: KindSetUnknown},
	{sql: "DO $$BEGIN PERFORM 1; END$$", route: W, kind: KindSetUnknown | KindDDL},
	{sql: "LOCK TABLE t IN ACCESS SHARE MODE", route: W},
	{sql: "LOCK t", route: W},
	{sql: "LISTEN ch", route: W, kind: KindListen},
	{sql: "UNLISTEN *", route: W},
	{sql: "NOTIFY ch, 'x'", route: W},
	{sql: "LOAD 'auto_explain'", route: W},
	{sql: "DISCARD ALL", route: W, kind: KindDiscardAll},
	{sql: "DISCARD PLANS", route: W},
	{sql: "DISCARD TEMP", route: W},

	// Prepared statements and cursors.
	{sql: "PREPARE q AS SELECT * FROM t WHERE id = $1", route: R, kind: KindPrepare, names: []string{"q"}},
	{sql: "PREPARE q (int) AS INSERT INTO t VALUES ($1)", route: W, kind: KindPrepare, names: []string{"q"}},
	{sql: "PREPARE q AS SELECT nextval('s')", route: W, kind: KindPrepare, names: []string{"q"}},
	{sql: "EXECUTE q(1)", route: W, kind: KindExecute, names: []string{"q"}},
	{sql: "DEALLOCATE q", route: W, kind: KindDeallocate, names: []string{"q"}},
	{sql: "DEALLOCATE ALL", route: W, kind: KindDeallocate},
	{sql: "DECLARE c CURSOR FOR SELECT * FROM t", route: R, kind: KindCursor},
	{sql: "DECLARE c SCROLL CURSOR WITHOUT HOLD FOR SELECT * FROM t", route: R, kind: KindCursor},
	{sql: "DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", route: W, kind: KindCursor},
	{sql: "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t", route: W, kind: KindDeclareWithHold | KindCursor},
	{sql: "FETCH 10 FROM c", route: W, kind: KindCursor},
	{sql: "MOVE NEXT IN c", route: W, kind: KindCursor},
	{sql: "CLOSE c", route: W, kind: KindCursor},
	{sql: "CLOSE ALL", route: W, kind: KindCursor},

	// Session state the router tracks, pins or must ask the server about.
	{sql: "SET search_path TO DEFAULT", route: R, kind: KindReset, names: []string{"search_path"}},
	{sql: "SET TIME ZONE LOCAL", route: R, kind: KindReset, names: []string{"timezone"}},
	{sql: "SET work_mem FROM CURRENT", route: R, kind: KindSetUnknown, names: []string{"work_mem"}},
	{sql: "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", route: R, kind: KindSetUnknown},
	{sql: "SET SESSION AUTHORIZATION app", route: R, kind: KindSet | KindRole, names: []string{"session_authorization"}},
	{sql: "RESET ROLE", route: R, kind: KindReset | KindRole, names: []string{"role"}},
	{sql: "SELECT set_config('search_path', 'x', true)", route: W},
	{sql: "SELECT set_config($1, $2, $3)", route: W, kind: KindSetUnknown},
	{sql: "SELECT 1 FROM t WHERE set_config('a.b', 'c', false) IS NOT NULL", route: W, kind: KindSetUnknown},
	{sql: "DEALLOCATE PREPARE q", route: W, kind: KindDeallocate, names: []string{"q"}},
	{sql: `PREPARE "Q" AS SELECT 1`, route: R, kind: KindPrepare, names: []string{"Q"}},
	{sql: "CREATE TYPE pg_temp.mood AS ENUM ('a', 'b')", route: W, kind: KindTemp | KindDDL},
	{sql: "CREATE TYPE pg_temp.pair AS (a int, b int)", route: W, kind: KindTemp | KindDDL},
	{sql: "CREATE DOMAIN pg_temp.pos AS int CHECK (VALUE > 0)", route: W, kind: KindTemp | KindDDL},
	{sql: "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", route: W, kind: KindTemp | KindDDL},
	{sql: "CREATE TABLE pg_temp.t (a int)", route: W, kind: KindTemp | KindDDL},
	{sql: "CREATE SEQUENCE pg_temp.s", route: W, kind: KindTemp | KindDDL},
	{sql: "CREATE TYPE mood AS ENUM ('a')", route: W, kind: KindDDL},
	{sql: "SELECT pg_temp.f()", route: R},
	{sql: "DROP TYPE mood", route: W, kind: KindDDL},
	{sql: "ALTER TYPE mood ADD VALUE 'c'", route: W, kind: KindDDL},
	{sql: "SET work_mem = '8MB'; INSERT INTO t VALUES (1)", route: W, kind: KindSet, names: []string{"work_mem"}},
	{sql: "BEGIN; SET work_mem = '8MB'; SAVEPOINT a; RESET work_mem; ROLLBACK TO a; COMMIT", route: W,
		kind: KindBegin | KindCommit | KindSet | KindReset | KindSavepoint | KindRollbackTo, names: []string{"work_mem", "a", "work_mem", "a"}},
	{sql: "/* pgswitch:primary */ RESET statement_timeout", route: W, kind: KindReset, hint: HintPrimary, names: []string{"statement_timeout"}},

	// Several statements in one text.
	{sql: "SELECT 1; SELECT 2; SHOW work_mem", route: R},
	{sql: "SELECT 1; INSERT INTO t VALUES (1)", route: W},
	{sql: "INSERT INTO t VALUES (1); SELECT 1", route: W},
	{sql: "SELECT 1; SELECT nextval('s'); SELECT 3", route: W},
	{sql: "SET search_path = a; SELECT 1", route: R, kind: KindSet, names: []string{"search_path"}},
	{sql: "SET a.b = 1; SET LOCAL c.d = 2", route: R, kind: KindSet | KindSetLocal, names: []string{"a.b", "c.d"}},
	{sql: "BEGIN; SELECT 1; COMMIT", route: W, kind: KindBegin | KindCommit},
	{sql: "BEGIN READ ONLY; SELECT 1; COMMIT", route: R, kind: KindBegin | KindBeginReadOnly | KindCommit},
	{sql: "BEGIN READ ONLY; INSERT INTO t VALUES (1); COMMIT", route: W, kind: KindBegin | KindBeginReadOnly | KindCommit},
	{sql: "BEGIN; SET TRANSACTION READ ONLY; SELECT 1; COMMIT", route: R,
		kind: KindBegin | KindBeginReadOnly | KindSetLocal | KindSetTransactionReadOnly | KindCommit},
	{sql: "BEGIN; SELECT 1; SET TRANSACTION READ ONLY; COMMIT", route: W,
		kind: KindBegin | KindSetLocal | KindSetTransactionReadOnly | KindCommit},
	{sql: "SELECT 1;;; SELECT 2;", route: R},

	// Hints.
	{sql: "/* pgswitch:primary */ SELECT 1", route: W, hint: HintPrimary},
	{sql: "/* pgswitch:replica */ INSERT INTO t VALUES (1)", route: R, hint: HintReplica},
	{sql: "/*pgswitch:replica*/SELECT nextval('s')", route: R, hint: HintReplica},
	{sql: "  \n\t/*  pgswitch:primary  */\n SELECT 1", route: W, hint: HintPrimary},
	{sql: "-- pgswitch:primary\nSELECT 1", route: W, hint: HintPrimary},
	{sql: "   --pgswitch:replica\n  UPDATE t SET a = 1", route: R, hint: HintReplica},
	{sql: "/* app:web */ /* pgswitch:replica */ DELETE FROM t", route: R, hint: HintReplica},
	{sql: "/* PGSWITCH:PRIMARY */ SELECT 1", route: W, hint: HintPrimary},
	{sql: "/* pgswitch:replica */ BEGIN", route: R, kind: KindBegin, hint: HintReplica},
	{sql: "/* pgswitch:secondary */ INSERT INTO t VALUES (1)", route: W},
	{sql: "/* pgswitch: replica please */ INSERT INTO t VALUES (1)", route: W},
	{sql: "/* route to pgswitch:replica */ INSERT INTO t VALUES (1)", route: W},
	{sql: "SELECT 1 /* pgswitch:primary */", route: R},
	{sql: "INSERT INTO t VALUES (1) -- pgswitch:replica", route: W},
	{sql: "SELECT /* pgswitch:primary */ 1", route: R},
	{sql: "/* pgswitch:replica */ this is not sql", route: R, hint: HintReplica},
	{sql: "/* pgswitch:primary */", route: W, kind: KindEmpty, hint: HintPrimary},

	// Empty, comment-only, unparseable.
	{sql: "", route: R, kind: KindEmpty},
	{sql: "   \n\t ", route: R, kind: KindEmpty},
	{sql: "-- nothing here", route: R, kind: KindEmpty},
	{sql: "/* nothing */ /* at /* all */ */", route: R, kind: KindEmpty},
	{sql: ";", route: R, kind: KindEmpty},
	{sql: " ; ; ", route: R, kind: KindEmpty},
	{sql: "SELEKT 1", route: W},
	{sql: "SELECT FROM WHERE", route: W},
	{sql: "SELECT 'unterminated", route: W},
	{sql: "SELECT $$unterminated", route: W},
	{sql: `SELECT "unterminated`, route: W},
	{sql: "SELECT 1 /* unterminated", route: W},
	{sql: "SELECT 'a' 'b'", route: W},
	{sql: "SELECT 'a'\n'b'", route: R},
	{sql: "\x00", route: W},
	{sql: "SELECT 1\x00; DELETE FROM t", route: W},
	{sql: "%%%", route: W},
}

func newTestClassifier(t testing.TB, size int) *Classifier {
	t.Helper()
	c := New(Options{WriteFunctions: []string{"app.audit_log", "Bump_Counter"}, CacheSize: size})
	c.SetVolatile([]string{"my_volatile"})
	return c
}

func TestClassify(t *testing.T) {
	if len(classifyCases) < 150 {
		t.Fatalf("got %d cases, want at least 150", len(classifyCases))
	}
	cached := newTestClassifier(t, 0)
	uncached := newTestClassifier(t, -1)
	for _, tc := range classifyCases {
		t.Run(tc.sql, func(t *testing.T) {
			got := cached.Classify(tc.sql)
			if got.Route != tc.route {
				t.Errorf("route: got %v (%s), want %v", got.Route, got.Reason, tc.route)
			}
			if got.Kind != tc.kind {
				t.Errorf("kind: got %v, want %v", got.Kind, tc.kind)
			}
			if got.Hint != tc.hint {
				t.Errorf("hint: got %v, want %v", got.Hint, tc.hint)
			}
			var names []string
			for _, st := range got.Stmts {
				if st.Name != "" {
					names = append(names, st.Name)
				}
			}
			if !reflect.DeepEqual(names, tc.names) {
				t.Errorf("names: got %q, want %q", names, tc.names)
			}
			wantPrefix := map[Route]string{Read: "read: ", Write: "write: "}[tc.route]
			if tc.hint != HintNone {
				wantPrefix = "hint: " + tc.hint.String()
			}
			if !strings.HasPrefix(got.Reason, wantPrefix) {
				t.Errorf("reason: got %q, want it to start with %q", got.Reason, wantPrefix)
			}
			if again := cached.Classify(tc.sql); !reflect.DeepEqual(again, got) {
				t.Errorf("from the cache: got %+v, want %+v", again, got)
			}
			parsed := uncached.Classify(tc.sql)
			parsed.Shape = got.Shape // keys are per classifier (seeded)
			if !reflect.DeepEqual(parsed, got) {
				t.Errorf("without cache: got %+v, want %+v", parsed, got)
			}
		})
	}
}

func TestClassifyReasons(t *testing.T) {
	c := newTestClassifier(t, 0)
	for _, tc := range []struct{ sql, want string }{
		{"SELECT 1", "read: SELECT"},
		{"INSERT INTO t VALUES (1)", "write: INSERT"},
		{"SELECT pg_catalog.NextVal('s')", "write: nextval() is on the write list"},
		{"SELECT app.audit_log(1)", "write: audit_log() is on the user's write list"},
		{"SELECT my_volatile()", "write: my_volatile() is a volatile user function"},
		{"SELECT * FROM t FOR UPDATE", "write: SELECT … FOR UPDATE/SHARE locks rows"},
		{"/* pgswitch:replica */ INSERT INTO t VALUES (1)", "hint: replica"},
		{"/* pgswitch:primary */ SELECT 1", "hint: primary"},
		{"SELEKT", "write: pg_query could not parse it"},
		{"SELECT 1; UPDATE t SET a = 1; DELETE FROM t", "write: UPDATE"},
	} {
		if got := c.Classify(tc.sql).Reason; got != tc.want {
			t.Errorf("Classify(%q).Reason: got %q, want %q", tc.sql, got, tc.want)
		}
	}
}

// Literal-sensitive texts must not share a cache entry: ANALYZE 0 and ANALYZE
// 1 have the same literal-free form and different routes.
func TestClassifyLiteralSensitive(t *testing.T) {
	c := newTestClassifier(t, 0)
	for range 3 {
		for _, tc := range []struct {
			sql  string
			want Route
		}{
			{"EXPLAIN (ANALYZE 0) DELETE FROM t", Read},
			{"EXPLAIN (ANALYZE 1) DELETE FROM t", Write},
			{"EXPLAIN (ANALYZE 'false') DELETE FROM t", Read},
			{"EXPLAIN (ANALYZE 'true') DELETE FROM t", Write},
		} {
			if got := c.Classify(tc.sql).Route; got != tc.want {
				t.Errorf("Classify(%q): got %v, want %v", tc.sql, got, tc.want)
			}
		}
	}
}

func TestRemember(t *testing.T) {
	c := newTestClassifier(t, 0)
	const q = "SELECT * FROM view_calling_nextval WHERE id = 1"
	if got := c.Classify(q).Route; got != Read {
		t.Fatalf("before Remember: got %v, want read", got)
	}
	c.Remember(q, Result{Route: Write, Reason: "write: a replica refused it (25006)"})
	// Another literal: the same shape.
	got := c.Classify("SELECT * FROM view_calling_nextval WHERE id = 42")
	if got.Route != Write || got.Reason != "write: a replica refused it (25006)" {
		t.Errorf("after Remember: got %v %q, want write from Remember", got.Route, got.Reason)
	}
	c.SetVolatile([]string{"other"})
	if got := c.Classify(q).Route; got != Write {
		t.Errorf("after SetVolatile: got %v, want the remembered write", got)
	}

	// Remember on a literal-sensitive text keeps to that exact text.
	c.Classify("EXPLAIN (ANALYZE 0) SELECT * FROM v")
	c.Remember("EXPLAIN (ANALYZE 0) SELECT * FROM v", Result{Route: Write, Reason: "write: remembered"})
	if got := c.Classify("EXPLAIN (ANALYZE 0) SELECT * FROM v").Route; got != Write {
		t.Errorf("remembered exact text: got %v, want write", got)
	}
}

func TestSetVolatileInvalidates(t *testing.T) {
	c := New(Options{})
	const q = "SELECT refresh_thing(1)"
	if got := c.Classify(q).Route; got != Read {
		t.Fatalf("before SetVolatile: got %v, want read", got)
	}
	c.SetVolatile([]string{"public.Refresh_Thing"})
	if got := c.Classify(q).Route; got != Write {
		t.Errorf("after SetVolatile: got %v, want write", got)
	}
	c.SetVolatile(nil)
	if got := c.Classify(q).Route; got != Read {
		t.Errorf("after SetVolatile(nil): got %v, want read", got)
	}
}

func TestClassifyConcurrent(t *testing.T) {
	c := newTestClassifier(t, 64)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				q := fmt.Sprintf("SELECT a FROM t%d WHERE id = %d", i%100, g)
				if got := c.Classify(q).Route; got != Read {
					t.Errorf("Classify(%q): got %v, want read", q, got)
					return
				}
				w := fmt.Sprintf("UPDATE t%d SET a = %d", i%100, g)
				if got := c.Classify(w).Route; got != Write {
					t.Errorf("Classify(%q): got %v, want write", w, got)
					return
				}
				if i%500 == 0 {
					c.SetVolatile([]string{"f"})
				}
			}
		}()
	}
	wg.Wait()
	if st := c.Stats(); st.Entries > 64 {
		t.Errorf("entries: got %d, want at most 64", st.Entries)
	}
}

func TestClassifyHitAllocatesNothing(t *testing.T) {
	c := newTestClassifier(t, 0)
	for _, q := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
		"/* pgswitch:replica */ SELECT * FROM t WHERE a = 'x' AND b = E'y\\'z' AND c = $$w$$",
		"SET search_path = a",
		"EXPLAIN (ANALYZE 0) DELETE FROM t",
		"",
	} {
		c.Classify(q)
		allocs := testing.AllocsPerRun(100, func() { c.Classify(q) })
		if allocs != 0 {
			t.Errorf("Classify(%q) on a hit: got %v allocations, want 0", q, allocs)
		}
	}
}

func TestCacheStats(t *testing.T) {
	c := New(Options{})
	c.Classify("SELECT 1")
	c.Classify("SELECT 2")
	c.Classify("SELECT 3")
	st := c.Stats()
	if st.Hits != 2 || st.Misses != 1 || st.Entries != 1 {
		t.Errorf("stats: got %+v, want 2 hits, 1 miss, 1 entry", st)
	}
	if off := New(Options{CacheSize: -1}); off.Stats() != (CacheStats{}) {
		t.Errorf("stats with the cache off: got %+v, want zero", off.Stats())
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestCacheBounded: a stream of distinct shapes, each a miss, keeps the
// cache at its bound in entries and in memory, and every miss past the bound
// evicts. A million misses go to the cache itself, as Classify makes them
// (a lookup that misses, then a put of a result owning its statements);
// Classify's own miss path, parse included, runs 20,000 of them. (A million
// through Classify took 14 s of parsing, 10 to 17 µs each, for the same
// checks.)
func TestCacheBounded(t *testing.T) {
	const size = 1000
	t.Run("cache", func(t *testing.T) {
		const n = 1_000_000
		c := newCache(size)
		miss := func(i int) {
			key := uint64(i+1) * 0x9e3779b97f4a7c15 // spread over the shards by the high bits
			sh := c.shard(key)
			if _, _, ok := sh.lookup(key, 20); ok {
				t.Fatalf("key %d: got a hit, want a miss", i)
			}
			res := Result{Route: Read, Reason: "read: SELECT", Stmts: []Stmt{{Route: Read, Name: strconv.Itoa(i)}}}
			sh.put(entry{key: key, length: 20, res: res}, nil)
		}
		for i := range 2 * size {
			miss(i)
		}
		before := heapAlloc()
		for i := range n {
			miss(2*size + i)
		}
		checkBounded(t, c.stats(), size, n, before, heapAlloc(), 8<<20)
	})
	t.Run("classify", func(t *testing.T) {
		const n = 20_000
		c := New(Options{CacheSize: size})
		for i := range 2 * size {
			c.Classify(fmt.Sprintf("SELECT * FROM t%d", i))
		}
		before := heapAlloc()
		buf := make([]byte, 0, 64)
		for i := range n {
			buf = fmt.Appendf(buf[:0], "SELECT * FROM t%d", 1_000_000+i)
			if got := c.Classify(string(buf)).Route; got != Read {
				t.Fatalf("Classify(%q): got %v, want read", buf, got)
			}
		}
		// 20,000 misses leaking a statement list each would hold over 1 MiB.
		checkBounded(t, c.Stats(), size, n, before, heapAlloc(), 1<<20)
	})
}

// checkBounded checks a cache of size after n misses past its bound: no
// more entries than size, an eviction per miss, and a heap that grew by
// less than limit bytes.
func checkBounded(t *testing.T, st CacheStats, size, n int, before, after, limit uint64) {
	t.Helper()
	if st.Entries > uint64(size) {
		t.Errorf("entries: got %d, want at most %d", st.Entries, size)
	}
	if st.Evictions < uint64(n) {
		t.Errorf("evictions: got %d, want at least %d", st.Evictions, n)
	}
	if after > before && after-before > limit {
		t.Errorf("heap grew by %d bytes over %d misses, want under %d", after-before, n, limit)
	}
}

func TestCacheLiteralsShareEntry(t *testing.T) {
	c := New(Options{CacheSize: 100})
	buf := make([]byte, 0, 96)
	for i := range 1_000_000 {
		buf = fmt.Appendf(buf[:0], "SELECT abalance FROM pgbench_accounts WHERE aid = %d AND note = 'n%d';", i, i)
		if got := c.Classify(string(buf)).Route; got != Read {
			t.Fatalf("Classify(%q): got %v, want read", buf, got)
		}
	}
	st := c.Stats()
	if st.Entries != 1 || st.Misses != 1 || st.Hits != 1_000_000-1 {
		t.Errorf("stats: got %+v, want 1 entry, 1 miss, 999999 hits", st)
	}
}

func TestFingerprint(t *testing.T) {
	a, err := Fingerprint("SELECT * FROM t WHERE a = 1")
	if err != nil {
		t.Fatalf("Fingerprint: %v", err)
	}
	b, err := Fingerprint("select *  from t where a = 99 -- c")
	if err != nil {
		t.Fatalf("Fingerprint: %v", err)
	}
	if a != b {
		t.Errorf("fingerprints of the same shape: got %x and %x, want equal", a, b)
	}
	if _, err := Fingerprint("SELEKT"); err == nil {
		t.Errorf("Fingerprint of garbage: got no error, want one")
	}
}

func TestKindString(t *testing.T) {
	if got, want := (KindBegin | KindBeginReadOnly).String(), "begin|begin-read-only"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := KindCursor.String(), "cursor"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Deep nesting must not crash the parser or the walk: too deep is a parse
// failure, so a write.
func TestClassifyDeepNesting(t *testing.T) {
	c := New(Options{})
	for _, tc := range []struct {
		depth int
		want  Route
	}{{1000, Read}, {50000, Write}} {
		q := "SELECT " + strings.Repeat("(", tc.depth) + "1" + strings.Repeat(")", tc.depth)
		if got := c.Classify(q).Route; got != tc.want {
			t.Errorf("depth %d: got %v, want %v", tc.depth, got, tc.want)
		}
	}
}

package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// modelSeed fixes the randomized session-state test; a failure names the
// client and its operations, so it can be replayed.
const modelSeed = 20261206

// TestSessionStateModel: clients issue random sequences of session-state
// operations (SET and RESET of a few parameters, hinted or not, in and out
// of transactions, savepoints, multi-statement, set_config, PREPARE /
// EXECUTE / DEALLOCATE, protocol Parse / Bind / Close, DDL on a type) over
// two server connections, and after each step compare what they see with a
// model of what they set. Zero mismatches.
func TestSessionStateModel(t *testing.T) {
	t.Parallel()
	const clients, steps = 8, 300
	db := newDatabase(t)
	setup := primaryConn(t, db)
	mustExec(t, setup, "CREATE SCHEMA sa; CREATE SCHEMA sb")
	defaults := map[string]string{}
	for _, p := range modelParams {
		defaults[p] = mustString(t, setup, "SELECT current_setting($1)", p)
	}
	p := txProxy(t, db, 2)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &modelClient{t: t, i: i, conn: p.Connect(t, db, pgx.QueryExecModeSimpleProtocol),
				rng: rand.New(rand.NewPCG(modelSeed, uint64(i))), defaults: defaults,
				set: map[string]string{}, sql: map[string]int{}, proto: map[string]int{}}
			for step := range steps {
				if err := m.step(); err != nil {
					errs <- fmt.Errorf("client %d, step %d (seed %d): %v\nits operations:\n  %s", i, step, modelSeed, err, strings.Join(m.log, "\n  "))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

var modelParams = []string{"work_mem", "statement_timeout", "search_path"}

type modelClient struct {
	t        *testing.T
	i        int
	conn     *pgx.Conn
	rng      *rand.Rand
	defaults map[string]string
	set      map[string]string // parameter → what current_setting must show (absent: the default)
	sql      map[string]int    // SQL-level statements → the value they return
	proto    map[string]int    // protocol-level statements → the value they return
	types    int               // DDL generations of the client's own type
	log      []string
}

// value returns a random value for parameter p, as PostgreSQL shows it.
func (m *modelClient) value(p string) string {
	switch p {
	case "work_mem":
		return fmt.Sprintf("%dkB", 1100+m.rng.IntN(500)) // never a whole MB
	case "statement_timeout":
		return fmt.Sprintf("%dms", 100001+2*m.rng.IntN(500)) // long, never a whole second
	}
	return []string{"sa, public", "sb, public", "sb, sa"}[m.rng.IntN(3)]
}

// setSQL returns a SET of p to v.
func setSQL(p, v string) string {
	if p == "search_path" {
		return "SET search_path TO " + v
	}
	return fmt.Sprintf("SET %s = '%s'", p, v)
}

// exec runs sql and checks its SQLSTATE ("" for success).
func (m *modelClient) exec(sql, wantCode string) error {
	m.log = append(m.log, sql)
	_, err := m.conn.Exec(testCtx(m.t), sql)
	if got := codeOf(err); got != wantCode || (wantCode == "" && err != nil) {
		return fmt.Errorf("%s: got %v, want SQLSTATE %q", sql, err, wantCode)
	}
	return nil
}

func (m *modelClient) step() error {
	p := modelParams[m.rng.IntN(len(modelParams))]
	v := m.value(p)
	hint := []string{"", "/* pgswitch:primary */ ", "/* pgswitch:replica */ "}[m.rng.IntN(3)]
	var err error
	switch op := m.rng.IntN(17); op {
	case 0, 1:
		err = m.exec(hint+setSQL(p, v), "")
		m.set[p] = v
	case 2:
		err = m.exec(hint+"RESET "+p, "")
		delete(m.set, p)
	case 3:
		err = m.exec(setSQL(p, v)+"; SELECT 1", "")
		m.set[p] = v
	case 4:
		err = m.exec(fmt.Sprintf("SELECT set_config('%s', '%s', false)", p, v), "")
		m.set[p] = v
	case 5: // a transaction that commits or rolls back, in one Query or three
		end := []string{"COMMIT", "ROLLBACK"}[m.rng.IntN(2)]
		if m.rng.IntN(2) == 0 {
			err = m.exec("BEGIN; "+setSQL(p, v)+"; "+end, "")
		} else {
			for _, sql := range []string{"BEGIN", hint + setSQL(p, v), end} {
				if err = m.exec(sql, ""); err != nil {
					break
				}
			}
		}
		if end == "COMMIT" {
			m.set[p] = v
		}
	case 6:
		v2 := m.value(p)
		err = m.exec(fmt.Sprintf("BEGIN; %s; SAVEPOINT s; %s; ROLLBACK TO s; COMMIT", setSQL(p, v), setSQL(p, v2)), "")
		m.set[p] = v
	case 7: // the implicit transaction fails: the SET goes with it
		err = m.exec(setSQL(p, v)+"; SELECT 1/0", "22012")
	case 8:
		err = m.exec("BEGIN; SET LOCAL "+strings.TrimPrefix(setSQL(p, v), "SET ")+"; COMMIT", "")
	case 9:
		name := fmt.Sprintf("sq%d", m.rng.IntN(4))
		k := m.rng.IntN(1000)
		if _, ok := m.sql[name]; ok {
			err = m.exec(fmt.Sprintf("PREPARE %s AS SELECT %d", name, k), "42P05")
		} else {
			err = m.exec(fmt.Sprintf("PREPARE %s AS SELECT %d", name, k), "")
			m.sql[name] = k
		}
	case 10:
		name := fmt.Sprintf("sq%d", m.rng.IntN(4))
		m.log = append(m.log, "EXECUTE "+name)
		var got int
		e := m.conn.QueryRow(testCtx(m.t), "EXECUTE "+name).Scan(&got)
		if k, ok := m.sql[name]; ok && (e != nil || got != k) {
			err = fmt.Errorf("EXECUTE %s: got %d, %v; want %d", name, got, e, k)
		} else if !ok && codeOf(e) != "26000" {
			err = fmt.Errorf("EXECUTE %s, never prepared: got %v, want 26000", name, e)
		}
	case 11:
		name := fmt.Sprintf("sq%d", m.rng.IntN(4))
		if _, ok := m.sql[name]; ok {
			err = m.exec("DEALLOCATE "+name, "")
			delete(m.sql, name)
		} else {
			err = m.exec("DEALLOCATE "+name, "26000")
		}
	case 12:
		if m.rng.IntN(3) == 0 { // rarer: it drops everything
			err = m.exec("DEALLOCATE ALL", "")
			clear(m.sql)
			clear(m.proto)
		}
	case 13:
		name := fmt.Sprintf("pr%d", m.rng.IntN(4))
		k := m.rng.IntN(1000)
		sql := fmt.Sprintf("SELECT %d + $1::int", k)
		m.log = append(m.log, "Parse "+name+": "+sql)
		_, e := m.conn.PgConn().Prepare(testCtx(m.t), name, sql, nil)
		if _, ok := m.proto[name]; ok {
			if codeOf(e) != "42P05" {
				err = fmt.Errorf("Parse of taken name %s: got %v, want 42P05", name, e)
			}
		} else if e != nil {
			err = fmt.Errorf("Parse %s: %v", name, e)
		} else {
			m.proto[name] = k
		}
	case 14:
		name := fmt.Sprintf("pr%d", m.rng.IntN(4))
		m.log = append(m.log, "Bind/Execute "+name)
		res := m.conn.PgConn().ExecPrepared(testCtx(m.t), name, [][]byte{[]byte("1")}, nil, nil).Read()
		if k, ok := m.proto[name]; ok {
			if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != fmt.Sprint(k+1) {
				err = fmt.Errorf("execute %s: got %q, %v; want %d", name, res.Rows, res.Err, k+1)
			}
		} else if codeOf(res.Err) != "26000" {
			err = fmt.Errorf("execute %s, not prepared: got %v, want 26000", name, res.Err)
		}
	case 15:
		name := fmt.Sprintf("pr%d", m.rng.IntN(4))
		m.log = append(m.log, "Close "+name)
		if e := m.conn.PgConn().Deallocate(testCtx(m.t), name); e != nil {
			err = fmt.Errorf("Close %s: %v", name, e)
		}
		delete(m.proto, name)
	case 16: // DDL on the client's own type, then a fresh statement using it
		m.types++
		typ := fmt.Sprintf("mt_%d", m.i)
		if err = m.exec(fmt.Sprintf("DROP TYPE IF EXISTS %s; CREATE TYPE %s AS ENUM ('v%d', 'w')", typ, typ, m.types), ""); err != nil {
			break
		}
		name := fmt.Sprintf("ty%d", m.types)
		sql := fmt.Sprintf("SELECT $1::%s::text", typ)
		m.log = append(m.log, "Parse "+name+": "+sql)
		if _, e := m.conn.PgConn().Prepare(testCtx(m.t), name, sql, nil); e != nil {
			err = fmt.Errorf("Parse after DDL: %v", e)
			break
		}
		want := fmt.Sprintf("v%d", m.types)
		res := m.conn.PgConn().ExecPrepared(testCtx(m.t), name, [][]byte{[]byte(want)}, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != want {
			err = fmt.Errorf("statement after DDL: got %q, %v", res.Rows, res.Err)
		}
		m.conn.PgConn().Deallocate(testCtx(m.t), name)
	}
	if err != nil {
		return err
	}
	return m.check()
}

// check compares what the client sees with the model.
func (m *modelClient) check() error {
	var got [4]string
	if err := m.conn.QueryRow(testCtx(m.t), `SELECT current_setting('work_mem'), current_setting('statement_timeout'),
		current_setting('search_path'),
		coalesce((SELECT string_agg(name, ',' ORDER BY name) FROM pg_prepared_statements WHERE from_sql), '')`).
		Scan(&got[0], &got[1], &got[2], &got[3]); err != nil {
		return fmt.Errorf("check: %v", err)
	}
	var want [4]string
	for i, p := range modelParams {
		want[i] = m.defaults[p]
		if v, ok := m.set[p]; ok {
			want[i] = v
		}
	}
	names := make([]string, 0, len(m.sql))
	for name := range m.sql {
		names = append(names, name)
	}
	slices.Sort(names)
	want[3] = strings.Join(names, ",")
	if got != want {
		return fmt.Errorf("sees work_mem, statement_timeout, search_path, SQL statements %q; model %q", got, want)
	}
	if m.rng.IntN(4) == 0 {
		for name, k := range m.proto {
			res := m.conn.PgConn().ExecPrepared(context.Background(), name, [][]byte{[]byte("0")}, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != fmt.Sprint(k) {
				return fmt.Errorf("statement %s: got %q, %v; want %d", name, res.Rows, res.Err, k)
			}
		}
	}
	return nil
}

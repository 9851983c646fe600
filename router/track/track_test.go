package track

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/router/classify"
)

// enc encodes server messages.
func enc(msgs ...pgproto3.BackendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			panic(err)
		}
	}
	return b
}

func cc(tag string) []byte { return enc(&pgproto3.CommandComplete{CommandTag: []byte(tag)}) }
func rfq(st byte) []byte   { return enc(&pgproto3.ReadyForQuery{TxStatus: st}) }
func errMsg(code string) []byte {
	return enc(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: "m " + code})
}

var (
	parseComplete = enc(&pgproto3.ParseComplete{})
	bindComplete  = enc(&pgproto3.BindComplete{})
	closeComplete = enc(&pgproto3.CloseComplete{})
	noData        = enc(&pgproto3.NoData{})
)

// feed hands the server's messages to s and returns what the client got,
// as message type letters.
func feed(t *testing.T, s *Server, msgs ...[]byte) string {
	t.Helper()
	var out []byte
	for _, m := range msgs {
		out, _ = s.Answer(out, m[0], m)
	}
	return types(out)
}

// types lists the message types in b.
func types(b []byte) string {
	var s strings.Builder
	for len(b) >= 5 {
		n := int(b[1])<<24 | int(b[2])<<16 | int(b[3])<<8 | int(b[4])
		s.WriteByte(b[0])
		b = b[1+n:]
	}
	return s.String()
}

type fakeDB struct {
	parsed  []string
	changed int
	marks   []int64 // -1: unknown
}

func (d *fakeDB) Parsed(name string) { d.parsed = append(d.parsed, name) }
func (d *fakeDB) CatalogChanged()    { d.changed++ }
func (d *fakeDB) Written(lsn int64, ok bool) {
	if !ok {
		lsn = -1
	}
	d.marks = append(d.marks, lsn)
}

func newPair(startup map[string]string) (*Server, *Client, *fakeDB) {
	db := &fakeDB{}
	s := NewServer(db, "app")
	c := NewClient(startup)
	s.Link(c)
	return s, c, db
}

func classified(t *testing.T, sql string) (classify.Result, []Effect) {
	t.Helper()
	res := classify.New(classify.Options{CacheSize: -1}).Classify(sql)
	return res, Effects(res, sql)
}

// query pushes a client Query of sql and returns its effects.
func query(t *testing.T, s *Server, sql string) {
	t.Helper()
	_, eff := classified(t, sql)
	s.Push(Request{Type: 'Q', Effects: eff})
}

func TestAnswerEdits(t *testing.T) {
	s, _, db := newPair(nil)
	s.Push(Request{Type: 'Q', Edit: Swallow})                          // a replay
	s.Push(Request{Type: 'C', Edit: Substitute, Subst: parseComplete}) // ParseComplete owed
	s.Push(Request{Type: 'P', Stmt: "pgswitch_x"})                     // the client's Parse
	s.Push(Request{Type: 'P', Edit: Swallow, Stmt: "pgswitch_y"})      // prepared on demand
	s.Push(Request{Type: 'B'})                                         //
	s.Push(Request{Type: 'E'})                                         //
	s.Push(Request{Type: 'S'})                                         //
	got := feed(t, s, cc("SET"), rfq('I'), closeComplete, parseComplete, parseComplete, bindComplete,
		enc(&pgproto3.DataRow{Values: [][]byte{[]byte("1")}}), cc("SELECT 1"), rfq('I'))
	if want := "112DCZ"; got != want {
		t.Fatalf("client got %q, want %q", got, want)
	}
	if !slices.Equal(db.parsed, []string{"pgswitch_x", "pgswitch_y"}) {
		t.Fatalf("parsed %q", db.parsed)
	}
	if s.Owed() {
		t.Fatal("requests still owed")
	}
}

func TestExtendedErrorSkipsToSync(t *testing.T) {
	s, c, _ := newPair(nil)
	c.AddStmt("a", &Stmt{Server: "pgswitch_a"})
	s.Push(Request{Type: 'P', Stmt: "pgswitch_a", Client: "a"})
	s.Push(Request{Type: 'P', Edit: Swallow, Stmt: "pgswitch_b"})
	s.Push(Request{Type: 'B'})
	s.Push(Request{Type: 'S'})
	// The first Parse fails: the second is skipped, so neither is there.
	if got := feed(t, s, errMsg("42601"), rfq('I')); got != "EZ" {
		t.Fatalf("client got %q", got)
	}
	if s.HasStmt("pgswitch_a") || s.HasStmt("pgswitch_b") {
		t.Fatal("a refused or skipped Parse left its statement recorded")
	}
	if c.Stmt("a") != nil {
		t.Fatal("the client keeps a statement the server refused")
	}
	// A swallowed request's error still reaches the client; a substitute's
	// is replaced.
	s.Push(Request{Type: 'D', Edit: Substitute, Subst: errMsg("42P05")})
	s.Push(Request{Type: 'S'})
	var out []byte
	out, _ = s.Answer(out, 'E', errMsg("26000"))
	out, _ = s.Answer(out, 'Z', rfq('T'))
	if !strings.Contains(string(out), "42P05") || strings.Contains(string(out), "26000") {
		t.Fatalf("substitute error not swapped in: %q", out)
	}
}

func TestSettingsFollowTransactions(t *testing.T) {
	cases := []struct {
		name  string
		steps [][]string // per Query: sql, then the server's tags ("E" an error), then the status
		want  map[string]string
	}{
		{"autocommit SET", [][]string{{"SET work_mem = '8MB'", "SET", "I"}}, map[string]string{"work_mem": "SET work_mem = '8MB'"}},
		{"hinted SET", [][]string{{"/* pgswitch:primary */ SET work_mem = '8MB'", "SET", "I"}},
			map[string]string{"work_mem": "/* pgswitch:primary */ SET work_mem = '8MB'"}},
		{"SET with other work", [][]string{{"SET work_mem = '8MB'; INSERT INTO t VALUES (1)", "SET", "INSERT 0 1", "I"}},
			map[string]string{"work_mem": "SET work_mem = '8MB'"}},
		{"failed implicit transaction", [][]string{{"SET work_mem = '8MB'; SELECT 1/0", "SET", "E", "I"}}, map[string]string{}},
		{"rolled back", [][]string{{"BEGIN", "BEGIN", "T"}, {"SET work_mem = '8MB'", "SET", "T"}, {"ROLLBACK", "ROLLBACK", "I"}}, map[string]string{}},
		{"committed", [][]string{{"BEGIN; SET work_mem = '8MB'; COMMIT", "BEGIN", "SET", "COMMIT", "I"}},
			map[string]string{"work_mem": "SET work_mem = '8MB'"}},
		{"commit of a failed transaction", [][]string{{"BEGIN; SET work_mem = '8MB'", "BEGIN", "SET", "T"}, {"SELECT 1/0", "E", "E"}, {"COMMIT", "ROLLBACK", "I"}},
			map[string]string{}},
		{"rollback to savepoint", [][]string{{"BEGIN; SET a.x = 1; SAVEPOINT s; SET a.y = 2; ROLLBACK TO s; COMMIT", "BEGIN", "SET", "SAVEPOINT", "SET", "ROLLBACK", "COMMIT", "I"}},
			map[string]string{"a.x": "SET a.x = 1"}},
		{"release savepoint", [][]string{{"BEGIN; SAVEPOINT s; SET a.y = 2; RELEASE s; COMMIT", "BEGIN", "SAVEPOINT", "SET", "RELEASE", "COMMIT", "I"}},
			map[string]string{"a.y": "SET a.y = 2"}},
		{"reset", [][]string{{"SET a.x = 1", "SET", "I"}, {"RESET a.x", "RESET", "I"}}, map[string]string{}},
		{"reset all", [][]string{{"SET a.x = 1; SET a.y = 2", "SET", "SET", "I"}, {"RESET ALL", "RESET", "I"}}, map[string]string{}},
		{"set to default", [][]string{{"SET a.x = 1", "SET", "I"}, {"SET a.x TO DEFAULT", "SET", "I"}}, map[string]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, c, _ := newPair(nil)
			for _, step := range tc.steps {
				query(t, s, step[0])
				for _, tag := range step[1 : len(step)-1] {
					if tag == "E" {
						feed(t, s, errMsg("22012"))
					} else {
						feed(t, s, cc(tag))
					}
				}
				feed(t, s, rfq(step[len(step)-1][0]))
			}
			if got := c.Settings(); !maps.Equal(got, tc.want) {
				t.Fatalf("client settings %q, want %q", got, tc.want)
			}
			s.mu.Lock()
			got := maps.Clone(s.settings)
			s.mu.Unlock()
			if !maps.Equal(got, tc.want) {
				t.Fatalf("server settings %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSyncAndStartup(t *testing.T) {
	startup := map[string]string{"datestyle": SetConfig("datestyle", "Postgres, MDY")}
	s, c, _ := newPair(startup)
	q, eff := s.Sync(c)
	if q != startup["datestyle"]+";" || len(eff) != 1 {
		t.Fatalf("sync of a new connection: %q %v", q, eff)
	}
	s.Push(Request{Type: 'Q', Edit: Swallow, Replay: true, Effects: eff})
	feed(t, s, enc(&pgproto3.RowDescription{}), enc(&pgproto3.DataRow{Values: [][]byte{[]byte("x")}}), cc("SELECT 1"), rfq('I'))
	if q, _ := s.Sync(c); q != "" {
		t.Fatalf("in sync after the replay, still %q", q)
	}
	// RESET returns to the startup value for the client; the server goes
	// to its default, so pgswitch sets the startup value again.
	query(t, s, "RESET datestyle")
	_, eff = classified(t, "RESET datestyle")
	if !c.ResetsStartup(eff) {
		t.Fatal("RESET of a startup parameter not noticed")
	}
	feed(t, s, cc("RESET"), rfq('I'))
	if got := c.Settings()["datestyle"]; got != startup["datestyle"] {
		t.Fatalf("client's datestyle after RESET: %q", got)
	}
	if q, _ := s.Sync(c); q != startup["datestyle"]+";" {
		t.Fatalf("after RESET the server needs the startup value: %q", q)
	}
	if q, _ := c.StartupFix(eff); q != startup["datestyle"]+";" {
		t.Fatalf("startup fix: %q", q)
	}
	// Another client's settings are reset, SQL statements swapped.
	other := NewClient(nil)
	other.AddStmt("q", &Stmt{Server: "q", SQL: true, Text: "PREPARE q AS SELECT 1"})
	s.mu.Lock()
	s.sqlNames = map[string]string{"r": "PREPARE r AS SELECT 2"}
	s.settings["work_mem"] = "SET work_mem = 1"
	s.mu.Unlock()
	q, eff = s.Sync(other)
	if want := `DEALLOCATE "r";RESET "work_mem";PREPARE q AS SELECT 1;`; q != want || len(eff) != 3 {
		t.Fatalf("sync to another client: %q, want %q", q, want)
	}
}

// TestSyncRemembersEqualSettings: a server remembers which unchanged
// (shared) client settings it equals, and forgets as soon as its own
// settings change. Randomized, fixed seed: clients sharing one startup,
// another startup and none take turns on two server connections, run SETs
// and RESETs, and are brought in sync; Sync must find them in sync exactly
// when the two settings maps are equal.
func TestSyncRemembersEqualSettings(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 21))
	a := map[string]string{"datestyle": SetConfig("datestyle", "Postgres, MDY")}
	b := map[string]string{"datestyle": SetConfig("datestyle", "ISO, DMY"), "application_name": SetConfig("application_name", "b")}
	clients := []*Client{NewClient(a), NewClient(a), NewClient(a), NewClient(b), NewClient(nil)}
	servers := []*Server{NewServer(&fakeDB{}, "app"), NewServer(&fakeDB{}, "app")}
	stmts := []struct{ sql, tag string }{
		{"SET a.x = 1", "SET"}, {"SET a.x = 2", "SET"}, {"RESET a.x", "RESET"},
		{"RESET ALL", "RESET"}, {"RESET datestyle", "RESET"}, {"SET datestyle = 'ISO, DMY'", "SET"},
	}
	settingsOf := func(s *Server) map[string]string {
		s.mu.Lock()
		defer s.mu.Unlock()
		return maps.Clone(s.settings)
	}
	found := 0
	for step := 0; step < 2000; step++ {
		s, c := servers[rng.IntN(len(servers))], clients[rng.IntN(len(clients))]
		s.Link(c)
		equal := maps.Equal(settingsOf(s), c.Settings())
		q, eff := s.Sync(c)
		if (q == "") != equal {
			t.Fatalf("step %d: Sync says %q with server settings %q and client settings %q", step, q, settingsOf(s), c.Settings())
		}
		if equal {
			found++
		} else {
			s.Push(Request{Type: 'Q', Edit: Swallow, Replay: true, Effects: eff})
			for _, e := range eff {
				if e.Kind == classify.KindReset {
					feed(t, s, cc("RESET"))
				} else {
					feed(t, s, enc(&pgproto3.RowDescription{}), enc(&pgproto3.DataRow{Values: [][]byte{[]byte("x")}}), cc("SELECT 1"))
				}
			}
			feed(t, s, rfq('I'))
			if q, _ := s.Sync(c); q != "" {
				t.Fatalf("step %d: not in sync after the replay: %q", step, q)
			}
		}
		switch rng.IntN(4) {
		case 0, 1: // the client changes a setting
			st := stmts[rng.IntN(len(stmts))]
			query(t, s, st.sql)
			feed(t, s, cc(st.tag), rfq('I'))
		case 2:
			s.Detached(rng.IntN(2) == 0) // with reset: DISCARD ALL
		}
	}
	if found < 200 {
		t.Fatalf("only %d of 2000 Syncs found the server in sync: the test does not exercise the memo", found)
	}
}

// TestSyncCountsSQLStatements: Sync tells SQL-level statements from
// protocol-level ones by a count it keeps as statements come and go, so a
// client with only protocol-level statements (replaced, dropped, cleared)
// is in sync with a server that has no SQL-level ones, and out of sync
// with one that has.
func TestSyncCountsSQLStatements(t *testing.T) {
	s, c, _ := newPair(nil)
	for _, name := range []string{"a", "b", "c"} {
		c.AddStmt(name, &Stmt{Server: "pgswitch_" + name, Text: "SELECT 1"})
	}
	if q, _ := s.Sync(c); q != "" {
		t.Fatalf("protocol-level statements only, yet %q", q)
	}
	c.AddStmt("a", &Stmt{Server: "a", SQL: true, Text: "PREPARE a AS SELECT 1"}) // replaces a protocol one
	if q, _ := s.Sync(c); q != "PREPARE a AS SELECT 1;" {
		t.Fatalf("after PREPARE a: %q", q)
	}
	c.AddStmt("a", &Stmt{Server: "pgswitch_a", Text: "SELECT 1"}) // and back
	if q, _ := s.Sync(c); q != "" {
		t.Fatalf("SQL-level a replaced by a protocol one, yet %q", q)
	}
	c.AddStmt("d", &Stmt{Server: "d", SQL: true, Text: "PREPARE d AS SELECT 2"})
	c.DropStmt("d")
	if q, _ := s.Sync(c); q != "" {
		t.Fatalf("SQL-level d dropped, yet %q", q)
	}
	s.mu.Lock()
	s.sqlNames = map[string]string{"r": "PREPARE r AS SELECT 2"}
	s.mu.Unlock()
	if q, _ := s.Sync(c); q != `DEALLOCATE "r";` {
		t.Fatalf("server has r, the client only protocol-level statements: %q", q)
	}
	c.AddStmt("r", &Stmt{Server: "r", SQL: true, Text: "PREPARE r AS SELECT 2"})
	if q, _ := s.Sync(c); q != "" {
		t.Fatalf("both have r, yet %q", q)
	}
	c.mu.Lock()
	c.clearStmtsLocked()
	c.mu.Unlock()
	if q, _ := s.Sync(c); q != `DEALLOCATE "r";` {
		t.Fatalf("client's statements cleared, server has r: %q", q)
	}
}

func TestGuard(t *testing.T) {
	policy := func(code, _ []byte) Outcome {
		if string(code) == "25006" {
			return Refused
		}
		return Passed
	}
	s, _, _ := newPair(nil)
	s.Push(Request{Type: 'Q', Edit: Swallow})
	s.Push(Request{Type: 'P'})
	s.Push(Request{Type: 'B'})
	s.Push(Request{Type: 'E'})
	s.Push(Request{Type: 'S'})
	g := NewGuard(policy, nil)
	ch := s.Guard(g)
	if got := feed(t, s, cc("SET"), rfq('I'), parseComplete, bindComplete, errMsg("25006"), rfq('I')); got != "" {
		t.Fatalf("a refused unit's answer reached the client: %q", got)
	}
	if o := <-ch; o != Refused {
		t.Fatalf("outcome %v", o)
	}
	s.Push(Request{Type: 'P'})
	s.Push(Request{Type: 'S'})
	ch = s.Guard(g) // the same guard, for the next unit
	var out []byte
	out, _ = s.Answer(out, '1', parseComplete)
	if len(out) != 0 {
		t.Fatal("held answer written before the unit passed")
	}
	out, _ = s.Answer(out, 'Z', rfq('I'))
	if types(out) != "1Z" || <-ch != Passed {
		t.Fatalf("passed unit: %q", types(out))
	}
}

func TestCapture(t *testing.T) {
	row := func(name, value string) []byte {
		return enc(&pgproto3.DataRow{Values: [][]byte{[]byte(name), []byte(value)}})
	}
	s, c, _ := newPair(nil)
	s.Push(Request{Type: 'Q'})
	s.Push(Request{Type: 'Q', Edit: Capture})
	got := feed(t, s, enc(&pgproto3.RowDescription{}), enc(&pgproto3.DataRow{Values: [][]byte{[]byte("x")}}), cc("SELECT 1"), rfq('I'),
		enc(&pgproto3.RowDescription{}), row("search_path", "a, b"), row("role", "none"), row("session_authorization", "app"), cc("SELECT 3"), rfq('I'))
	if got != "TDCZ" {
		t.Fatalf("client got %q", got)
	}
	if want := map[string]string{"search_path": SetConfig("search_path", "a, b")}; !maps.Equal(c.Settings(), want) {
		t.Fatalf("captured %q, want %q", c.Settings(), want)
	}
	if c.Pinned() != "" {
		t.Fatal("pinned without reason")
	}
	// A role set behind pgswitch's back pins the client.
	s.Push(Request{Type: 'Q', Edit: Capture})
	feed(t, s, row("role", "bob"), cc("SELECT 1"), rfq('I'))
	if c.Pinned() == "" {
		t.Fatal("a role change did not pin the client")
	}
	// A failed read-back pins too, unless the transaction failed anyway.
	s2, c2, _ := newPair(nil)
	s2.Push(Request{Type: 'Q', Edit: Capture})
	feed(t, s2, errMsg("25P02"), rfq('E'))
	if c2.Pinned() != "" {
		t.Fatal("pinned after a read-back in a failed transaction")
	}
	s2.Push(Request{Type: 'Q', Edit: Capture})
	feed(t, s2, errMsg("57014"), rfq('I'))
	if c2.Pinned() == "" {
		t.Fatal("a failed read-back did not pin the client")
	}
}

func TestStatementsNotTransactional(t *testing.T) {
	s, c, _ := newPair(nil)
	query(t, s, "PREPARE q AS SELECT 1; SELECT 1/0")
	feed(t, s, cc("PREPARE"), errMsg("22012"), rfq('I'))
	if st := c.Stmt("q"); st == nil || !st.SQL || st.Text != "PREPARE q AS SELECT 1" {
		t.Fatalf("PREPARE that completed is gone: %+v", st)
	}
	query(t, s, "DEALLOCATE q")
	feed(t, s, cc("DEALLOCATE"), rfq('I'))
	if c.Stmt("q") != nil {
		t.Fatal("DEALLOCATE kept the statement")
	}
	c.AddStmt("p", &Stmt{Server: "pgswitch_p"})
	s.Push(Request{Type: 'P', Stmt: "pgswitch_p"})
	feed(t, s, parseComplete)
	query(t, s, "DEALLOCATE ALL")
	feed(t, s, cc("DEALLOCATE ALL"), rfq('I'))
	if c.Stmt("p") != nil || s.HasStmt("pgswitch_p") {
		t.Fatal("DEALLOCATE ALL kept statements")
	}
}

// TestHotPathAllocatesNothing: a unit that changes no state costs no
// allocation in the tracker: no effects, no replay, answers appended.
func TestHotPathAllocatesNothing(t *testing.T) {
	s, c, _ := newPair(map[string]string{"application_name": SetConfig("application_name", "app")})
	q, eff := s.Sync(c)
	s.Push(Request{Type: 'Q', Edit: Swallow, Replay: true, Effects: eff})
	feed(t, s, enc(&pgproto3.RowDescription{}), enc(&pgproto3.DataRow{Values: [][]byte{[]byte("app")}}), cc("SELECT 1"), rfq('I'))
	if q == "" {
		t.Fatal("no replay for a new connection")
	}
	res := classify.New(classify.Options{}).Classify("SELECT abalance FROM pgbench_accounts WHERE aid = 1")
	row := enc(&pgproto3.DataRow{Values: [][]byte{[]byte("0")}})
	done, ready := cc("SELECT 1"), rfq('I')
	out := make([]byte, 0, 1024)
	n := testing.AllocsPerRun(200, func() {
		if q, _ := s.Sync(c); q != "" {
			t.Fatal("replay for a connection in sync")
		}
		s.Push(Request{Type: 'Q', Effects: Effects(res, "SELECT abalance FROM pgbench_accounts WHERE aid = 1")})
		out = out[:0]
		out, _ = s.Answer(out, 'D', row)
		out, _ = s.Answer(out, 'C', done)
		out, _ = s.Answer(out, 'Z', ready)
	})
	if n != 0 {
		t.Fatalf("a unit allocates %v times in the tracker, want 0", n)
	}
	// A guarded unit (a read on a replica) with the session's one guard.
	g := NewGuard(func(code, _ []byte) Outcome { return Passed }, nil)
	n = testing.AllocsPerRun(200, func() {
		s.Push(Request{Type: 'Q'})
		ch := s.Guard(g)
		out = out[:0]
		out, _ = s.Answer(out, 'D', row)
		out, _ = s.Answer(out, 'C', done)
		out, _ = s.Answer(out, 'Z', ready)
		if <-ch != Passed {
			t.Fatal("the unit did not pass")
		}
	})
	if n != 0 {
		t.Fatalf("a guarded unit allocates %v times in the tracker, want 0", n)
	}
}

// TestGuardReused: one guard serves unit after unit, moving between two
// server connections as a session's leases do; each unit's client sees
// exactly its own answer (all of it when it passed, none when refused),
// never bytes a unit before it held or discarded. Randomized, fixed seed.
func TestGuardReused(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 7))
	policy := func(code, _ []byte) Outcome {
		if string(code) == "25006" {
			return Refused
		}
		return Passed
	}
	woken := 0
	g := NewGuard(policy, func() { woken++ })
	servers := [2]*Server{}
	for i := range servers {
		servers[i], _, _ = newPair(nil)
	}
	refused := 0
	for unit := 0; unit < 300; unit++ {
		s := servers[rng.IntN(2)]
		s.Push(Request{Type: 'P'})
		s.Push(Request{Type: 'B'})
		s.Push(Request{Type: 'E'})
		s.Push(Request{Type: 'S'})
		ch := s.Guard(g)
		// Acknowledgements and descriptions are held; the first telling
		// message decides.
		msgs := [][]byte{parseComplete, bindComplete}
		want := "12"
		if rng.IntN(2) == 0 {
			msgs = append(msgs, enc(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte(strings.Repeat("c", rng.IntN(3000)))}}}))
			want += "T"
		}
		outcome := Passed
		if rng.IntN(3) == 0 {
			outcome, want = Refused, ""
			msgs = append(msgs, errMsg("25006"), rfq('I'))
			refused++
		} else {
			for range rng.IntN(4) {
				msgs = append(msgs, enc(&pgproto3.DataRow{Values: [][]byte{[]byte(strings.Repeat("v", rng.IntN(5000)))}}))
				want += "D"
			}
			msgs = append(msgs, cc("SELECT"), rfq('I'))
			want += "CZ"
		}
		if got := feed(t, s, msgs...); got != want {
			t.Fatalf("unit %d: the client got %q, want %q", unit, got, want)
		}
		select {
		case o := <-ch:
			if o != outcome {
				t.Fatalf("unit %d: outcome %v, want %v", unit, o, outcome)
			}
		default:
			t.Fatalf("unit %d: no outcome after its ReadyForQuery", unit)
		}
	}
	if woken != refused || refused == 0 {
		t.Fatalf("woken %d times for %d refused units", woken, refused)
	}
}

// TestMarkHoldsTheAnswer: the client's ReadyForQuery waits for the WAL
// position read behind its write, which goes to the database and the client.
func TestMarkHoldsTheAnswer(t *testing.T) {
	s, c, db := newPair(nil)
	s.Push(Request{Type: 'Q'})
	s.Push(Request{Type: 'Q', Edit: Capture, Mark: true})
	var out []byte
	for _, m := range [][]byte{cc("INSERT 0 1"), rfq('I')} {
		out, _ = s.Answer(out, m[0], m)
	}
	if types(out) != "C" {
		t.Fatalf("before the mark the client got %q, want its CommandComplete only", types(out))
	}
	for _, m := range [][]byte{enc(&pgproto3.RowDescription{}), enc(&pgproto3.DataRow{Values: [][]byte{[]byte("12345")}}), cc("SELECT 1"), rfq('I')} {
		out, _ = s.Answer(out, m[0], m)
	}
	if types(out) != "CZ" {
		t.Fatalf("after the mark the client got %q, want CZ", types(out))
	}
	if lsn, ok := c.Mark(); !ok || lsn != 12345 || !slices.Equal(db.marks, []int64{12345}) {
		t.Fatalf("mark: client %d %v, database %v", lsn, ok, db.marks)
	}
	// A mark that cannot be read makes the mark unknown until the next.
	s.Push(Request{Type: 'Q'})
	s.Push(Request{Type: 'Q', Edit: Capture, Mark: true})
	if got := feed(t, s, cc("INSERT 0 1"), rfq('I'), errMsg("57014"), rfq('I')); got != "CZ" {
		t.Fatalf("client got %q", got)
	}
	if _, ok := c.Mark(); ok {
		t.Fatal("mark known after a failed read")
	}
}

// TestVerifyRefusesABehindReplica: a unit behind a Verify reaches the client
// only if the replica had replayed the position it must see; otherwise its
// whole answer (rows, error or not) is dropped and the outcome is Behind,
// told at the unit's own ReadyForQuery, not the check's.
func TestVerifyRefusesABehindReplica(t *testing.T) {
	never := func(code, message []byte) Outcome { return Passed }
	check := func(lsn string) [][]byte {
		return [][]byte{enc(&pgproto3.RowDescription{}), enc(&pgproto3.DataRow{Values: [][]byte{[]byte(lsn)}}), cc("SELECT 1"), rfq('I')}
	}
	unit := [][]byte{enc(&pgproto3.RowDescription{}), enc(&pgproto3.DataRow{Values: [][]byte{[]byte("7")}}), cc("SELECT 1"), rfq('I')}
	for _, tc := range []struct {
		name    string
		check   [][]byte
		unit    [][]byte
		want    Outcome
		client  string
		replayd int64
	}{
		{"caught up", check("500"), unit, Passed, "TDCZ", 500},
		{"exactly there", check("400"), unit, Passed, "TDCZ", 400},
		{"behind", check("399"), unit, Behind, "", 399},
		{"behind, the unit failed there", check("10"), [][]byte{errMsg("42P01"), rfq('I')}, Behind, "", 10},
		{"check failed", [][]byte{errMsg("57014"), rfq('I')}, unit, Behind, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := newPair(nil)
			s.Push(Request{Type: 'Q', Edit: Capture, Verify: 400})
			s.Push(Request{Type: 'Q'})
			ch := s.Guard(NewGuard(never, nil))
			var out []byte
			for _, m := range tc.check {
				out, _ = s.Answer(out, m[0], m)
			}
			select {
			case o := <-ch:
				t.Fatalf("outcome %v at the check's ReadyForQuery", o)
			default:
			}
			for _, m := range tc.unit {
				out, _ = s.Answer(out, m[0], m)
			}
			if o := <-ch; o != tc.want {
				t.Fatalf("outcome %v, want %v", o, tc.want)
			}
			if types(out) != tc.client {
				t.Fatalf("client got %q, want %q", types(out), tc.client)
			}
			if s.Replayed() != tc.replayd {
				t.Fatalf("Replayed() = %d, want %d", s.Replayed(), tc.replayd)
			}
		})
	}
}

// TestSharedStartup: clients of one application share their startup map
// (router.sharedSets); one client's SET, RESET and RESET ALL change its
// own settings only, never the map or the other client's.
func TestSharedStartup(t *testing.T) {
	startup := map[string]string{"datestyle": SetConfig("datestyle", "Postgres, MDY")}
	want := maps.Clone(startup)
	s, c, _ := newPair(startup)
	other := NewClient(startup)
	for _, sql := range []string{"SET datestyle = 'ISO, DMY'", "SET work_mem = '8MB'", "RESET datestyle", "RESET ALL", "SET work_mem = '9MB'"} {
		query(t, s, sql)
		feed(t, s, cc(strings.Fields(sql)[0]), rfq('I'))
		if !maps.Equal(startup, want) {
			t.Fatalf("after %q the shared startup map is %v", sql, startup)
		}
		if got := other.Settings(); !maps.Equal(got, want) {
			t.Fatalf("after the first client's %q the other has %v", sql, got)
		}
	}
	if got := c.Settings(); got["work_mem"] != "SET work_mem = '9MB'" || got["datestyle"] != want["datestyle"] {
		t.Fatalf("the client's own settings: %v", got)
	}
}

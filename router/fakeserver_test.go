package router

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/config"
)

// fakePG is a scripted PostgreSQL server at the protocol boundary, for
// session tests without a cluster: it logs clients in with trust auth,
// answers health probes as a primary or a replica, and runs a small subset
// of SQL with per-connection settings and prepared statements. It records
// what pgswitch's pool connections sent it, so that tests can see what
// reached the server, not only what came back.
type fakePG struct {
	ln      net.Listener
	replica bool
	raw     bool // pool connections are served by serveRaw (benchmarks)
	wg      sync.WaitGroup

	mu    sync.Mutex
	pid   uint32
	conns []net.Conn
	log   []string // "pid: message" for every message of a pool connection
}

func newFakePG(t testing.TB, replica bool) *fakePG {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePG{ln: ln, replica: replica, pid: 100}
	if replica {
		f.pid = 500
	}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *fakePG) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *fakePG) accept() {
	defer f.wg.Done()
	for {
		nc, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.pid++
		pid := f.pid
		f.conns = append(f.conns, nc)
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer nc.Close()
			(&fakeConn{f: f, nc: nc, pid: pid, b: pgproto3.NewBackend(nc, nc), status: 'I',
				settings: map[string]string{}, stmts: map[string]string{}, portals: map[string]string{}}).serve()
		}()
	}
}

func (f *fakePG) close() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fakePG) record(pid uint32, s string) {
	f.mu.Lock()
	f.log = append(f.log, fmt.Sprintf("%d: %s", pid, s))
	f.mu.Unlock()
}

// seen returns what pool connections sent, in order.
func (f *fakePG) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

type fakeConn struct {
	f        *fakePG
	nc       net.Conn
	b        *pgproto3.Backend
	pid      uint32
	pool     bool // a pgswitch pool connection, not a health check
	status   byte
	skip     bool
	settings map[string]string
	stmts    map[string]string // prepared statements → query
	portals  map[string]string // portals → query
}

func (c *fakeConn) serve() {
	sm, err := c.b.ReceiveStartupMessage()
	if err != nil {
		return
	}
	if st, ok := sm.(*pgproto3.StartupMessage); ok {
		c.pool = st.Parameters["application_name"] == ""
	}
	c.b.Send(&pgproto3.AuthenticationOk{})
	c.b.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
	c.b.Send(&pgproto3.ParameterStatus{Name: "DateStyle", Value: "ISO, MDY"})
	c.b.Send(&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "on"})
	c.b.Send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"})
	c.b.Send(&pgproto3.BackendKeyData{ProcessID: c.pid, SecretKey: []byte{0, 0, 0, 7}})
	c.b.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if c.b.Flush() != nil {
		return
	}
	if c.pool && c.f.raw {
		// Nothing was sent after the startup message before the login's
		// ReadyForQuery: the Backend holds no buffered bytes.
		c.serveRaw()
		return
	}
	for {
		m, err := c.b.Receive()
		if err != nil || !c.handle(m) {
			return
		}
	}
}

// handle answers one message from the client, and sends what it owes
// unless the message is an extended-protocol one other than Flush; false:
// the connection ends.
func (c *fakeConn) handle(m pgproto3.FrontendMessage) bool {
	if c.pool {
		c.f.record(c.pid, describeFront(m))
	}
	switch m := m.(type) {
	case *pgproto3.Query:
		c.query(m.String)
		c.b.Send(&pgproto3.ReadyForQuery{TxStatus: c.status})
	case *pgproto3.Sync:
		c.skip = false
		c.b.Send(&pgproto3.ReadyForQuery{TxStatus: c.status})
	case *pgproto3.Terminate:
		return false
	default:
		if !c.skip {
			c.extended(m)
		}
		if _, ok := m.(*pgproto3.Flush); !ok {
			return true // as PostgreSQL's, extended-protocol answers wait for a Sync or a Flush
		}
	}
	return c.b.Flush() == nil
}

func describeFront(m pgproto3.FrontendMessage) string {
	switch m := m.(type) {
	case *pgproto3.Query:
		return "Q " + m.String
	case *pgproto3.Parse:
		return "P " + m.Name + " " + m.Query
	case *pgproto3.Bind:
		return "B " + m.PreparedStatement
	case *pgproto3.Describe:
		return "D " + string(m.ObjectType) + " " + m.Name
	case *pgproto3.Close:
		return "C " + string(m.ObjectType) + " " + m.Name
	case *pgproto3.Execute:
		return "E"
	case *pgproto3.Sync:
		return "S"
	}
	return fmt.Sprintf("%T", m)
}

func (c *fakeConn) fail(code, msg string) {
	c.b.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg})
	if c.status == 'T' {
		c.status = 'E'
	}
}

func (c *fakeConn) extended(m pgproto3.FrontendMessage) {
	fail := func(code, msg string) { c.fail(code, msg); c.skip = true }
	switch m := m.(type) {
	case *pgproto3.Parse:
		if strings.HasPrefix(m.Query, "SELEC ") {
			fail("42601", "syntax error")
			return
		}
		if _, ok := c.stmts[m.Name]; ok && m.Name != "" {
			fail("42P05", fmt.Sprintf("prepared statement %q already exists", m.Name))
			return
		}
		c.stmts[m.Name] = m.Query
		c.b.Send(&pgproto3.ParseComplete{})
	case *pgproto3.Bind:
		q, ok := c.stmts[m.PreparedStatement]
		if !ok {
			fail("26000", fmt.Sprintf("prepared statement %q does not exist", m.PreparedStatement))
			return
		}
		c.portals[m.DestinationPortal] = q
		c.b.Send(&pgproto3.BindComplete{})
	case *pgproto3.Describe:
		q := c.portals[m.Name]
		if m.ObjectType == 'S' {
			var ok bool
			if q, ok = c.stmts[m.Name]; !ok {
				fail("26000", fmt.Sprintf("prepared statement %q does not exist", m.Name))
				return
			}
			c.b.Send(&pgproto3.ParameterDescription{})
		}
		if strings.HasPrefix(q, "SELECT") {
			c.b.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
		} else {
			c.b.Send(&pgproto3.NoData{})
		}
	case *pgproto3.Execute:
		if !c.statement(c.portals[m.Portal], true) {
			c.skip = true
		}
	case *pgproto3.Close:
		if m.ObjectType == 'S' {
			delete(c.stmts, m.Name)
		}
		c.b.Send(&pgproto3.CloseComplete{})
	}
}

// query runs a simple Query: statements split at semicolons outside quotes.
func (c *fakeConn) query(sql string) {
	for _, st := range splitStatements(sql) {
		if !c.statement(st, false) {
			return
		}
	}
}

func splitStatements(sql string) []string {
	var out []string
	quoted := false
	start := 0
	for i := 0; i < len(sql); i++ {
		switch sql[i] {
		case '\'':
			quoted = !quoted
		case ';':
			if !quoted {
				out = append(out, sql[start:i])
				start = i + 1
			}
		}
	}
	out = append(out, sql[start:])
	var stmts []string
	for _, s := range out {
		if s = strings.TrimSpace(s); s != "" {
			stmts = append(stmts, s)
		}
	}
	return stmts
}

var (
	setRe       = regexp.MustCompile(`(?i)^SET\s+(\w+)\s*(?:=|TO)\s*'?([^']*)'?$`)
	setConfigRe = regexp.MustCompile(`(?i)set_config\(E?'([^']*)', E?'([^']*)', false\)`)
	resetRe     = regexp.MustCompile(`(?i)^RESET\s+"?(\w+)"?$`)
	currentRe   = regexp.MustCompile(`(?i)^SELECT current_setting\('(\w+)'\)$`)
	intRe       = regexp.MustCompile(`^SELECT (\d+)$`)
	sleepRe     = regexp.MustCompile(`^SELECT pg_sleep\(([\d.]+)\)$`)
	afterRe     = regexp.MustCompile(`/\* after (\d+)ms \*/`)
)

// statement runs one statement (extended: for an Execute, which sends no
// RowDescription); false: it failed.
func (c *fakeConn) statement(st string, extended bool) bool {
	if strings.HasPrefix(st, "--") {
		// A comment alone, as pgconn's Ping sends (SyncConn does, after a
		// login whose writes were slow): PostgreSQL answers EmptyQueryResponse.
		c.b.Send(&pgproto3.EmptyQueryResponse{})
		return true
	}
	if strings.HasPrefix(st, "/*") { // a hint
		if i := strings.Index(st, "*/"); i >= 0 {
			st = strings.TrimSpace(st[i+2:])
		}
	}
	if c.status == 'E' && !strings.EqualFold(st, "ROLLBACK") {
		c.fail("25P02", "current transaction is aborted")
		return false
	}
	row := func(v string) {
		if !extended {
			c.b.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
		}
		c.b.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(v)}})
		c.b.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	}
	done := func(tag string) { c.b.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)}) }
	handled := true
	switch m := st; {
	case strings.Contains(m, "pg_is_in_recovery"):
		c.b.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{DataTypeOID: 16}, {DataTypeOID: 20}, {DataTypeOID: 701}, {DataTypeOID: 20}}})
		rec := "f"
		if c.f.replica {
			rec = "t"
		}
		c.b.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(rec), []byte("1000"), []byte("0"), []byte("1")}})
		done("SELECT 1")
	case strings.Contains(m, "pg_control_system"):
		c.b.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("id"), DataTypeOID: 20}}})
		c.b.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("42")}})
		done("SELECT 1")
	case strings.Contains(m, "pg_proc"):
		c.b.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("proname"), DataTypeOID: 25}}})
		done("SELECT 0")
	case strings.Contains(m, "pg_settings"):
		c.b.Send(&pgproto3.RowDescription{Fields: make([]pgproto3.FieldDescription, 2)})
		for k, v := range c.settings {
			c.b.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(k), []byte(v)}})
		}
		c.b.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("role"), []byte("none")}})
		c.b.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("session_authorization"), []byte("u")}})
		done("SELECT")
	case strings.EqualFold(m, "BEGIN"):
		c.status = 'T'
		done("BEGIN")
	case strings.EqualFold(m, "COMMIT"), strings.EqualFold(m, "ROLLBACK"):
		tag := strings.ToUpper(m)
		if c.status == 'E' {
			tag = "ROLLBACK"
		}
		c.status = 'I'
		done(tag)
	case strings.EqualFold(m, "DISCARD ALL"):
		clear(c.settings)
		clear(c.stmts)
		done("DISCARD ALL")
	case strings.EqualFold(m, "RESET ALL"):
		clear(c.settings)
		done("RESET")
	case strings.EqualFold(m, "SELECT fatal"):
		c.b.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"})
		c.b.Flush()
		c.nc.Close()
		return false
	case strings.HasPrefix(strings.ToUpper(m), "INSERT"):
		if m := afterRe.FindStringSubmatch(st); m != nil {
			// Its answer (or refusal) comes late, as after work.
			ms, _ := strconv.Atoi(m[1])
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		if c.f.replica {
			c.fail("25006", "cannot execute INSERT in a read-only transaction")
			return false
		}
		done("INSERT 0 1")
	case strings.EqualFold(m, "SELECT pg_backend_pid()"):
		row(strconv.Itoa(int(c.pid)))
	default:
		handled = false
	}
	if handled {
		return true
	}
	if m := setRe.FindStringSubmatch(st); m != nil {
		c.settings[strings.ToLower(m[1])] = m[2]
		done("SET")
	} else if m := setConfigRe.FindStringSubmatch(st); m != nil {
		c.settings[strings.ToLower(m[1])] = m[2]
		row(m[2])
	} else if m := resetRe.FindStringSubmatch(st); m != nil {
		delete(c.settings, strings.ToLower(m[1]))
		done("RESET")
	} else if m := currentRe.FindStringSubmatch(st); m != nil {
		v, ok := c.settings[strings.ToLower(m[1])]
		if !ok {
			v = "default"
		}
		row(v)
	} else if m := intRe.FindStringSubmatch(st); m != nil {
		row(m[1])
	} else if m := sleepRe.FindStringSubmatch(st); m != nil {
		d, _ := strconv.ParseFloat(m[1], 64)
		time.Sleep(time.Duration(d * float64(time.Second)))
		row("")
	} else {
		c.fail("42601", "the fake server does not know "+st)
		return false
	}
	return true
}

// fakeRouter runs a router in front of the fake servers (the first one the
// primary), listening on loopback; it is closed when the test ends.
func fakeRouter(t *testing.T, poolSize int, servers ...*fakePG) (*Router, string) {
	t.Helper()
	return fakeRouterLogging(t, io.Discard, poolSize, servers...)
}

// fakeRouterLogging is fakeRouter with its log written to w.
func fakeRouterLogging(t *testing.T, w io.Writer, poolSize int, servers ...*fakePG) (*Router, string) {
	t.Helper()
	return startFakeRouter(t, w, poolSize, "100ms", "", servers...)
}

// startFakeRouter is fakeRouterLogging with health checks every inter.
// startFakeRouter: extra is more of the configuration (YAML), top-level
// sections other than those written here.
func startFakeRouter(t testing.TB, w io.Writer, poolSize int, inter, extra string, servers ...*fakePG) (*Router, string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\npool_mode: transaction\nauth_type: trust\npool:\n  size: %d\n", poolSize)
	fmt.Fprintf(&b, "timeouts:\n  query_wait: 20s\nhealth:\n  inter: %s\n%sdatabases:\n  db:\n    servers:\n", inter, extra)
	for i, s := range servers {
		role := "primary"
		if i > 0 {
			role = "replica"
		}
		fmt.Fprintf(&b, "      - {host: 127.0.0.1, port: %d, role: %s}\n", s.port(), role)
	}
	b.WriteString("users:\n  u:\n    auth: trust\n")
	cfg, err := config.Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	r, err := New(cfg, slog.New(slog.NewTextHandler(w, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Serve(ln)
	}()
	t.Cleanup(func() {
		r.Close()
		<-done
	})
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range servers {
		for !r.Topology().Get(fmt.Sprintf("127.0.0.1:%d", s.port())).Usable() {
			if time.Now().After(deadline) {
				t.Fatalf("the fake server on port %d is not up for the router", s.port())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return r, ln.Addr().String()
}

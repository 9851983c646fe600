package integration

import (
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestShutdownBoundedWhateverClientsDo: clients that stop reading — one in
// the middle of a large result, one idle in a transaction, one in the
// middle of a COPY, one idle — and one that never logs in hold shutdown no longer than
// timeouts.shutdown and a bounded grace; each still gets its FATAL 57P01
// if it reads at last.
func TestShutdownBoundedWhateverClientsDo(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	mustExec(t, primaryConn(t, db), "CREATE TABLE sink (x text)")
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, PoolSize: 4})
	start := func(what string, msgs ...pgproto3.FrontendMessage) rawClient {
		c := dialRaw(t, p.URL(db))
		for _, m := range msgs {
			c.fe.Send(m)
		}
		if err := c.fe.Flush(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return c
	}
	big := start("large result", &pgproto3.Query{String: "SELECT repeat('x', 1000000) FROM generate_series(1, 200)"})
	inTxn := start("idle in transaction", &pgproto3.Query{String: "BEGIN; INSERT INTO sink VALUES ('a')"})
	copying := start("mid-COPY", &pgproto3.Query{String: "COPY sink FROM STDIN"}, &pgproto3.CopyData{Data: []byte("half a ro")})
	idle := start("idle", &pgproto3.Query{String: "SELECT 1"})
	// And one that connected but never sent its startup packet.
	silent, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(500 * time.Millisecond) // the large result fills the socket buffers

	const timeout = time.Second
	began := time.Now()
	done := make(chan struct{})
	go func() {
		p.R.Shutdown(timeout)
		close(done)
	}()
	// A bounded grace, generous for a loaded machine: the bug was 5 s per
	// client one after another, or forever for a client that never reads.
	const bound = timeout + 10*time.Second
	select {
	case <-done:
	case <-time.After(bound + 20*time.Second):
		t.Fatalf("shutdown still running after %v", time.Since(began))
	}
	if took := time.Since(began); took > bound {
		t.Fatalf("shutdown took %v with timeouts.shutdown %v", took, timeout)
	}
	// The clients that read at last find a FATAL 57P01 (the large result's
	// client may have been cut before it, its socket full).
	for what, c := range map[string]rawClient{"idle in transaction": inTxn, "mid-COPY": copying, "idle": idle} {
		if code := c.lastFatal(); code != "57P01" {
			t.Errorf("%s: last message FATAL %q, want 57P01", what, code)
		}
	}
	big.conn.Close()
}

// rawClient is a logged-in client connection driven message by message.
type rawClient struct {
	fe   *pgproto3.Frontend
	conn net.Conn
}

func dialRaw(t *testing.T, url string) rawClient {
	t.Helper()
	pc, err := pgconn.Connect(testCtx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hj.Conn.Close() })
	return rawClient{fe: hj.Frontend, conn: hj.Conn}
}

// lastFatal reads until the connection ends and returns the SQLSTATE of
// the FATAL it ended with ("" if none).
func (c rawClient) lastFatal() string {
	code, _ := c.fatal()
	return code
}

// fatal reads until the connection ends and returns the SQLSTATE and
// message of the FATAL it ended with.
func (c rawClient) fatal() (code, message string) {
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		m, err := c.fe.Receive()
		if err != nil {
			return code, message
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok && e.Severity == "FATAL" {
			code, message = e.Code, e.Message
		}
	}
}

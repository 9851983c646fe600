package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// hijacked logs in at url and takes the raw connection over.
func hijacked(t *testing.T, url string) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	hc, err := conn.PgConn().Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	return hc.Conn, hc.Frontend
}

// exchange writes raw bytes and describes what comes back up to
// ReadyForQuery, or up to the end of the connection ("closed").
func exchange(t *testing.T, nc net.Conn, fe *pgproto3.Frontend, raw []byte) []string {
	t.Helper()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := nc.Write(raw); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := fe.Receive()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "reset by peer") {
				return append(got, "closed")
			}
			t.Fatalf("after %q: %v", got, err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			got = append(got, fmt.Sprintf("%s %s %s", m.Severity, m.Code, m.Message))
		case *pgproto3.ReadyForQuery:
			return append(got, "ReadyForQuery "+string(m.TxStatus))
		}
	}
}

func query(t *testing.T, sql string) []byte {
	b, err := (&pgproto3.Query{String: sql}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The admin console answers malformed messages as PostgreSQL does: a Query
// whose text is not one NUL-terminated string gets ERROR 08P01 and the
// console goes on; an unknown message type is FATAL 08P01. Before, the
// console closed the connection without a word.
func TestAdminMalformedMessages(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startAdminProxy(t, proxyOptions{DBs: []string{db}, Primary: true})
	direct := cl.Primary.DSN(cl.User, cl.Password, db)
	console := p.URL("pgswitch")

	for _, c := range []struct {
		name string
		raw  []byte
	}{
		{"Query without terminator", []byte{'Q', 0, 0, 0, 8, 'a', 'b', 'c', 'd'}},
		{"empty Query", []byte{'Q', 0, 0, 0, 4}},
		{"bytes after the Query's terminator", []byte{'Q', 0, 0, 0, 9, 'a', 0, 'c', 'd', 0}},
		{"unknown message type", []byte{'z', 0, 0, 0, 4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			nc, fe := hijacked(t, direct)
			want := exchange(t, nc, fe, c.raw)
			if len(want) < 2 || !strings.Contains(want[0], "08P01") {
				t.Fatalf("PostgreSQL answers %q; this test expects 08P01", want)
			}
			after := []string{"ReadyForQuery I"}
			if want[len(want)-1] != "closed" {
				after = exchange(t, nc, fe, query(t, "SELECT 1"))
			}

			nc, fe = hijacked(t, console)
			got := exchange(t, nc, fe, c.raw)
			if strings.Join(got, "; ") != strings.Join(want, "; ") {
				t.Fatalf("the console answers %q, PostgreSQL %q", got, want)
			}
			if got[len(got)-1] != "closed" {
				// The console goes on, as PostgreSQL does.
				if got := exchange(t, nc, fe, query(t, "SHOW VERSION")); strings.Join(got, "; ") != strings.Join(after, "; ") {
					t.Fatalf("SHOW VERSION afterwards: %q, want %q", got, after)
				}
			}
		})
	}

	// PostgreSQL closes the connection without a word on a length below 4
	// (it only logs "invalid message length"); the console says why.
	nc, fe := hijacked(t, console)
	got := exchange(t, nc, fe, []byte{'Q', 0, 0, 0, 2})
	if len(got) != 2 || !strings.HasPrefix(got[0], "FATAL 08P01 invalid message length") || got[1] != "closed" {
		t.Fatalf("a length below 4: got %q, want FATAL 08P01 and the connection closed", got)
	}
}

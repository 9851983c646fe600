package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

func TestLoginRefusals(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true})
	cases := []struct {
		name, user, password, db, code string
	}{
		{"wrong password", cl.User, "not-the-password", db, "28P01"},
		// As PostgreSQL: a password exchange first (TestUnknownRoleOrDatabase).
		{"unknown user", "nobody_here", "x", db, "28P01"},
		{"unknown database", cl.User, cl.Password, "no_such_db", "3D000"},
		{"unknown database, wrong password", cl.User, "not-the-password", "no_such_db", "28P01"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := pgx.Connect(ctx, p.URLAs(c.user, c.password, c.db))
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a server error with SQLSTATE %s", err, c.code)
			}
			if pe.Code != c.code || pe.Severity != "FATAL" {
				t.Fatalf("got %s %s (%s), want FATAL %s", pe.Severity, pe.Code, pe.Message, c.code)
			}
		})
	}
	t.Run("protocol 2.0", func(t *testing.T) {
		pkt := make([]byte, 8)
		binary.BigEndian.PutUint32(pkt[0:4], 8)
		binary.BigEndian.PutUint32(pkt[4:8], 2<<16)
		if code := rawFirstPacket(t, p.Addr, pkt); code != "0A000" {
			t.Fatalf("got SQLSTATE %q, want 0A000", code)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		if code := rawFirstPacket(t, p.Addr, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); code != "08P01" {
			t.Fatalf("got SQLSTATE %q, want 08P01", code)
		}
	})
	t.Run("oversized startup", func(t *testing.T) {
		pkt := make([]byte, 8)
		binary.BigEndian.PutUint32(pkt[0:4], 1<<30)
		binary.BigEndian.PutUint32(pkt[4:8], 3<<16)
		if code := rawFirstPacket(t, p.Addr, pkt); code != "08P01" {
			t.Fatalf("got SQLSTATE %q, want 08P01", code)
		}
	})
	t.Run("oversized message after login", func(t *testing.T) {
		ctx := testCtx(t)
		conn := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)
		nc := conn.PgConn().Conn()
		msg := []byte{'Q', 0x7f, 0xff, 0xff, 0xff}
		if _, err := nc.Write(msg); err != nil {
			t.Fatal(err)
		}
		fe := pgproto3.NewFrontend(nc, nc)
		nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		er, ok := m.(*pgproto3.ErrorResponse)
		if !ok || er.Code != "08P01" || er.Severity != "FATAL" {
			t.Fatalf("got %#v, want FATAL 08P01", m)
		}
		_ = ctx
	})
}

// rawFirstPacket sends pkt as the first bytes of a connection and returns the
// SQLSTATE of the ErrorResponse pgswitch answers with.
func rawFirstPacket(t *testing.T, addr string, pkt []byte) string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := nc.Write(pkt); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(nc, nc)
	m, err := fe.Receive()
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	er, ok := m.(*pgproto3.ErrorResponse)
	if !ok {
		t.Fatalf("got %T, want ErrorResponse", m)
	}
	if er.Severity != "FATAL" {
		t.Fatalf("got severity %s, want FATAL", er.Severity)
	}
	// The connection is closed after a FATAL.
	if _, err := fe.Receive(); err == nil {
		t.Fatal("connection still open after FATAL")
	}
	return er.Code
}

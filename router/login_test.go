package router

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/config"
)

// TestUnknownRoleLoggedNotSent: a client that names a role pgswitch does
// not know is refused as a wrong password is; only the log says why, and
// it holds no password.
func TestUnknownRoleLoggedNotSent(t *testing.T) {
	const password = "configured-secret"
	cfg, err := config.Parse([]byte("listen: 127.0.0.1:0\nhealth: {inter: 1h}\n" +
		"databases:\n  db:\n    servers: [{host: 127.0.0.1, port: 1, role: primary}]\n" +
		"users:\n  u: {password: " + password + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	r, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
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
	defer func() {
		r.Close()
		<-done
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = pgconn.Connect(ctx, "postgres://nobody:"+password+"@"+ln.Addr().String()+"/db?sslmode=disable")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28P01" || pe.Message != `password authentication failed for user "nobody"` || pe.Detail != "" {
		t.Fatalf("got %v, want FATAL 28P01 as for a wrong password", err)
	}
	if got := logs.String(); !strings.Contains(got, `role \"nobody\" does not exist`) || strings.Contains(got, password) {
		t.Fatalf("log:\n%s\nwant the reason, and no password", got)
	}
}

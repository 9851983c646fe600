package admission

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/admin"
	"github.com/pgswitch/pgswitch/integration/testproxy"
)

// PostgreSQL's own message when authentication_timeout passes; it logs it
// (FATAL, 57014) but closes the connection without sending it.
const authTimeoutMessage = "canceling authentication due to timeout"

// loginStep is how far a client goes before it stops answering.
type loginStep int

const (
	sendNothing   loginStep = iota // not even a startup packet
	sendStartup                    // a startup packet, then no password
	sendSASLFirst                  // the first SCRAM message, then nothing
)

// stallLogin goes as far as step in a login to database db at addr, stops,
// and returns what it receives until the connection is closed.
func stallLogin(t *testing.T, addr, db string, step loginStep) []pgproto3.BackendMessage {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Minute))
	fe := pgproto3.NewFrontend(nc, nc)
	if step >= sendStartup {
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
			Parameters: map[string]string{"user": cl.User, "database": db}})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	var got []pgproto3.BackendMessage
	for {
		m, err := fe.Receive()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset by peer") {
				t.Fatalf("after %d messages: %v, want the connection closed", len(got), err)
			}
			return got
		}
		switch m := m.(type) {
		case *pgproto3.AuthenticationSASL:
			got = append(got, &pgproto3.AuthenticationSASL{AuthMechanisms: m.AuthMechanisms})
			if step >= sendSASLFirst {
				fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abcdefghijklmnopqrstuvwx")})
				if err := fe.Flush(); err != nil {
					t.Fatal(err)
				}
			}
		case *pgproto3.AuthenticationSASLContinue:
			got = append(got, &pgproto3.AuthenticationSASLContinue{})
		case *pgproto3.ErrorResponse:
			e := *m
			got = append(got, &e)
		default:
			got = append(got, m)
		}
	}
}

func describe(msgs []pgproto3.BackendMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			fmt.Fprintf(&b, "[%s %s %s] ", e.Severity, e.Code, e.Message)
		} else {
			fmt.Fprintf(&b, "[%T] ", m)
		}
	}
	return b.String()
}

// When timeouts.client_login passes, pgswitch sends a FATAL before it
// closes the connection: PostgreSQL's error for authentication_timeout,
// which PostgreSQL itself only logs (checked on the primary, whose
// authentication_timeout is 1s). Before, the connection closed silently.
func TestLoginTimeoutTellsTheClient(t *testing.T) {
	p := testproxy.Start(t, cl, testproxy.Options{
		DBs: []string{cl.Database}, Primary: true,
		YAML: "timeouts:\n  client_login: 1s\n  query_wait: 20s\nadmin:\n  admin_users: [" + cl.User + "]\n",
	})
	p.R.SetAdmin(admin.New(p.R, admin.Options{Version: "test"}))
	primary := net.JoinHostPort(cl.Primary.Host, strconv.Itoa(cl.Primary.Port))

	// PostgreSQL: nothing is sent, whatever the step; the error is in its log.
	for _, step := range []loginStep{sendNothing, sendStartup, sendSASLFirst} {
		got := stallLogin(t, primary, cl.Database, step)
		for _, m := range got {
			if _, ok := m.(*pgproto3.ErrorResponse); ok {
				t.Fatalf("PostgreSQL, step %d: got %s, want no ErrorResponse (if it sends one now, match it)", step, describe(got))
			}
		}
	}
	waitFor(t, time.Minute, "PostgreSQL logs "+authTimeoutMessage, func() error {
		data, err := os.ReadFile(cl.Primary.LogFile)
		if err != nil {
			return err
		}
		if !strings.Contains(string(data), "FATAL:  "+authTimeoutMessage) {
			return errors.New("not in " + cl.Primary.LogFile)
		}
		return nil
	})

	for _, c := range []struct {
		name string
		db   string
		step loginStep
		auth int // authentication messages before the error
	}{
		{"nothing sent", cl.Database, sendNothing, 0},
		{"startup packet only", cl.Database, sendStartup, 1},
		{"in the SCRAM exchange", cl.Database, sendSASLFirst, 2},
		{"admin console", "pgswitch", sendStartup, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := stallLogin(t, p.Addr, c.db, c.step)
			if len(got) != c.auth+1 {
				t.Fatalf("got %s, want %d authentication messages and a FATAL", describe(got), c.auth)
			}
			e, ok := got[c.auth].(*pgproto3.ErrorResponse)
			if !ok || e.Severity != "FATAL" || e.Code != "57014" || e.Message != authTimeoutMessage {
				t.Fatalf("got %s, want FATAL 57014 %q", describe(got), authTimeoutMessage)
			}
		})
	}
}

package integration

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/integration/testpki"
)

// cert authentication: the client certificate's CN must be the user;
// client_tls_mode verify-full asks the same of password users, over TCP.
func TestClientCertAuth(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	ca, other := newTestCA(t, "client CA"), newTestCA(t, "other CA")
	caFile, err := ca.WriteCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey := writeCert(t)
	certFor := func(ca *testCA, cn string) string {
		pair, err := ca.Client(cn)
		if err != nil {
			t.Fatal(err)
		}
		crt, key, err := pair.Write(dir, cn+"-"+strconv.Itoa(int(time.Now().UnixNano())))
		if err != nil {
			t.Fatal(err)
		}
		return "&sslcert=" + crt + "&sslkey=" + key
	}
	createRole(t, "cert_user")
	users := fmt.Sprintf("users:\n  cert_user:\n    auth: cert\n    server_password: %q\n", cl.Password)
	tlsYAML := fmt.Sprintf("tls: {cert_file: %q, key_file: %q, ca_file: %q}\n", serverCert, serverKey, caFile)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, Unix: true, ExtraUsers: users, YAML: tlsYAML})
	strict := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, Unix: true, YAML: tlsYAML + "client_tls_mode: verify-full\n"})

	tlsURL := func(p *proxy, user, password, params string) string {
		return strings.Replace(p.URLAs(user, password, db), "sslmode=disable",
			"sslmode=verify-full&sslrootcert="+serverCert+params, 1)
	}
	for _, c := range []struct {
		name, dsn, user string
		code            string // "" to log in, "refused" for a failed handshake or 28000
		msg             string
	}{
		{"cert, right CN", tlsURL(p, "cert_user", "", certFor(ca, "cert_user")), "cert_user", "", ""},
		{"cert, wrong CN", tlsURL(p, "cert_user", "", certFor(ca, "someone_else")), "", "28000", `certificate authentication failed for user "cert_user"`},
		{"cert, no certificate", tlsURL(p, "cert_user", "", ""), "", "28000", "connection requires a valid client certificate"},
		{"cert, plain text", p.URLAs("cert_user", "", db), "", "28000", "connection requires a valid client certificate"},
		// Go's client offers no certificate the server's CA list does not
		// name (libpq's would, and fail the handshake): refused either way.
		{"cert, another CA", tlsURL(p, "cert_user", "", certFor(other, "cert_user")), "", "refused", ""},
		{"verify-full, right CN and password", tlsURL(strict, cl.User, cl.Password, certFor(ca, cl.User)), cl.User, "", ""},
		{"verify-full, wrong CN", tlsURL(strict, cl.User, cl.Password, certFor(ca, "someone_else")), "", "28000",
			fmt.Sprintf(`certificate validation (client_tls_mode verify-full) failed for user %q: CN mismatch`, cl.User)},
		{"verify-full, plain text", strict.URLAs(cl.User, cl.Password, db), "", "28000", "connection requires TLS (client_tls_mode verify-full)"},
		{"verify-full, Unix socket", strict.SocketConnString(cl.User, cl.Password, db), cl.User, "", ""},
	} {
		conn, err := pgx.Connect(ctx, c.dsn)
		switch c.code {
		case "":
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			var who string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != c.user {
				t.Errorf("%s: current_user %q, %v; want %s", c.name, who, err, c.user)
			}
			conn.Close(ctx)
		case "refused":
			var pe *pgconn.PgError
			if err == nil || errors.As(err, &pe) && pe.Code != "28000" {
				t.Errorf("%s: got %v, want the TLS handshake to fail or 28000", c.name, err)
			}
			if err == nil {
				conn.Close(ctx)
			}
		default:
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != c.code || pe.Message != c.msg {
				t.Errorf("%s: got %v, want %s %q", c.name, err, c.code, c.msg)
			}
		}
	}
}

type testCA = testpki.CA

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	ca, err := testpki.NewCA(cn)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

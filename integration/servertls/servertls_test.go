package servertls

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/integration/testproxy"
)

func createCertRole() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, cl.DSN(cl.Primary))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE ROLE "+certRole+" LOGIN"); err != nil {
		return err
	}
	return cl.WaitReplicated(ctx)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// serverTLS is the YAML of server_tls_mode and a server_tls block.
func serverTLS(mode string, keys ...string) string {
	return "server_tls_mode: " + mode + "\nserver_tls:\n  " + strings.Join(keys, "\n  ") + "\n"
}

func startProxy(t *testing.T, yaml string, log *logBuffer) *testproxy.Proxy {
	t.Helper()
	o := testproxy.Options{DBs: []string{cl.Database}, YAML: yaml, Consistency: "eventual"}
	if log != nil {
		o.Log = log.logger()
	}
	return testproxy.Start(t, cl, o)
}

// With verify-full against the run's CA, every connection pgswitch makes
// is TLS: the server connections of client traffic, on the primary and on
// the replica, and the health checks and replay polls (pg_stat_ssl).
func TestVerifyFull(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	p := startProxy(t, serverTLS("verify-full", "ca_file: "+pki.caFile), nil)
	conn := p.Connect(t, cl.Database, pgx.QueryExecModeSimpleProtocol)
	for _, c := range []struct{ hint, want string }{{"/* pgswitch:primary */", "primary"}, {"/* pgswitch:replica */", "replica"}} {
		var ssl, replica bool
		var version string
		q := c.hint + " SELECT ssl, version, pg_is_in_recovery() FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
		if err := conn.QueryRow(ctx, q).Scan(&ssl, &version, &replica); err != nil {
			t.Fatalf("%s: %v", c.want, err)
		}
		if !ssl || replica != (c.want == "replica") {
			t.Errorf("%s: server connection ssl %v (%s), in recovery %v; want TLS on the %s", c.want, ssl, version, replica, c.want)
		}
	}
	// Health checks reach every server within their first interval.
	for _, s := range cl.Servers() {
		direct, err := pgx.Connect(ctx, cl.DSN(s))
		if err != nil {
			t.Fatal(err)
		}
		defer direct.Close(ctx)
		testproxy.Eventually(t, 30*time.Second, s.Name+": pgswitch's connections all TLS", func() error {
			var tlsConns, plain int
			err := direct.QueryRow(ctx, `SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
				FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
				WHERE a.application_name LIKE 'pgswitch%'`).Scan(&tlsConns, &plain)
			switch {
			case err != nil:
				return err
			case plain > 0:
				return fmt.Errorf("%d of pgswitch's connections are not TLS", plain)
			case tlsConns == 0:
				return errors.New("no health check connection yet")
			}
			return nil
		})
	}
}

// A certificate from another CA is refused, in verify-ca as in
// verify-full; the client's error and pgswitch's log say why.
func TestWrongCA(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"verify-ca", "verify-full"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			log := &logBuffer{}
			p := startProxy(t, serverTLS(mode, "ca_file: "+pki.otherCAFile), log)
			refused(t, p, "certificate signed by unknown authority", log)
		})
	}
}

// server_name replaces the host as the name verify-full checks; verify-ca
// checks no name, as libpq's.
func TestServerName(t *testing.T) {
	t.Parallel()
	ca := "ca_file: " + pki.caFile
	t.Run("verify-full, the certificate's name", func(t *testing.T) {
		t.Parallel()
		accepted(t, startProxy(t, serverTLS("verify-full", ca, "server_name: DB.test"), nil))
	})
	t.Run("verify-full, another name", func(t *testing.T) {
		t.Parallel()
		log := &logBuffer{}
		p := startProxy(t, serverTLS("verify-full", ca, "server_name: wrong.test"), log)
		refused(t, p, `server certificate for "db.test" (and 2 other names) does not match host name "wrong.test"`, log)
	})
	t.Run("verify-ca, another name", func(t *testing.T) {
		t.Parallel()
		accepted(t, startProxy(t, serverTLS("verify-ca", ca, "server_name: wrong.test"), nil))
	})
}

// server_tls.cert_file and key_file log pgswitch in to a server whose
// pg_hba.conf asks for a client certificate (the cert method) for a role.
func TestClientCertificateToServer(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	user := certRole + ":\n    auth: trust\n"
	withCert := testproxy.Start(t, cl, testproxy.Options{DBs: []string{cl.Database}, ExtraUsers: "  " + user,
		YAML: serverTLS("verify-full", "ca_file: "+pki.caFile, "cert_file: "+pki.clientCert, "key_file: "+pki.clientKey)})
	conn, err := pgx.Connect(ctx, withCert.URLAs(certRole, "", cl.Database))
	if err != nil {
		t.Fatalf("login with a client certificate to the server: %v", err)
	}
	defer conn.Close(ctx)
	var who string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != certRole {
		t.Fatalf("current_user: got %q, %v; want %s", who, err, certRole)
	}

	without := testproxy.Start(t, cl, testproxy.Options{DBs: []string{cl.Database}, ExtraUsers: "  " + user,
		YAML: serverTLS("verify-full", "ca_file: "+pki.caFile)})
	_, err = pgx.Connect(ctx, without.URLAs(certRole, "", cl.Database))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "08006" || !strings.Contains(pe.Detail, "requires a valid client certificate") {
		t.Fatalf("without a client certificate: got %v (%+v), want 08006 with the server's reason", err, pe)
	}
}

func accepted(t *testing.T, p *testproxy.Proxy) {
	t.Helper()
	ctx := testCtx(t)
	conn := p.Connect(t, cl.Database, pgx.QueryExecModeSimpleProtocol)
	var ssl bool
	if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("query: ssl %v, %v; want a TLS server connection", ssl, err)
	}
}

// refused checks that a client of p is refused as when no server can be
// reached (08006 while the health checks have not marked the servers
// down, 57P03 after), and that pgswitch's log says why.
func refused(t *testing.T, p *testproxy.Proxy, why string, log *logBuffer) {
	t.Helper()
	ctx := testCtx(t)
	_, err := pgx.Connect(ctx, p.URL(cl.Database))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("login: got %v, want an ErrorResponse", err)
	}
	switch pe.Code {
	case "08006":
		if !strings.Contains(pe.Detail, why) {
			t.Errorf("08006 detail: got %q, want it to contain %q", pe.Detail, why)
		}
	case "57P03":
	default:
		t.Fatalf("login: got SQLSTATE %s (%s), want 08006 or 57P03", pe.Code, pe.Message)
	}
	testproxy.Eventually(t, 30*time.Second, "a log line saying why", func() error {
		quoted := strings.ReplaceAll(why, `"`, `\"`) // as slog's text handler writes it
		for _, line := range strings.Split(log.String(), "\n") {
			if strings.Contains(line, quoted) && strings.Contains(line, "level=WARN") {
				t.Logf("client got %s %q (%s); pgswitch logged: %s", pe.Code, pe.Message, pe.Detail, line)
				return nil
			}
		}
		return fmt.Errorf("no WARN line contains %q in:\n%s", why, log.String())
	})
}

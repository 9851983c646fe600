package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

func TestClientTLS(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	cert, key := writeCert(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true,
		YAML: fmt.Sprintf("tls:\n  cert_file: %q\n  key_file: %q\n", cert, key)})
	ctx := testCtx(t)
	u := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=verify-full&sslrootcert=%s", cl.User, cl.Password, p.Addr, db, cert)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("TLS connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, isTLS := conn.PgConn().Conn().(*tls.Conn); !isTLS {
		t.Fatalf("connection is %T, want *tls.Conn", conn.PgConn().Conn())
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT 7").Scan(&n); err != nil || n != 7 {
		t.Fatalf("query over TLS: %d, %v", n, err)
	}

	// Without TLS configured, sslmode=require is refused with 'N'.
	plain := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true})
	_, err = pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=require", cl.User, cl.Password, plain.Addr, db))
	if err == nil {
		t.Fatal("sslmode=require accepted by a pgswitch without TLS")
	}
}

func md5Verifier(user, password string) string {
	sum := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(sum[:])
}

func TestAuthMethods(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxyUsers(t, db, map[string]string{
		"md5user": fmt.Sprintf("auth: md5\n    password: %q\n    server_password: %q", md5Verifier("md5user", "md5-secret"), cl.Password),
		"trusted": fmt.Sprintf("auth: trust\n    server_password: %q", cl.Password),
	})
	ctx := testCtx(t)
	cases := []struct {
		user, password string
		ok             bool
	}{
		{"md5user", "md5-secret", true},
		{"md5user", "wrong", false},
		{"trusted", "", true},
	}
	for _, c := range cases {
		conn, err := pgx.Connect(ctx, p.URLAs(c.user, c.password, db))
		if c.ok {
			if err != nil {
				t.Fatalf("%s: %v", c.user, err)
			}
			var who string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil {
				t.Fatal(err)
			}
			conn.Close(ctx)
			continue
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "28P01" {
			t.Fatalf("%s with a wrong password: got %v, want 28P01", c.user, err)
		}
	}
}

// startProxyUsers runs pgswitch with extra users (YAML bodies by name). Each
// logs in to the servers under its own name with the cluster's password, so
// the roles are created on the primary first.
func startProxyUsers(t *testing.T, db string, users map[string]string) *proxy {
	t.Helper()
	for name := range users {
		createRole(t, name)
	}
	extra := "users:\n"
	for name, body := range users {
		extra += fmt.Sprintf("  %s:\n    %s\n", name, body)
	}
	return startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, ExtraUsers: extra})
}

// createRole creates a superuser role with the cluster's password on the
// servers, unless it exists.
func createRole(t *testing.T, name string) {
	t.Helper()
	mon := primaryConn(t, cl.Database)
	mon.Exec(context.Background(), fmt.Sprintf("DO $$ BEGIN CREATE ROLE %s LOGIN SUPERUSER PASSWORD %s; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
		pgx.Identifier{name}.Sanitize(), quoteLiteral(cl.Password)))
}

func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

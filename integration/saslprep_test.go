package integration

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/wire/saslprep"
)

// TestSASLprepPasswords: roles whose passwords PostgreSQL SASLprep-normalizes
// log in through pgswitch as they do directly. PostgreSQL is the oracle
// twice: the verifier it stores for each password must be the one pgswitch
// derives (client side), and libpq (psql, which prepares passwords as the
// server does) must get in through pgswitch, which logs in to the server
// under the role with the configured password (server side).
func TestSASLprepPasswords(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	cases := []struct {
		name, password string
		// throughPgswitch is false where pgconn, which pgswitch logs in to
		// servers with, cannot reproduce the server's hash: a password
		// SASLprep refuses, so PostgreSQL hashed its raw bytes, that PRECIS
		// (pgconn's own normalization) changes.
		throughPgswitch bool
	}{
		{"roman numeral", "\u2168-secret", true},
		{"full-width letters", "\uff50\uff57-secret", true},
		{"soft hyphen", "se\u00adcret-\u00e9", true},
		{"zero width space", "a\u200bb-\u00e9", true},
		{"mongolian todo soft hyphen", "a\u1806b-\u00e9", true},
		{"ligature", "\ufb01-secret", true},
		{"right-to-left presentation form", "\ufb2a\u05d0", true},
		{"unassigned in Unicode 3.2: raw bytes", "\u2168\u0221", true},
		{"bidirectional rule broken: raw bytes", "\u2168\u05d0", true},
		{"prohibited before normalization: raw bytes", "e\u0340\u00e9", false},
	}
	ctx := testCtx(t)
	mon := primaryConn(t, cl.Database)
	users := "users:\n"
	roles := make([]string, len(cases))
	for i, c := range cases {
		roles[i] = fmt.Sprintf("%s_r%d", db, i)
		role := pgx.Identifier{roles[i]}.Sanitize()
		if _, err := mon.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", role, quoteLiteral(c.password))); err != nil {
			t.Fatalf("%s: create role: %v", c.name, err)
		}
		t.Cleanup(func() { primaryExec(t, "DROP ROLE IF EXISTS "+role) })
		users += fmt.Sprintf("  %s:\n    password: %s\n", roles[i], strconv.Quote(c.password))
	}
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, ExtraUsers: users})

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var verifier string
			if err := mon.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", roles[i]).Scan(&verifier); err != nil {
				t.Fatal(err)
			}
			if err := checkVerifier(verifier, saslprep.Password(c.password)); err != nil {
				t.Fatalf("PostgreSQL's verifier is not derived from what pgswitch prepares: %v", err)
			}
			if _, err := psqlAs(cl.Primary.Host, cl.Primary.Port, roles[i], c.password, db); err != nil {
				t.Fatalf("psql directly: %v", err)
			}
			if !c.throughPgswitch {
				return
			}
			host, port, _ := net.SplitHostPort(p.Addr)
			portNum, _ := strconv.Atoi(port)
			out, err := psqlAs(host, portNum, roles[i], c.password, db)
			if err != nil {
				t.Fatalf("psql through pgswitch: %v", err)
			}
			if strings.TrimSpace(out) != roles[i] {
				t.Fatalf("psql through pgswitch printed %q, want %s", out, roles[i])
			}
		})
	}

	// pgx prepares passwords with PRECIS, which keeps U+2168: it fails
	// directly, and so it must through pgswitch, with the same error.
	t.Run("pgx client", func(t *testing.T) {
		_, direct := pgx.Connect(ctx, cl.Primary.DSN(roles[0], cases[0].password, db))
		_, proxied := pgx.Connect(ctx, p.URLAs(roles[0], cases[0].password, db))
		var de, pe *pgconn.PgError
		if direct == nil || proxied == nil || !errors.As(direct, &de) || !errors.As(proxied, &pe) {
			t.Fatalf("directly: %v; through pgswitch: %v; want both refused by the server", direct, proxied)
		}
		if de.Code != pe.Code || de.Message != pe.Message || de.Severity != pe.Severity {
			t.Fatalf("directly: %s %s %q; through pgswitch: %s %s %q", de.Severity, de.Code, de.Message, pe.Severity, pe.Code, pe.Message)
		}
	})
}

// primaryExec runs sql on the primary's maintenance database, for cleanups.
func primaryExec(t *testing.T, sql string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, cl.Primary.DSN(cl.User, cl.Password, cl.Database))
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Errorf("cleanup: %s: %v", sql, err)
	}
}

// checkVerifier reports whether the SCRAM verifier in pg_authid's format
// was derived from prepared (computed here from RFC 5802, not with
// pgswitch's code).
func checkVerifier(verifier, prepared string) error {
	params, keys, ok := strings.Cut(strings.TrimPrefix(verifier, "SCRAM-SHA-256$"), "$")
	iterText, saltText, ok1 := strings.Cut(params, ":")
	storedText, _, ok2 := strings.Cut(keys, ":")
	if !ok || !ok1 || !ok2 {
		return fmt.Errorf("not a SCRAM verifier")
	}
	iter, err := strconv.Atoi(iterText)
	if err != nil {
		return err
	}
	salt, err := base64.StdEncoding.DecodeString(saltText)
	if err != nil {
		return err
	}
	salted, err := pbkdf2.Key(sha256.New, prepared, salt, iter, sha256.Size)
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, salted)
	mac.Write([]byte("Client Key"))
	stored := sha256.Sum256(mac.Sum(nil))
	if base64.StdEncoding.EncodeToString(stored[:]) != storedText {
		return fmt.Errorf("StoredKey differs")
	}
	return nil
}

// psqlAs runs SELECT current_user with psql (libpq) as user, the password
// going through the environment, and returns what it printed.
func psqlAs(host string, port int, user, password, db string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path, err := exec.LookPath("psql")
	if err != nil {
		path = cl.BinDir + "/psql"
	}
	cmd := exec.CommandContext(ctx, path, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", "SELECT current_user")
	cmd.Env = append(os.Environ(), "PGHOST="+host, "PGPORT="+strconv.Itoa(port), "PGUSER="+user,
		"PGPASSWORD="+password, "PGDATABASE="+db, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=30")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, out)
	}
	return string(out), nil
}

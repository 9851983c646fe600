package integration

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestUnknownRoleOrDatabase: a client learns whether a role or a database
// exists only as PostgreSQL would tell it. With a password method, an
// unknown role goes through the whole SCRAM exchange and ends in 28P01,
// and an unknown database is named (3D000) only once the password was
// proved. Each login runs directly against the primary and through
// pgswitch, and the client must receive the same messages from both.
func TestUnknownRoleOrDatabase(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true})
	cases := []struct {
		name, user, password, db string
	}{
		{"unknown role", "nobody_here", "x", db},
		{"unknown role, its right password elsewhere", "nobody_here", cl.Password, db},
		{"unknown role and database", "nobody_here", "x", "no_such_db"},
		{"unknown database, right password", cl.User, cl.Password, "no_such_db"},
		{"unknown database, wrong password", cl.User, "not-the-password", "no_such_db"},
		{"known role and database, wrong password", cl.User, "not-the-password", db},
	}
	direct := net.JoinHostPort(cl.Primary.Host, strconv.Itoa(cl.Primary.Port))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, err := scramTranscript(direct, c.user, c.password, c.db)
			if err != nil {
				t.Fatalf("directly: %v", err)
			}
			got, err := scramTranscript(p.Addr, c.user, c.password, c.db)
			if err != nil {
				t.Fatalf("through pgswitch: %v", err)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("through pgswitch the client received\n\t%s\ndirectly\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
			t.Logf("%s", strings.Join(got, " | "))
		})
	}
	// The admin console is a database like the others to a client that
	// has not proved a password.
	t.Run("unknown role, admin console", func(t *testing.T) {
		ap := startAdminProxy(t, proxyOptions{DBs: []string{db}, Primary: true})
		want, err := scramTranscript(direct, "nobody_here", "x", "pgswitch")
		if err != nil {
			t.Fatalf("directly: %v", err)
		}
		got, err := scramTranscript(ap.Addr, "nobody_here", "x", "pgswitch")
		if err != nil {
			t.Fatalf("through pgswitch: %v", err)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("through pgswitch the client received\n\t%s\ndirectly\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	})

	// Twice the same unknown role: the same salt and iteration count, as
	// PostgreSQL's mock (it would differ from one attempt to the next if
	// pgswitch made up a salt each time, and a real role's never does).
	first, err := serverFirst(p.Addr, "nobody_here", db)
	if err != nil {
		t.Fatal(err)
	}
	second, err := serverFirst(p.Addr, "nobody_here", db)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Errorf("unknown role shown %s, then %s; want the same salt and iterations", first, second)
	}
}

// TestUnknownRoleOrDatabaseTrust: where no password is asked, PostgreSQL
// says at once which role or database does not exist, after telling the
// client it is authenticated; so does pgswitch with auth_type trust. The
// cluster trusts its Unix sockets: that is the direct side.
func TestUnknownRoleOrDatabaseTrust(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, YAML: "auth_type: trust\n"})
	socket := filepath.Join(cl.SocketDir, fmt.Sprintf(".s.PGSQL.%d", cl.Primary.Port))
	for _, c := range []struct{ name, user, db string }{
		{"unknown role", "nobody_here", db},
		{"unknown role and database", "nobody_here", "no_such_db"},
		{"unknown database", cl.User, "no_such_db"},
		{"known role and database", cl.User, db},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, err := loginTranscript("unix", socket, c.user, "", c.db)
			if err != nil {
				t.Fatalf("directly: %v", err)
			}
			got, err := loginTranscript("tcp", p.Addr, c.user, "", c.db)
			if err != nil {
				t.Fatalf("through pgswitch: %v", err)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("through pgswitch the client received\n\t%s\ndirectly\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
		})
	}
}

// TestUnknownRoleMD5: with auth_type md5, an unknown role is asked for an
// md5 password as a known one is, and refused as a wrong password is.
// (PostgreSQL runs its mock exchange with the kind of password_encryption,
// SCRAM by default; pgswitch's known users get md5 here, so its unknown
// ones blend in with md5.)
func TestUnknownRoleMD5(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, YAML: "auth_type: md5\n"})
	known, err := scramTranscript(p.Addr, cl.User, "not-the-password", db)
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := scramTranscript(p.Addr, "nobody_here", "x", db)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.ReplaceAll(strings.Join(known, "\n"), cl.User, "nobody_here")
	if got := strings.Join(unknown, "\n"); got != want || !strings.HasPrefix(got, "AuthenticationMD5Password\n") {
		t.Fatalf("unknown role received\n\t%s\nknown role with a wrong password\n\t%s", strings.Join(unknown, "\n\t"), strings.Join(known, "\n\t"))
	}
	// The right password still gets in, by md5.
	ok, err := scramTranscript(p.Addr, cl.User, cl.Password, db)
	if err != nil || strings.Join(ok, " ") != "AuthenticationMD5Password AuthenticationOk logged in" {
		t.Fatalf("right password: %v, %v", ok, err)
	}
}

// scramTranscript logs in to addr (TCP) as user with password, by
// SCRAM-SHA-256, md5 or none as the server asks, computing the answers as
// a client would, and returns what the server sent after the
// StartupMessage until it closed the connection or the login succeeded:
// message types, and an ErrorResponse's severity, code and message.
func scramTranscript(addr, user, password, db string) ([]string, error) {
	return loginTranscript("tcp", addr, user, password, db)
}

func loginTranscript(network, addr, user, password, db string) ([]string, error) {
	nc, err := net.DialTimeout(network, addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Minute))
	f := pgproto3.NewFrontend(nc, nc)
	f.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": user, "database": db}})
	if err := f.Flush(); err != nil {
		return nil, err
	}
	var got []string
	var bare, serverFirst string
	for {
		m, err := f.Receive()
		if err != nil {
			return got, nil // closed after its last message
		}
		switch m := m.(type) {
		case *pgproto3.AuthenticationSASL:
			got = append(got, "AuthenticationSASL "+strings.Join(m.AuthMechanisms, ","))
			var nonce [18]byte
			rand.Read(nonce[:])
			bare = "n=,r=" + base64.StdEncoding.EncodeToString(nonce[:])
			f.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,," + bare)})
		case *pgproto3.AuthenticationSASLContinue:
			got = append(got, "AuthenticationSASLContinue")
			serverFirst = string(m.Data)
			final, err := clientFinal(password, bare, serverFirst)
			if err != nil {
				return got, err
			}
			f.Send(&pgproto3.SASLResponse{Data: []byte(final)})
		case *pgproto3.AuthenticationSASLFinal:
			got = append(got, "AuthenticationSASLFinal")
		case *pgproto3.AuthenticationMD5Password:
			got = append(got, "AuthenticationMD5Password")
			f.Send(&pgproto3.PasswordMessage{Password: "md5" + md5Hex(md5Hex(password+user)+string(m.Salt[:]))})
		case *pgproto3.AuthenticationOk:
			got = append(got, "AuthenticationOk")
		case *pgproto3.ErrorResponse:
			got = append(got, fmt.Sprintf("ErrorResponse %s %s %q detail=%q hint=%q", m.Severity, m.Code, m.Message, m.Detail, m.Hint))
		case *pgproto3.ParameterStatus, *pgproto3.BackendKeyData, *pgproto3.ReadyForQuery:
			return append(got, "logged in"), nil
		default:
			got = append(got, fmt.Sprintf("%T", m))
		}
		if err := f.Flush(); err != nil {
			return got, nil
		}
	}
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// clientFinal computes client-final-message for password (RFC 5802 §3).
func clientFinal(password, bare, serverFirst string) (string, error) {
	attrs := map[string]string{}
	for _, part := range strings.Split(serverFirst, ",") {
		if k, v, ok := strings.Cut(part, "="); ok {
			attrs[k] = v
		}
	}
	salt, err := base64.StdEncoding.DecodeString(attrs["s"])
	if err != nil {
		return "", err
	}
	iter, err := strconv.Atoi(attrs["i"])
	if err != nil {
		return "", err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	withoutProof := "c=biws,r=" + attrs["r"]
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	sig := mac(stored[:], bare+","+serverFirst+","+withoutProof)
	for i := range clientKey {
		clientKey[i] ^= sig[i]
	}
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(clientKey), nil
}

// serverFirst returns the salt and iteration count addr shows user.
func serverFirst(addr, user, db string) (string, error) {
	nc, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Minute))
	f := pgproto3.NewFrontend(nc, nc)
	f.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": user, "database": db}})
	f.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abc")})
	if err := f.Flush(); err != nil {
		return "", err
	}
	for {
		m, err := f.Receive()
		if err != nil {
			return "", err
		}
		switch m := m.(type) {
		case *pgproto3.AuthenticationSASLContinue:
			_, params, _ := strings.Cut(string(m.Data), ",s=")
			return "s=" + params, nil
		case *pgproto3.ErrorResponse:
			return "", fmt.Errorf("%s %s: %s", m.Severity, m.Code, m.Message)
		}
	}
}

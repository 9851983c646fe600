package wire

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The test side computes SCRAM on its own, from RFC 5802, so that a
// mistake in auth.go cannot cancel out against the same mistake here.

func testHMAC(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

func testSalted(t testing.TB, password string, salt []byte, iter int) []byte {
	t.Helper()
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	return salted
}

// testVerifier returns a verifier in pg_authid's format.
func testVerifier(t testing.TB, password string, salt []byte, iter int) string {
	salted := testSalted(t, password, salt, iter)
	stored := sha256.Sum256(testHMAC(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iter, b64(salt), b64(stored[:]), b64(testHMAC(salted, "Server Key")))
}

// testProof returns the ClientProof for authMessage.
func testProof(t testing.TB, password string, salt []byte, iter int, authMessage string) []byte {
	clientKey := testHMAC(testSalted(t, password, salt, iter), "Client Key")
	stored := sha256.Sum256(clientKey)
	sig := testHMAC(stored[:], authMessage)
	for i := range clientKey {
		clientKey[i] ^= sig[i]
	}
	return clientKey
}

func testMD5(password, user string) string {
	sum := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(sum[:])
}

func mustSecret(t testing.TB, password, user string) Secret {
	t.Helper()
	s, err := ParseSecret(password, user)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSCRAMRFC7677 checks the server's computations against the example
// exchange of RFC 7677 §3.
func TestSCRAMRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	keys, err := deriveSCRAMKeys("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	first, err := parseClientFirst("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
	if err != nil {
		t.Fatal(err)
	}
	nonce := "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	serverFirst := "r=" + nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	final, err := parseClientFinal("c=biws,r="+nonce+",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", first.gs2Header, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if want := "c=biws,r=" + nonce; final.withoutProof != want {
		t.Errorf("got client-final-without-proof %q, want %q", final.withoutProof, want)
	}
	authMessage := first.bare + "," + serverFirst + "," + final.withoutProof
	clientKey, ok := keys.verify(authMessage, final.proof)
	if !ok {
		t.Errorf("got proof rejected, want accepted")
	}
	if stored := sha256.Sum256(clientKey); !hmac.Equal(stored[:], keys.storedKey) {
		t.Errorf("got a ClientKey whose hash is not the StoredKey")
	}
	if got, want := keys.serverFinal(authMessage), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="; got != want {
		t.Errorf("got server-final %q, want %q", got, want)
	}
	bad := append([]byte(nil), final.proof...)
	bad[0] ^= 1
	if _, ok := keys.verify(authMessage, bad); ok {
		t.Errorf("got a altered proof accepted, want rejected")
	}
}

// serveAuth runs a minimal pgswitch front door on 127.0.0.1: Negotiate,
// authenticate with auth, then the messages a session starts with.
func serveAuth(t *testing.T, auth func(rw io.ReadWriter, user string) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(testTimeout))
				conn, st, err := Negotiate(conn, nil)
				if err == nil {
					err = auth(conn, st.Params["user"])
				}
				if err != nil {
					WriteFatal(conn, err)
				} else {
					var b []byte
					b = AppendAuthOK(b)
					b = AppendParameterStatus(b, "server_version", "17.0")
					b = AppendBackendKeyData(b, NewCancelKey())
					b = AppendReadyForQuery(b, 'I')
					if _, err := conn.Write(b); err != nil {
						t.Errorf("server write: %v", err)
						return
					}
				}
				// Close after the client: closing first could reset the
				// connection before the client read our answer.
				_, _ = io.Copy(io.Discard, conn)
			})
		}
	})
	return ln.Addr().String()
}

func connect(t *testing.T, addr, user, password string) error {
	t.Helper()
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: addr, Path: "/db", RawQuery: "sslmode=disable"}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, err := pgconn.Connect(ctx, u.String())
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// TestAuthenticateWithPgconn drives the server side with pgx's real client.
func TestAuthenticateWithPgconn(t *testing.T) {
	const user = "u"
	salt := []byte("0123456789abcdef")
	scram := func(rw io.ReadWriter, user string, s Secret) error { return AuthenticateSCRAM(rw, user, s) }
	md5auth := func(rw io.ReadWriter, user string, s Secret) error { return AuthenticateMD5(rw, user, s) }
	cleartext := func(rw io.ReadWriter, user string, s Secret) error {
		k, err := AuthenticatePassword(rw, user, s)
		if err == nil && s.kind == secretSCRAM && !k.Valid() {
			t.Errorf("password against a SCRAM verifier: got no ClientKey")
		}
		return err
	}
	tests := []struct {
		name   string
		secret string
		method func(io.ReadWriter, string, Secret) error
		// password is the client's; wantOK says whether it must get in.
		password string
		wantOK   bool
	}{
		{"SCRAM, plain secret, right password", "pw", scram, "pw", true},
		{"SCRAM, plain secret, wrong password", "pw", scram, "pW", false},
		{"SCRAM, verifier, right password", testVerifier(t, "pw", salt, 4096), scram, "pw", true},
		{"SCRAM, verifier with other iterations, right password", testVerifier(t, "pw", salt, 1000), scram, "pw", true},
		{"SCRAM, verifier, wrong password", testVerifier(t, "pw", salt, 4096), scram, "px", false},
		{"SCRAM, plain non-ASCII secret in NFD, client NFC", "pa\u0301ss", scram, "p\u00e1ss", true},
		{"SCRAM, plain secret SASLprep maps, client sends the mapped form", "\u2168-pw", scram, "IX-pw", true},
		{"SCRAM, md5 secret cannot", testMD5("pw", user), scram, "pw", false},
		{"MD5, plain secret, right password", "pw", md5auth, "pw", true},
		{"MD5, plain secret, wrong password", "pw", md5auth, "pw ", false},
		{"MD5, md5 secret, right password", testMD5("pw", user), md5auth, "pw", true},
		{"MD5, md5 secret for another user", testMD5("pw", "other"), md5auth, "pw", false},
		{"MD5, SCRAM verifier cannot", testVerifier(t, "pw", salt, 4096), md5auth, "pw", false},
		{"password, plain secret, right password", "pw", cleartext, "pw", true},
		{"password, plain secret, wrong password", "pw", cleartext, "px", false},
		{"password, plain secret, empty password", "pw", cleartext, "", false},
		{"password, md5 secret, right password", testMD5("pw", user), cleartext, "pw", true},
		{"password, md5 secret, wrong password", testMD5("pw", user), cleartext, "px", false},
		{"password, SCRAM verifier, right password", testVerifier(t, "pw", salt, 4096), cleartext, "pw", true},
		{"password, SCRAM verifier, SASLprep maps", testVerifier(t, "IX-pw", salt, 4096), cleartext, "\u2168-pw", true},
		{"password, SCRAM verifier, wrong password", testVerifier(t, "pw", salt, 4096), cleartext, "px", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := mustSecret(t, tt.secret, user)
			addr := serveAuth(t, func(rw io.ReadWriter, u string) error { return tt.method(rw, u, secret) })
			err := connect(t, addr, user, tt.password)
			if tt.wantOK {
				if err != nil {
					t.Fatalf("got %v, want a connection", err)
				}
				return
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("got %v, want a *pgconn.PgError", err)
			}
			want := `password authentication failed for user "u"`
			if pgErr.Code != CodeInvalidPassword || pgErr.Severity != SeverityFatal || pgErr.Message != want {
				t.Errorf("got %s %s %q, want FATAL 28P01 %q", pgErr.Severity, pgErr.Code, pgErr.Message, want)
			}
		})
	}
}

// scramAttempt is one scripted client: what it sends at each step.
type scramAttempt struct {
	name      string
	mechanism string
	first     string
	// final returns client-final-message from client-first-bare and
	// server-first-message; nil when the server must fail before.
	final    func(t *testing.T, bare, serverFirst string) string
	wantCode string // "" for success
}

func TestAuthenticateSCRAMScripted(t *testing.T) {
	const password = "secret-pw"
	salt := []byte("saltsaltsalt")
	secret := mustSecret(t, testVerifier(t, password, salt, 4096), "u")

	// goodFinal computes a right answer, with cbind as the c= attribute.
	goodFinal := func(cbind string, extra string, pw string) func(*testing.T, string, string) string {
		return func(t *testing.T, bare, serverFirst string) string {
			nonce := attr(t, serverFirst, "r")
			withoutProof := "c=" + cbind + ",r=" + nonce + extra
			proof := testProof(t, pw, salt, 4096, bare+","+serverFirst+","+withoutProof)
			return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)
		}
	}
	fixed := func(format string) func(*testing.T, string, string) string {
		return func(t *testing.T, bare, serverFirst string) string {
			return strings.ReplaceAll(format, "NONCE", attr(t, serverFirst, "r"))
		}
	}
	proof32 := base64.StdEncoding.EncodeToString(make([]byte, 32))
	tests := []scramAttempt{
		{"good", "SCRAM-SHA-256", "n,,n=,r=abc", goodFinal("biws", "", password), ""},
		{"client without TLS binding support says y", "SCRAM-SHA-256", "y,,n=x,r=abc", goodFinal("eSws", "", password), ""},
		{"extensions are ignored", "SCRAM-SHA-256", "n,,n=u,r=abc,x=1", goodFinal("biws", ",y=2", password), ""},
		{"wrong password", "SCRAM-SHA-256", "n,,n=,r=abc", goodFinal("biws", "", "wrong"), CodeInvalidPassword},
		{"zero proof", "SCRAM-SHA-256", "n,,n=,r=abc", fixed("c=biws,r=NONCE,p=" + proof32), CodeInvalidPassword},
		{"PLUS mechanism", "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=,r=abc", nil, CodeProtocolViolation},
		{"other mechanism", "PLAIN", "\x00u\x00pw", nil, CodeProtocolViolation},
		{"garbage", "SCRAM-SHA-256", "garbage", nil, CodeProtocolViolation},
		{"empty", "SCRAM-SHA-256", "", nil, CodeProtocolViolation},
		{"channel binding requested", "SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=abc", nil, CodeProtocolViolation},
		{"bad binding flag", "SCRAM-SHA-256", "x,,n=,r=abc", nil, CodeProtocolViolation},
		{"authzid", "SCRAM-SHA-256", "n,a=admin,n=,r=abc", nil, CodeFeatureNotSupported},
		{"mandatory extension", "SCRAM-SHA-256", "n,,m=ext,n=,r=abc", nil, CodeFeatureNotSupported},
		{"no user attribute", "SCRAM-SHA-256", "n,,r=abc,n=", nil, CodeProtocolViolation},
		{"empty nonce", "SCRAM-SHA-256", "n,,n=,r=", nil, CodeProtocolViolation},
		{"unprintable nonce", "SCRAM-SHA-256", "n,,n=,r=a\x01b", nil, CodeProtocolViolation},
		{"bad extension", "SCRAM-SHA-256", "n,,n=,r=abc,=x", nil, CodeProtocolViolation},
		{"nonce mismatch", "SCRAM-SHA-256", "n,,n=,r=abc", fixed("c=biws,r=NONCEx,p=" + proof32), CodeProtocolViolation},
		{"client nonce only", "SCRAM-SHA-256", "n,,n=,r=abc", fixed("c=biws,r=abc,p=" + proof32), CodeProtocolViolation},
		{"binding flag changed", "SCRAM-SHA-256", "n,,n=,r=abc", goodFinal("eSws", "", password), CodeProtocolViolation},
		{"no proof", "SCRAM-SHA-256", "n,,n=,r=abc", fixed("c=biws,r=NONCE"), CodeProtocolViolation},
		{"short proof", "SCRAM-SHA-256", "n,,n=,r=abc", fixed("c=biws,r=NONCE,p=AAAA"), CodeProtocolViolation},
		{"proof not last", "SCRAM-SHA-256", "n,,n=,r=abc", fixed("c=biws,r=NONCE,p=" + proof32 + ",x=1"), CodeProtocolViolation},
		{"proof not base64", "SCRAM-SHA-256", "n,,n=,r=abc", fixed("c=biws,r=NONCE,p=!!!!"), CodeProtocolViolation},
		{"attributes out of order", "SCRAM-SHA-256", "n,,n=,r=abc", fixed("r=NONCE,c=biws,p=" + proof32), CodeProtocolViolation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			done := make(chan error, 1)
			go func() {
				err := AuthenticateSCRAM(server, "u", secret)
				if err != nil {
					WriteFatal(server, err)
				}
				done <- err
			}()
			f := pgproto3.NewFrontend(client, client)
			sasl := receive[*pgproto3.AuthenticationSASL](t, f)
			if len(sasl.AuthMechanisms) != 1 || sasl.AuthMechanisms[0] != "SCRAM-SHA-256" {
				t.Fatalf("got mechanisms %q, want [SCRAM-SHA-256]", sasl.AuthMechanisms)
			}
			clientSend(t, f, &pgproto3.SASLInitialResponse{AuthMechanism: tt.mechanism, Data: []byte(tt.first)})
			var final string
			if tt.final != nil {
				cont := receive[*pgproto3.AuthenticationSASLContinue](t, f)
				bare := tt.first[strings.Index(tt.first, ",,")+2:]
				final = tt.final(t, bare, string(cont.Data))
				clientSend(t, f, &pgproto3.SASLResponse{Data: []byte(final)})
			}
			err := waitErr(t, done)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				fin := receive[*pgproto3.AuthenticationSASLFinal](t, f)
				if !strings.HasPrefix(string(fin.Data), "v=") {
					t.Errorf("got server-final %q, want v=...", fin.Data)
				}
				return
			}
			if got := errorCode(err); got != tt.wantCode {
				t.Fatalf("got code %s (%v), want %s", got, err, tt.wantCode)
			}
			if e := receive[*pgproto3.ErrorResponse](t, f); e.Code != tt.wantCode || e.Severity != SeverityFatal {
				t.Errorf("client got %s %s, want FATAL %s", e.Severity, e.Code, tt.wantCode)
			}
			// Neither the proof nor the password may leak into what is logged.
			if p := attrOrEmpty(final, "p"); p != "" && strings.Contains(err.Error(), p) || strings.Contains(err.Error(), password) {
				t.Errorf("got error %q, which holds a secret", err)
			}
		})
	}
}

// TestAuthenticateBadMessages covers framing during authentication.
func TestAuthenticateBadMessages(t *testing.T) {
	initial := func(declared int32, data string) []byte {
		body := append([]byte("SCRAM-SHA-256\x00"), binary.BigEndian.AppendUint32(nil, uint32(declared))...)
		body = append(body, data...)
		b := []byte{'p', 0, 0, 0, 0}
		PutHeader(b, 'p', len(body))
		return append(b, body...)
	}
	password := func(pw string, extra string) []byte {
		body := pw + "\x00" + extra
		b := make([]byte, 5)
		PutHeader(b, 'p', len(body))
		return append(b, body...)
	}
	scram := func(rw io.ReadWriter) error { return AuthenticateSCRAM(rw, "u", mustSecret(t, "pw", "u")) }
	md5auth := func(rw io.ReadWriter) error { return AuthenticateMD5(rw, "u", mustSecret(t, "pw", "u")) }
	tests := []struct {
		name string
		auth func(io.ReadWriter) error
		send []byte
	}{
		{"SCRAM: Query instead of SASLInitialResponse", scram, []byte("Q\x00\x00\x00\x0dselect 1\x00")},
		{"SCRAM: Terminate", scram, []byte("X\x00\x00\x00\x04")},
		{"SCRAM: oversized", scram, []byte("p\x00\x01\x00\x00")},
		{"SCRAM: length below 4", scram, []byte("p\x00\x00\x00\x03")},
		{"SCRAM: no mechanism terminator", scram, []byte("p\x00\x00\x00\x08SCRA")},
		{"SCRAM: data length too long", scram, initial(100, "n,,n=,r=abc")},
		{"SCRAM: data length too short", scram, initial(3, "n,,n=,r=abc")},
		{"SCRAM: data length -1 with data", scram, initial(-1, "n,,n=,r=abc")},
		{"MD5: Query instead of password", md5auth, []byte("Q\x00\x00\x00\x0dselect 1\x00")},
		{"MD5: no terminator", md5auth, []byte("p\x00\x00\x00\x07md5")},
		{"MD5: bytes after terminator", md5auth, password("md5", "x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			done := make(chan error, 1)
			go func() {
				err := tt.auth(server)
				if err != nil {
					WriteFatal(server, err)
				}
				done <- err
			}()
			f := pgproto3.NewFrontend(client, client)
			if _, err := f.Receive(); err != nil { // the authentication request
				t.Fatal(err)
			}
			write(t, client, tt.send)
			err := waitErr(t, done)
			if got := errorCode(err); got != CodeProtocolViolation {
				t.Fatalf("got code %s (%v), want %s", got, err, CodeProtocolViolation)
			}
			if e := receive[*pgproto3.ErrorResponse](t, f); e.Code != CodeProtocolViolation {
				t.Errorf("client got %s, want %s", e.Code, CodeProtocolViolation)
			}
		})
	}
}

func TestParseSecret(t *testing.T) {
	salt := []byte("0123456789abcdef")
	good := testVerifier(t, "pw", salt, 4096)
	_, keys, _ := strings.Cut(strings.TrimPrefix(good, "SCRAM-SHA-256$"), "$")
	stored, server, _ := strings.Cut(keys, ":")
	short := base64.StdEncoding.EncodeToString(make([]byte, 31))
	tests := []struct {
		name     string
		password string
		want     string // Secret.String(), or "error"
		wantMD5  bool
	}{
		{"plain", "pw", "wire.Secret(plain password)", true},
		{"plain starting with md5", "md5isnotahash", "wire.Secret(plain password)", true},
		{"md5 hash", testMD5("pw", "u"), "wire.Secret(md5 hash)", true},
		{"md5 with upper-case hex is plain, as in PostgreSQL", "md5" + strings.ToUpper(testMD5("pw", "u")[3:]), "wire.Secret(plain password)", true},
		{"md5 one digit short is plain", testMD5("pw", "u")[:34], "wire.Secret(plain password)", true},
		{"SCRAM verifier", good, "wire.Secret(SCRAM-SHA-256 verifier)", false},
		{"SCRAM verifier, 1 iteration", "SCRAM-SHA-256$1:c2FsdA==$" + keys, "wire.Secret(SCRAM-SHA-256 verifier)", false},
		{"empty", "", "error", false},
		{"SCRAM, no keys", "SCRAM-SHA-256$4096:c2FsdA==", "error", false},
		{"SCRAM, no salt", "SCRAM-SHA-256$4096$" + keys, "error", false},
		{"SCRAM, empty salt", "SCRAM-SHA-256$4096:$" + keys, "error", false},
		{"SCRAM, zero iterations", "SCRAM-SHA-256$0:c2FsdA==$" + keys, "error", false},
		{"SCRAM, negative iterations", "SCRAM-SHA-256$-1:c2FsdA==$" + keys, "error", false},
		{"SCRAM, iterations overflow", "SCRAM-SHA-256$4294967296:c2FsdA==$" + keys, "error", false},
		{"SCRAM, iterations not a number", "SCRAM-SHA-256$x:c2FsdA==$" + keys, "error", false},
		{"SCRAM, salt not base64", "SCRAM-SHA-256$4096:!!!$" + keys, "error", false},
		{"SCRAM, StoredKey too short", "SCRAM-SHA-256$4096:c2FsdA==$" + short + ":" + server, "error", false},
		{"SCRAM, ServerKey too short", "SCRAM-SHA-256$4096:c2FsdA==$" + stored + ":" + short, "error", false},
		{"SCRAM, ServerKey missing", "SCRAM-SHA-256$4096:c2FsdA==$" + stored, "error", false},
		{"SCRAM, StoredKey not base64", "SCRAM-SHA-256$4096:c2FsdA==$" + strings.Repeat("*", 44) + ":" + server, "error", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSecret(tt.password, "u")
			if tt.want == "error" {
				if err == nil {
					t.Fatalf("got %v, want an error", s)
				}
				if !errors.Is(err, ErrInvalidSecret) {
					t.Errorf("got error %v, want one wrapping ErrInvalidSecret", err)
				}
				for _, part := range []string{stored, server} {
					if strings.Contains(err.Error(), part) {
						t.Errorf("got error %q, which holds a key", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %s", err, tt.want)
			}
			if got := s.String(); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if got := s.CanMD5(); got != tt.wantMD5 {
				t.Errorf("got CanMD5 %v, want %v", got, tt.wantMD5)
			}
			if out := fmt.Sprintf("%v %+v %#v %s", s, s, s, s); strings.Contains(out, tt.password) {
				t.Errorf("got %q printed, which holds the secret", out)
			}
		})
	}
}

func receive[M pgproto3.BackendMessage](t *testing.T, f *pgproto3.Frontend) M {
	t.Helper()
	msg, err := f.Receive()
	if err != nil {
		t.Fatalf("client receive: %v", err)
	}
	m, ok := msg.(M)
	if !ok {
		if e, isErr := msg.(*pgproto3.ErrorResponse); isErr {
			t.Fatalf("client got ErrorResponse %s %q, want %T", e.Code, e.Message, m)
		}
		t.Fatalf("client got %T, want %T", msg, m)
	}
	return m
}

func clientSend(t *testing.T, f *pgproto3.Frontend, msg pgproto3.FrontendMessage) {
	t.Helper()
	f.Send(msg)
	if err := f.Flush(); err != nil {
		t.Fatalf("client send: %v", err)
	}
}

func waitErr(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(testTimeout):
		t.Fatal("authentication did not return")
		return nil
	}
}

// attr returns the value of attribute name in a SCRAM message.
func attr(t *testing.T, msg, name string) string {
	t.Helper()
	v := attrOrEmpty(msg, name)
	if v == "" {
		t.Fatalf("no attribute %q in %q", name, msg)
	}
	return v
}

func attrOrEmpty(msg, name string) string {
	for part := range strings.SplitSeq(msg, ",") {
		if v, ok := strings.CutPrefix(part, name+"="); ok {
			return v
		}
	}
	return ""
}

// TestAuthenticateWithoutUsableSecret checks that a client is asked for its
// password and refused with 28P01 whether or not a usable secret exists, as
// PostgreSQL does to hide which users exist.
func TestAuthenticateWithoutUsableSecret(t *testing.T) {
	verifier := mustSecret(t, testVerifier(t, "pw", []byte("salt"), 4096), "u")
	md5Hash := mustSecret(t, testMD5("pw", "u"), "u")
	proof := base64.StdEncoding.EncodeToString(make([]byte, 32))
	scramClient := func(t *testing.T, f *pgproto3.Frontend) {
		receive[*pgproto3.AuthenticationSASL](t, f)
		clientSend(t, f, &pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abc")})
		cont := receive[*pgproto3.AuthenticationSASLContinue](t, f)
		clientSend(t, f, &pgproto3.SASLResponse{Data: []byte("c=biws,r=" + attr(t, string(cont.Data), "r") + ",p=" + proof)})
	}
	md5Client := func(t *testing.T, f *pgproto3.Frontend) {
		receive[*pgproto3.AuthenticationMD5Password](t, f)
		clientSend(t, f, &pgproto3.PasswordMessage{Password: "md5" + strings.Repeat("0", 32)})
	}
	tests := []struct {
		name   string
		auth   func(io.ReadWriter) error
		client func(t *testing.T, f *pgproto3.Frontend)
	}{
		{"SCRAM, unknown user", func(rw io.ReadWriter) error { return AuthenticateSCRAM(rw, "u", Secret{}) }, scramClient},
		{"SCRAM, md5 hash", func(rw io.ReadWriter) error { return AuthenticateSCRAM(rw, "u", md5Hash) }, scramClient},
		{"MD5, unknown user", func(rw io.ReadWriter) error { return AuthenticateMD5(rw, "u", Secret{}) }, md5Client},
		{"MD5, SCRAM verifier", func(rw io.ReadWriter) error { return AuthenticateMD5(rw, "u", verifier) }, md5Client},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			done := make(chan error, 1)
			go func() {
				err := tt.auth(server)
				if err != nil {
					WriteFatal(server, err)
				}
				done <- err
			}()
			f := pgproto3.NewFrontend(client, client)
			tt.client(t, f)
			err := waitErr(t, done)
			if got := errorCode(err); got != CodeInvalidPassword || errors.Unwrap(err) == nil {
				t.Fatalf("got %v (code %s), want 28P01 with the reason as its cause", err, got)
			}
			if e := receive[*pgproto3.ErrorResponse](t, f); e.Code != CodeInvalidPassword || e.Message != `password authentication failed for user "u"` {
				t.Errorf("client got %s %q, want 28P01 and PostgreSQL's message", e.Code, e.Message)
			}
		})
	}
}

// serverFirstFor runs a SCRAM exchange for user against s up to the
// server-first-message, which it returns, then fails it with a zero proof.
func serverFirstFor(t *testing.T, user string, s Secret) string {
	t.Helper()
	client, server := tcpPair(t)
	done := make(chan error, 1)
	go func() { done <- AuthenticateSCRAM(server, user, s) }()
	f := pgproto3.NewFrontend(client, client)
	receive[*pgproto3.AuthenticationSASL](t, f)
	clientSend(t, f, &pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abc")})
	cont := receive[*pgproto3.AuthenticationSASLContinue](t, f)
	proof := base64.StdEncoding.EncodeToString(make([]byte, 32))
	clientSend(t, f, &pgproto3.SASLResponse{Data: []byte("c=biws,r=" + attr(t, string(cont.Data), "r") + ",p=" + proof)})
	if err := waitErr(t, done); errorCode(err) != CodeInvalidPassword {
		t.Fatalf("got %v, want 28P01", err)
	}
	return string(cont.Data)
}

// TestSCRAMSaltStable checks that a client is shown, for a user name, the
// same salt and iteration count at every attempt whether the user is
// configured with a plain password, with an md5 hash (which cannot verify
// SCRAM), or not at all, as PostgreSQL shows a stored salt or its mock
// salt; and that a plain password's verifier is derived once, by
// ParseSecret, not at each login.
func TestSCRAMSaltStable(t *testing.T) {
	saltOf := func(user string, s Secret) string {
		first := serverFirstFor(t, user, s)
		return "s=" + attr(t, first, "s") + ",i=" + attr(t, first, "i")
	}
	plain := mustSecret(t, "pw", "u")
	want := saltOf("u", plain)
	if raw, _ := base64.StdEncoding.DecodeString(attr(t, "x,"+want, "s")); len(raw) != 16 || !strings.HasSuffix(want, ",i=4096") {
		t.Fatalf("got %s, want a 16-byte salt and 4096 iterations as PostgreSQL's", want)
	}
	for _, c := range []struct {
		name string
		s    Secret
	}{
		{"plain password, again", plain},
		{"plain password, parsed again", mustSecret(t, "pw", "u")},
		{"other plain password", mustSecret(t, "other", "u")},
		{"md5 hash", mustSecret(t, testMD5("pw", "u"), "u")},
		{"unknown user", Secret{}},
		{"unknown user, again", Secret{}},
	} {
		if got := saltOf("u", c.s); got != want {
			t.Errorf("%s: got %s, want %s", c.name, got, want)
		}
	}
	if other := saltOf("v", Secret{}); other == want {
		t.Errorf("user v is shown user u's salt %s, want one of its own", want)
	}
	// The derived verifier is the one a client computes from that salt.
	salt, _ := base64.StdEncoding.DecodeString(attr(t, "x,"+want, "s"))
	if got, want := plain.scram, testVerifier(t, "pw", salt, 4096); "SCRAM-SHA-256$4096:"+base64.StdEncoding.EncodeToString(got.salt)+"$"+
		base64.StdEncoding.EncodeToString(got.storedKey)+":"+base64.StdEncoding.EncodeToString(got.serverKey) != want {
		t.Errorf("ParseSecret derived a verifier other than %s", want)
	}
}

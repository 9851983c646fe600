package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// loginWith logs in to the server at addr as user, answering its
// authentication request with pt, and returns the server's verdict: nil
// for AuthenticationOk, its error message, or pt's error.
func loginWith(t *testing.T, addr, user string, pt *PassThrough) error {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(testTimeout))
	f := pgproto3.NewFrontend(nc, nc)
	f.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": user, "database": "db"}})
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	req, err := ReadServerAuth(nc)
	if err != nil {
		t.Fatal(err)
	}
	if !pt.Answers(AuthRequest(req)) {
		t.Fatalf("got message %q code %d, want a request pass-through answers", req[0], AuthRequest(req))
	}
	serverErr, err := pt.Answer(nc, user, req)
	if err != nil {
		return err
	}
	verdict := serverErr
	if verdict == nil {
		if verdict, err = ReadServerAuth(nc); err != nil {
			t.Fatal(err)
		}
	}
	if verdict[0] == 'E' {
		var e pgproto3.ErrorResponse
		if err := e.Decode(verdict[HeaderSize:]); err != nil {
			t.Fatal(err)
		}
		return errors.New(e.Code + " " + e.Message)
	}
	if AuthRequest(verdict) != authOK {
		t.Fatalf("got message %q, want AuthenticationOk", verdict[0])
	}
	return nil
}

// TestPassThrough logs in to a server holding a user's verifier with what
// a client proved to pgswitch's front door holding the same verifier: the
// ClientKey from the proof answers the server's SCRAM exchange, and an md5
// verifier answers md5.
func TestPassThrough(t *testing.T) {
	const user = "u"
	salt := []byte("0123456789abcdef")
	verifier := mustSecret(t, testVerifier(t, "pw", salt, 4096), user)
	pt := &PassThrough{}
	front := serveAuth(t, func(rw io.ReadWriter, u string) error {
		k, err := AuthenticateSCRAMKey(rw, u, verifier)
		if err == nil {
			pt.Learn(verifier, k)
		}
		return err
	})
	server := func(s Secret) string {
		return serveAuth(t, func(rw io.ReadWriter, u string) error { return AuthenticateSCRAM(rw, u, s) })
	}
	same := server(verifier)

	// Before any client proved the verifier, there is nothing to answer with.
	if err := loginWith(t, same, user, pt); !errors.Is(err, ErrNoPassThrough) {
		t.Fatalf("before a client: got %v, want ErrNoPassThrough", err)
	}
	if err := connect(t, front, user, "wrong"); err == nil {
		t.Fatal("front door accepted a wrong password")
	}
	if err := loginWith(t, same, user, pt); !errors.Is(err, ErrNoPassThrough) {
		t.Fatalf("after a failed client: got %v, want ErrNoPassThrough", err)
	}
	if err := connect(t, front, user, "pw"); err != nil {
		t.Fatalf("front door: %v", err)
	}
	if err := loginWith(t, same, user, pt); err != nil {
		t.Fatalf("same verifier: got %v, want logged in", err)
	}
	// Same password, another salt: the ClientKey does not fit, and
	// pgswitch says so before it proves anything.
	other := server(mustSecret(t, testVerifier(t, "pw", []byte("fedcba9876543210"), 4096), user))
	if err := loginWith(t, other, user, pt); err == nil || !strings.Contains(err.Error(), "salt or iteration count differ") {
		t.Fatalf("other salt: got %v, want the verifiers told apart", err)
	}
	// Same salt, another password: the server refuses the proof.
	changed := server(mustSecret(t, testVerifier(t, "pw2", salt, 4096), user))
	if err := loginWith(t, changed, user, pt); err == nil || !strings.HasPrefix(err.Error(), CodeInvalidPassword) {
		t.Fatalf("changed password: got %v, want 28P01 from the server", err)
	}

	// md5: the hash itself answers.
	hash := mustSecret(t, testMD5("pw", user), user)
	md5Server := serveAuth(t, func(rw io.ReadWriter, u string) error { return AuthenticateMD5(rw, u, hash) })
	if err := loginWith(t, md5Server, user, pt); !errors.Is(err, ErrNoPassThrough) {
		t.Fatalf("md5 without an md5 verifier: got %v, want ErrNoPassThrough", err)
	}
	pt.Learn(hash, ClientKey{})
	if err := loginWith(t, md5Server, user, pt); err != nil {
		t.Fatalf("md5: got %v, want logged in", err)
	}
	// A cleartext request cannot be answered from a verifier.
	plainServer := serveAuth(t, func(rw io.ReadWriter, u string) error {
		_, err := AuthenticatePassword(rw, u, mustSecret(t, "pw", user))
		return err
	})
	if err := loginWith(t, plainServer, user, pt); !errors.Is(err, ErrNoPassThrough) {
		t.Fatalf("cleartext: got %v, want ErrNoPassThrough", err)
	}
}

// TestClientKeyPrintsNothing: a ClientKey in a log line says only its kind.
func TestClientKeyPrintsNothing(t *testing.T) {
	k := ClientKey{key: []byte("0123456789abcdef0123456789abcdef")}
	for _, got := range []string{k.String(), k.GoString()} {
		if strings.Contains(got, "0123") {
			t.Errorf("got %q, want no key material", got)
		}
	}
}

// FuzzPassThroughServer answers a server's SCRAM request with a ClientKey
// and feeds whatever the server says next: Answer must end with a result
// or an error, never a panic, and never write more than two messages.
func FuzzPassThroughServer(f *testing.F) {
	salt := []byte("0123456789abcdef")
	sasl := func(code uint32, data string) []byte {
		b := AppendHeader(nil, 'R', 4+len(data))
		b = binary.BigEndian.AppendUint32(b, code)
		return append(b, data...)
	}
	f.Add(sasl(authSASLContinue, "r=abc,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096"))
	f.Add(append(sasl(authSASLContinue, "r=,s=,i="), sasl(authSASLFinal, "v=")...))
	f.Add([]byte("E\x00\x00\x00\x08S\x00\x00"))
	f.Add(sasl(authSASLContinue, "r=x,s=!!,i=-1"))
	keys, err := deriveSCRAMKeys("pw", salt, 4096)
	if err != nil {
		f.Fatal(err)
	}
	pt := &PassThrough{}
	pt.Learn(Secret{kind: secretSCRAM, scram: keys}, ClientKey{keys: keys, key: make([]byte, 32)})
	req := sasl(authSASL, scramMechanism+"\x00\x00")
	f.Fuzz(func(t *testing.T, server []byte) {
		var out bytes.Buffer
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(server), &out}
		serverErr, err := pt.Answer(rw, "u", req)
		if serverErr != nil && (err != nil || serverErr[0] != 'E') {
			t.Fatalf("got server error message %q with err %v", serverErr[0], err)
		}
		if err == nil && serverErr == nil && out.Len() == 0 {
			t.Fatal("got success without a word to the server")
		}
	})
}

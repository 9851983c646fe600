package wire

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// testTimeout bounds every blocking step of these tests; reaching it is a
// failure, never a way to wait.
const testTimeout = 10 * time.Second

// tcpPair returns both ends of a 127.0.0.1 TCP connection. Unlike net.Pipe,
// the kernel buffers writes, so a server that stops reading early does not
// block a client still writing.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	deadline := time.Now().Add(testTimeout)
	client.SetDeadline(deadline)
	server.SetDeadline(deadline)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

type negotiated struct {
	conn    net.Conn
	startup *Startup
	err     error
}

// serveNegotiate runs Negotiate on server in a goroutine and, on error,
// sends it to the client with WriteFatal, as pgswitch's listener does.
func serveNegotiate(server net.Conn, tlsConfig *tls.Config) <-chan negotiated {
	done := make(chan negotiated, 1)
	go func() {
		conn, st, err := Negotiate(server, tlsConfig)
		if err != nil {
			WriteFatal(conn, err)
		}
		done <- negotiated{conn, st, err}
	}()
	return done
}

func wait(t *testing.T, done <-chan negotiated) negotiated {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(testTimeout):
		t.Fatal("Negotiate did not return")
		return negotiated{}
	}
}

func encode(t *testing.T, msg pgproto3.FrontendMessage) []byte {
	t.Helper()
	b, err := msg.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func startupPacket(t *testing.T, version uint32, params map[string]string) []byte {
	return encode(t, &pgproto3.StartupMessage{ProtocolVersion: version, Parameters: params})
}

// rawPacket builds a startup-phase packet by hand, for layouts pgproto3
// refuses to encode.
func rawPacket(code uint32, rest []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(rest)))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, rest...)
}

func write(t *testing.T, w io.Writer, b []byte) {
	t.Helper()
	if _, err := w.Write(b); err != nil {
		t.Fatalf("client write: %v", err)
	}
}

func readByte(t *testing.T, r io.Reader) byte {
	t.Helper()
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		t.Fatalf("client read: %v", err)
	}
	return b[0]
}

// receiveError reads the ErrorResponse the client got.
func receiveError(t *testing.T, r io.Reader) *pgproto3.ErrorResponse {
	t.Helper()
	msg, err := pgproto3.NewFrontend(r, io.Discard).Receive()
	if err != nil {
		t.Fatalf("client receive: %v", err)
	}
	e, ok := msg.(*pgproto3.ErrorResponse)
	if !ok {
		t.Fatalf("client got %T, want *pgproto3.ErrorResponse", msg)
	}
	return e
}

func errorCode(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		return "not *Error"
	}
	return e.Code
}

func TestNegotiateStartup(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]string
		want   map[string]string
	}{
		{
			name:   "all given",
			params: map[string]string{"user": "app", "database": "shop", "application_name": "psql", "options": "-c search_path=x"},
			want:   map[string]string{"user": "app", "database": "shop", "application_name": "psql", "options": "-c search_path=x"},
		},
		{
			name:   "database defaults to user",
			params: map[string]string{"user": "app"},
			want:   map[string]string{"user": "app", "database": "app"},
		},
		{
			name:   "empty database defaults to user",
			params: map[string]string{"user": "app", "database": ""},
			want:   map[string]string{"user": "app", "database": "app"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			done := serveNegotiate(server, nil)
			write(t, client, startupPacket(t, pgproto3.ProtocolVersion30, tt.params))
			r := wait(t, done)
			if r.err != nil {
				t.Fatalf("got error %v, want none", r.err)
			}
			if !maps.Equal(r.startup.Params, tt.want) {
				t.Errorf("got params %v, want %v", r.startup.Params, tt.want)
			}
			if r.startup.Cancel != nil || r.startup.TLS {
				t.Errorf("got Cancel %v, TLS %v, want nil, false", r.startup.Cancel, r.startup.TLS)
			}
			if r.conn != server {
				t.Errorf("got a new conn without TLS, want the one passed in")
			}
		})
	}
}

// TestNegotiateLargestPacket checks PostgreSQL's limit: a body of 10000
// bytes after the length word is accepted.
func TestNegotiateLargestPacket(t *testing.T) {
	client, server := tcpPair(t)
	done := serveNegotiate(server, nil)
	pkt := startupPacket(t, pgproto3.ProtocolVersion30, map[string]string{"user": "app", "x": strings.Repeat("v", 9983)})
	if got := len(pkt) - 4; got != MaxStartupPacketSize {
		t.Fatalf("test packet body has %d bytes, want %d", got, MaxStartupPacketSize)
	}
	write(t, client, pkt)
	if r := wait(t, done); r.err != nil {
		t.Fatalf("got error %v, want none", r.err)
	}
}

// TestNegotiateProtocol32 checks that a client asking for protocol 3.2 or
// for protocol options is told the server speaks 3.0 without them.
func TestNegotiateProtocol32(t *testing.T) {
	client, server := tcpPair(t)
	done := serveNegotiate(server, nil)
	write(t, client, startupPacket(t, pgproto3.ProtocolVersion32, map[string]string{"user": "app", "_pq_.b": "1", "_pq_.a": "2"}))
	r := wait(t, done)
	if r.err != nil {
		t.Fatalf("got error %v, want none", r.err)
	}
	want := map[string]string{"user": "app", "database": "app"}
	if !maps.Equal(r.startup.Params, want) {
		t.Errorf("got params %v, want %v", r.startup.Params, want)
	}
	msg, err := pgproto3.NewFrontend(client, io.Discard).Receive()
	if err != nil {
		t.Fatal(err)
	}
	npv, ok := msg.(*pgproto3.NegotiateProtocolVersion)
	if !ok {
		t.Fatalf("client got %T, want *pgproto3.NegotiateProtocolVersion", msg)
	}
	if npv.NewestMinorProtocol != 0 || len(npv.UnrecognizedOptions) != 2 || npv.UnrecognizedOptions[0] != "_pq_.a" || npv.UnrecognizedOptions[1] != "_pq_.b" {
		t.Errorf("got NegotiateProtocolVersion %+v, want minor 0 and [_pq_.a _pq_.b]", npv)
	}
}

func TestNegotiateSSLRefused(t *testing.T) {
	client, server := tcpPair(t)
	done := serveNegotiate(server, nil)
	write(t, client, encode(t, &pgproto3.SSLRequest{}))
	if got := readByte(t, client); got != 'N' {
		t.Fatalf("got SSL answer %q, want 'N'", got)
	}
	write(t, client, startupPacket(t, pgproto3.ProtocolVersion30, map[string]string{"user": "app"}))
	r := wait(t, done)
	if r.err != nil {
		t.Fatalf("got error %v, want none", r.err)
	}
	if r.startup.TLS || r.startup.Params["user"] != "app" {
		t.Errorf("got TLS %v user %q, want false, app", r.startup.TLS, r.startup.Params["user"])
	}
}

// TestNegotiateGSSThenSSL follows libpq's gssencmode=prefer: GSS first,
// then SSL once GSS is refused.
func TestNegotiateGSSThenSSL(t *testing.T) {
	client, server := tcpPair(t)
	done := serveNegotiate(server, nil)
	write(t, client, encode(t, &pgproto3.GSSEncRequest{}))
	if got := readByte(t, client); got != 'N' {
		t.Fatalf("got GSSENC answer %q, want 'N'", got)
	}
	write(t, client, encode(t, &pgproto3.SSLRequest{}))
	if got := readByte(t, client); got != 'N' {
		t.Fatalf("got SSL answer %q, want 'N'", got)
	}
	write(t, client, startupPacket(t, pgproto3.ProtocolVersion30, map[string]string{"user": "app"}))
	if r := wait(t, done); r.err != nil {
		t.Fatalf("got error %v, want none", r.err)
	}
}

// selfSigned returns a server config and a client config that trusts it.
func selfSigned(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	client = &tls.Config{RootCAs: pool, ServerName: "localhost"}
	return server, client
}

// sslUpgrade sends an SSLRequest, expects 'S' and completes the client's
// side of the handshake.
func sslUpgrade(t *testing.T, client net.Conn, cfg *tls.Config) *tls.Conn {
	t.Helper()
	write(t, client, encode(t, &pgproto3.SSLRequest{}))
	if got := readByte(t, client); got != 'S' {
		t.Fatalf("got SSL answer %q, want 'S'", got)
	}
	tc := tls.Client(client, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("client TLS handshake: %v", err)
	}
	return tc
}

func TestNegotiateTLS(t *testing.T) {
	serverCfg, clientCfg := selfSigned(t)
	client, server := tcpPair(t)
	done := serveNegotiate(server, serverCfg)
	tc := sslUpgrade(t, client, clientCfg)
	write(t, tc, startupPacket(t, pgproto3.ProtocolVersion30, map[string]string{"user": "app", "database": "shop"}))
	r := wait(t, done)
	if r.err != nil {
		t.Fatalf("got error %v, want none", r.err)
	}
	if !r.startup.TLS || r.startup.Params["database"] != "shop" {
		t.Errorf("got TLS %v database %q, want true, shop", r.startup.TLS, r.startup.Params["database"])
	}
	sc, ok := r.conn.(*tls.Conn)
	if !ok {
		t.Fatalf("got conn %T, want *tls.Conn", r.conn)
	}
	// The returned conn is the one the session goes on with: prove it carries data.
	go func() { _, _ = sc.Write([]byte("R")) }()
	if got := readByte(t, tc); got != 'R' {
		t.Errorf("got %q over TLS, want 'R'", got)
	}
}

func TestNegotiateCancelRequest(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		client, server := tcpPair(t)
		serverCfg, clientCfg := selfSigned(t)
		done := serveNegotiate(server, serverCfg)
		var cw io.Writer = client
		if useTLS {
			cw = sslUpgrade(t, client, clientCfg)
		}
		key := CancelKey{ProcessID: 4242, SecretKey: 0xdeadbeef}
		write(t, cw, key.AppendCancelRequest(nil))
		r := wait(t, done)
		if r.err != nil {
			t.Fatalf("TLS %v: got error %v, want none", useTLS, r.err)
		}
		if r.startup.Cancel == nil || *r.startup.Cancel != key || r.startup.Params != nil || r.startup.TLS != useTLS {
			t.Errorf("TLS %v: got %+v, want Cancel %+v, no params", useTLS, r.startup, key)
		}
	}
}

func TestNegotiateErrors(t *testing.T) {
	ssl := rawPacket(codeSSLRequest, nil)
	tests := []struct {
		name     string
		send     []byte
		wantCode string
		// wantAnswers are the one-byte answers the client reads before the error.
		wantAnswers string
	}{
		{"protocol 2.0", startupPacket(t, 2<<16, map[string]string{"user": "app"}), CodeFeatureNotSupported, ""},
		{"protocol 4.0", rawPacket(4<<16, []byte("user\x00app\x00\x00")), CodeFeatureNotSupported, ""},
		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), CodeProtocolViolation, ""},
		{"TLS ClientHello without SSLRequest", []byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03}, CodeProtocolViolation, ""},
		{"oversized length", binary.BigEndian.AppendUint32(nil, 10009), CodeProtocolViolation, ""},
		{"body of 10001 bytes", rawPacket(pgproto3.ProtocolVersion30, make([]byte, 10001-4)), CodeProtocolViolation, ""},
		{"length below 8", []byte{0, 0, 0, 7, 0, 3, 0}, CodeProtocolViolation, ""},
		{"negative length", []byte{0xff, 0xff, 0xff, 0xfc}, CodeProtocolViolation, ""},
		{"missing user", startupPacket(t, pgproto3.ProtocolVersion30, map[string]string{"database": "shop"}), CodeInvalidAuthorizationSpecification, ""},
		{"empty user", startupPacket(t, pgproto3.ProtocolVersion30, map[string]string{"user": ""}), CodeInvalidAuthorizationSpecification, ""},
		{"no parameters", rawPacket(pgproto3.ProtocolVersion30, []byte{0}), CodeInvalidAuthorizationSpecification, ""},
		{"no terminator", rawPacket(pgproto3.ProtocolVersion30, []byte("user\x00app\x00")), CodeProtocolViolation, ""},
		{"value without terminator", rawPacket(pgproto3.ProtocolVersion30, []byte("user\x00app")), CodeProtocolViolation, ""},
		{"odd parameter list", rawPacket(pgproto3.ProtocolVersion30, []byte("user\x00\x00")), CodeProtocolViolation, ""},
		{"unknown request code", rawPacket(1234<<16|5677, nil), CodeFeatureNotSupported, ""},
		{"cancel request too short", rawPacket(codeCancelRequest, []byte{0, 0, 0, 1}), CodeProtocolViolation, ""},
		{"cancel request with a 3.2 key", rawPacket(codeCancelRequest, make([]byte, 4+32)), CodeProtocolViolation, ""},
		{"SSLRequest with a body", rawPacket(codeSSLRequest, []byte{0}), CodeProtocolViolation, ""},
		{"second SSLRequest after refusal", append(append([]byte{}, ssl...), ssl...), CodeProtocolViolation, "N"},
		{"second GSSENCRequest", append(rawPacket(codeGSSENCRequest, nil), rawPacket(codeGSSENCRequest, nil)...), CodeProtocolViolation, "N"},
		{"incomplete packet", startupPacket(t, pgproto3.ProtocolVersion30, map[string]string{"user": "app"})[:10], CodeProtocolViolation, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			done := serveNegotiate(server, nil)
			write(t, client, tt.send)
			if tt.name == "incomplete packet" {
				// The client goes away mid-packet.
				client.(*net.TCPConn).CloseWrite()
			}
			for i := range len(tt.wantAnswers) {
				if got := readByte(t, client); got != tt.wantAnswers[i] {
					t.Fatalf("got answer %q, want %q", got, tt.wantAnswers[i])
				}
			}
			r := wait(t, done)
			if got := errorCode(r.err); got != tt.wantCode {
				t.Fatalf("got code %s (%v), want %s", got, r.err, tt.wantCode)
			}
			e := receiveError(t, client)
			if e.Code != tt.wantCode || e.Severity != SeverityFatal {
				t.Errorf("client got %s %s, want FATAL %s", e.Severity, e.Code, tt.wantCode)
			}
		})
	}
}

func TestNegotiateProtocol2Message(t *testing.T) {
	client, server := tcpPair(t)
	done := serveNegotiate(server, nil)
	write(t, client, startupPacket(t, 2<<16, map[string]string{"user": "app"}))
	wait(t, done)
	e := receiveError(t, client)
	if want := "unsupported frontend protocol 2.0: server supports 3.0"; e.Message != want {
		t.Errorf("got message %q, want %q", e.Message, want)
	}
}

func TestNegotiateSecondSSLRequestOverTLS(t *testing.T) {
	serverCfg, clientCfg := selfSigned(t)
	client, server := tcpPair(t)
	done := serveNegotiate(server, serverCfg)
	tc := sslUpgrade(t, client, clientCfg)
	write(t, tc, encode(t, &pgproto3.SSLRequest{}))
	r := wait(t, done)
	if got := errorCode(r.err); got != CodeProtocolViolation {
		t.Fatalf("got code %s (%v), want %s", got, r.err, CodeProtocolViolation)
	}
	if e := receiveError(t, tc); e.Code != CodeProtocolViolation {
		t.Errorf("client got %s over TLS, want %s", e.Code, CodeProtocolViolation)
	}
}

func TestNegotiateEOF(t *testing.T) {
	client, server := tcpPair(t)
	done := serveNegotiate(server, nil)
	client.Close()
	r := wait(t, done)
	if got := errorCode(r.err); got != CodeProtocolViolation || !errors.Is(r.err, io.EOF) {
		t.Errorf("got %v (code %s), want 08P01 wrapping io.EOF", r.err, got)
	}
}

func TestWriteFatalPlainError(t *testing.T) {
	client, server := tcpPair(t)
	WriteFatal(server, Errorf(CodeTooManyConnections, "too many"))
	WriteFatal(server, errors.New("dial 10.0.0.1:5432: refused"))
	f := pgproto3.NewFrontend(client, io.Discard)
	for _, want := range []struct{ code, msg string }{{CodeTooManyConnections, "too many"}, {CodeInternalError, "internal error"}} {
		msg, err := f.Receive()
		if err != nil {
			t.Fatal(err)
		}
		e, ok := msg.(*pgproto3.ErrorResponse)
		if !ok {
			t.Fatalf("got %T, want *pgproto3.ErrorResponse", msg)
		}
		if e.Severity != SeverityFatal || e.Code != want.code || e.Message != want.msg {
			t.Errorf("got %s %s %q, want FATAL %s %q", e.Severity, e.Code, e.Message, want.code, want.msg)
		}
	}
}

func TestEncoders(t *testing.T) {
	key := CancelKey{ProcessID: 7, SecretKey: 0x01020304}
	var b []byte
	b = AppendAuthOK(b)
	b = AppendParameterStatus(b, "server_version", "17.2")
	b = AppendBackendKeyData(b, key)
	b = AppendReadyForQuery(b, 'I')
	f := pgproto3.NewFrontend(bytes.NewReader(b), io.Discard)
	wantTypes := []string{"*pgproto3.AuthenticationOk", "*pgproto3.ParameterStatus", "*pgproto3.BackendKeyData", "*pgproto3.ReadyForQuery"}
	for i, want := range wantTypes {
		msg, err := f.Receive()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		switch m := msg.(type) {
		case *pgproto3.ParameterStatus:
			if m.Name != "server_version" || m.Value != "17.2" {
				t.Errorf("got ParameterStatus %s=%s, want server_version=17.2", m.Name, m.Value)
			}
		case *pgproto3.BackendKeyData:
			if m.ProcessID != 7 || binary.BigEndian.Uint32(m.SecretKey) != 0x01020304 || len(m.SecretKey) != 4 {
				t.Errorf("got BackendKeyData %d %x, want 7 01020304", m.ProcessID, m.SecretKey)
			}
		}
		if got := fmt.Sprintf("%T", msg); got != want {
			t.Errorf("message %d: got %s, want %s", i, got, want)
		}
	}

	cancel := key.AppendCancelRequest(nil)
	if len(cancel) != 16 {
		t.Fatalf("got CancelRequest of %d bytes, want 16", len(cancel))
	}
	var req pgproto3.CancelRequest
	if binary.BigEndian.Uint32(cancel) != 16 || req.Decode(cancel[4:]) != nil || req.ProcessID != 7 || binary.BigEndian.Uint32(req.SecretKey) != 0x01020304 {
		t.Errorf("got CancelRequest % x, want length 16, pid 7, key 01020304", cancel)
	}
}

func TestNewCancelKey(t *testing.T) {
	seen := map[CancelKey]bool{}
	for range 100 {
		k := NewCancelKey()
		if k.ProcessID == 0 || k.ProcessID > 1<<31-1 {
			t.Errorf("got ProcessID %d, want within 1..2^31-1", k.ProcessID)
		}
		if seen[k] {
			t.Errorf("got key %+v twice in 100 draws", k)
		}
		seen[k] = true
	}
}

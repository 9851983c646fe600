package wire

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// MaxStartupPacketSize bounds the first packets of a connection, without
// their length word: PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
const MaxStartupPacketSize = 10000

// Request codes that take the place of a protocol version in the first packet.
const (
	codeCancelRequest = 80877102
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
)

// protocolVersion30 is the only protocol pgswitch speaks: its cancel keys are
// the 4-byte ones of 3.0, so a client asking for 3.2 is negotiated down.
const protocolVersion30 = 3 << 16

// Startup says what the first packet of a connection asked for.
type Startup struct {
	// Params holds the StartupMessage parameters (user, database,
	// application_name, options, ...); nil for a CancelRequest. "database"
	// is always set: it defaults to the user name, as in PostgreSQL.
	Params map[string]string
	// Cancel is non-nil for a CancelRequest. PostgreSQL never answers one:
	// the caller forwards it (or not) and closes the connection.
	Cancel *CancelKey
	// TLS reports that the connection was upgraded to TLS.
	TLS bool
}

// CancelKey identifies a session for a CancelRequest (protocol 3.0 keys).
type CancelKey struct {
	ProcessID uint32
	SecretKey uint32
}

// NewCancelKey returns a random key to announce in BackendKeyData.
func NewCancelKey() CancelKey {
	var b [8]byte
	// crypto/rand.Read never fails (it crashes the program instead).
	_, _ = rand.Read(b[:])
	// Clients show the process ID as a PID, and some read it as a signed
	// int32: keep it positive and non-zero.
	pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
	if pid == 0 {
		pid = 1
	}
	return CancelKey{ProcessID: pid, SecretKey: binary.BigEndian.Uint32(b[4:])}
}

func (k CancelKey) secret() []byte {
	return binary.BigEndian.AppendUint32(nil, k.SecretKey)
}

// AppendCancelRequest appends the 16-byte CancelRequest packet for k to dst,
// as sent on a fresh connection to cancel the session's running query.
func (k CancelKey) AppendCancelRequest(dst []byte) []byte {
	out, err := AppendCancelRequest(dst, k.ProcessID, k.secret())
	if err != nil {
		return dst // only keys longer than 256 bytes fail; ours has 4
	}
	return out
}

// AppendCancelRequest appends the CancelRequest packet for the server
// process pid with its secret key (BackendKeyData's, 4 bytes in protocol
// 3.0, up to 256 in 3.2) to dst, to be sent on a fresh connection to the
// server. A longer key is an error.
func AppendCancelRequest(dst []byte, pid uint32, secret []byte) ([]byte, error) {
	return (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}).Encode(dst)
}

// AppendAuthOK appends an AuthenticationOk message to dst.
func AppendAuthOK(dst []byte) []byte {
	out, err := (&pgproto3.AuthenticationOk{}).Encode(dst)
	if err != nil {
		return dst // a fixed-size message cannot fail to encode
	}
	return out
}

// AppendParameterStatus appends a ParameterStatus message to dst. A name or
// value too large for a message (over 1 GB) appends nothing.
func AppendParameterStatus(dst []byte, name, value string) []byte {
	out, err := (&pgproto3.ParameterStatus{Name: name, Value: value}).Encode(dst)
	if err != nil {
		return dst
	}
	return out
}

// AppendBackendKeyData appends a BackendKeyData message announcing k to dst.
func AppendBackendKeyData(dst []byte, k CancelKey) []byte {
	out, err := (&pgproto3.BackendKeyData{ProcessID: k.ProcessID, SecretKey: k.secret()}).Encode(dst)
	if err != nil {
		return dst // a fixed-size message cannot fail to encode
	}
	return out
}

// WriteFatal sends err, made FATAL, as an ErrorResponse. Write errors are
// ignored: the connection is being closed anyway. An error that is not an
// *Error goes out as XX000 "internal error", without its cause.
func WriteFatal(conn io.Writer, err error) {
	e := *AsError(err)
	e.Severity = SeverityFatal
	_, _ = conn.Write(e.AppendResponse(nil))
}

// Negotiate reads the first packets of a client connection. It answers an
// SSLRequest with 'S' and a TLS handshake when tlsConfig is not nil (else
// 'N'), a GSSENCRequest with 'N', and returns the StartupMessage parameters
// or the CancelRequest key. A client asking for protocol 3.x with x > 0, or
// for "_pq_." options, receives NegotiateProtocolVersion (3.0, options
// dropped from Params), as PostgreSQL answers protocol versions it lacks.
//
// The returned conn is the one to use from then on, the TLS one after an
// upgrade; it is returned with errors too, for WriteFatal. Errors are FATAL
// *Error values; a read error (EOF, the caller's deadline) is the cause of an
// 08P01 "incomplete startup packet", so errors.Is(err, io.EOF) and
// errors.Is(err, os.ErrDeadlineExceeded) tell a vanished client apart.
//
// Negotiate sets no deadline: the caller sets conn's (the login timeout).
func Negotiate(conn net.Conn, tlsConfig *tls.Config) (net.Conn, *Startup, error) {
	// PostgreSQL's rules: one SSLRequest, one GSSENCRequest, and none of
	// either once the connection is encrypted; then the real first packet.
	var sslDone, gssDone, tlsOn bool
	for {
		body, err := readStartupPacket(conn)
		if err != nil {
			return conn, nil, err
		}
		code := binary.BigEndian.Uint32(body)
		switch code {
		case codeSSLRequest:
			if len(body) != 4 {
				return conn, nil, Fatalf(CodeProtocolViolation, "invalid length of startup packet")
			}
			if sslDone {
				return conn, nil, Fatalf(CodeProtocolViolation, "unexpected SSLRequest: SSL negotiation already done")
			}
			sslDone, gssDone = true, true
			if tlsConfig == nil {
				// Refused: the client may go on in plain text, or ask for GSS.
				gssDone = false
				if err := writeByte(conn, 'N'); err != nil {
					return conn, nil, err
				}
				continue
			}
			if err := writeByte(conn, 'S'); err != nil {
				return conn, nil, err
			}
			tc := tls.Server(conn, tlsConfig)
			conn, tlsOn = tc, true
			if err := tc.Handshake(); err != nil {
				return conn, nil, Fatalf(CodeProtocolViolation, "could not accept SSL connection").WithCause(err)
			}
		case codeGSSENCRequest:
			if len(body) != 4 {
				return conn, nil, Fatalf(CodeProtocolViolation, "invalid length of startup packet")
			}
			if gssDone {
				return conn, nil, Fatalf(CodeProtocolViolation, "unexpected GSSENCRequest: encryption negotiation already done")
			}
			gssDone = true
			if err := writeByte(conn, 'N'); err != nil {
				return conn, nil, err
			}
		case codeCancelRequest:
			var req pgproto3.CancelRequest
			// Protocol 3.2 keys are longer, but we never hand one out.
			if len(body) != 12 || req.Decode(body) != nil {
				return conn, nil, Fatalf(CodeProtocolViolation, "invalid length of cancel request packet")
			}
			key := &CancelKey{ProcessID: req.ProcessID, SecretKey: binary.BigEndian.Uint32(req.SecretKey)}
			return conn, &Startup{Cancel: key, TLS: tlsOn}, nil
		default:
			params, err := parseStartupMessage(conn, body)
			if err != nil {
				return conn, nil, err
			}
			return conn, &Startup{Params: params, TLS: tlsOn}, nil
		}
	}
}

// readStartupPacket reads one length-prefixed packet of the startup phase
// and returns its body, which starts with the 4-byte version or request
// code. It reads exactly one packet: bytes behind it stay in conn, for TLS.
func readStartupPacket(conn io.Reader) ([]byte, error) {
	var lb [4]byte
	if _, err := io.ReadFull(conn, lb[:]); err != nil {
		return nil, Fatalf(CodeProtocolViolation, "incomplete startup packet").WithCause(err)
	}
	n := int64(binary.BigEndian.Uint32(lb[:])) - 4
	if n < 4 || n > MaxStartupPacketSize {
		return nil, Fatalf(CodeProtocolViolation, "invalid length of startup packet")
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(conn, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, Fatalf(CodeProtocolViolation, "incomplete startup packet").WithCause(err)
	}
	return body, nil
}

// parseStartupMessage checks the protocol version of a StartupMessage body
// and returns its parameters, with PostgreSQL's defaults applied. It writes
// NegotiateProtocolVersion to w when the client asked for more than 3.0.
func parseStartupMessage(w io.Writer, body []byte) (map[string]string, error) {
	version := binary.BigEndian.Uint32(body)
	major, minor := version>>16, version&0xffff
	if major != 3 {
		return nil, Fatalf(CodeFeatureNotSupported, "unsupported frontend protocol %d.%d: server supports 3.0", major, minor)
	}
	if body[len(body)-1] != 0 {
		return nil, Fatalf(CodeProtocolViolation, "invalid startup packet layout: expected terminator as last byte")
	}
	var params map[string]string
	if len(body) == 5 {
		// No parameters at all: valid layout, refused below for its lack of user.
		params = map[string]string{}
	} else {
		// pgproto3 knows 3.0 and 3.2 only; the minor version is ours to check.
		decode := append([]byte(nil), body...)
		binary.BigEndian.PutUint32(decode, protocolVersion30)
		var msg pgproto3.StartupMessage
		if err := msg.Decode(decode); err != nil {
			return nil, Fatalf(CodeProtocolViolation, "invalid startup packet layout").WithCause(err)
		}
		params = msg.Parameters
	}

	var unrecognized []string
	for name := range params {
		if strings.HasPrefix(name, "_pq_.") {
			unrecognized = append(unrecognized, name)
			delete(params, name)
		}
	}
	if minor > 0 || len(unrecognized) > 0 {
		slices.Sort(unrecognized)
		msg := pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unrecognized}
		out, err := msg.Encode(nil)
		if err != nil {
			return nil, Fatalf(CodeProtocolViolation, "invalid startup packet layout").WithCause(err)
		}
		if _, err := w.Write(out); err != nil {
			return nil, Fatalf(CodeConnectionFailure, "could not send protocol negotiation").WithCause(err)
		}
	}

	if params["user"] == "" {
		return nil, Fatalf(CodeInvalidAuthorizationSpecification, "no PostgreSQL user name specified in startup packet")
	}
	if params["database"] == "" {
		params["database"] = params["user"]
	}
	return params, nil
}

func writeByte(conn io.Writer, b byte) error {
	if _, err := conn.Write([]byte{b}); err != nil {
		return Fatalf(CodeConnectionFailure, "could not send SSL negotiation response").WithCause(err)
	}
	return nil
}

package wire

import (
	"bytes"
	"encoding/binary"
)

// HeaderSize is the size of a regular message header: a type byte and a
// big-endian int32 length that counts itself but not the type byte.
const HeaderSize = 5

// DefaultMaxMessageSize bounds one message's body. PostgreSQL itself allows
// up to 1 GB for some messages; 64 MiB keeps a hostile client from making us
// allocate without limit while allowing large COPY rows and bytea values.
const DefaultMaxMessageSize = 64 << 20

// Header is a parsed message header.
type Header struct {
	Type byte
	// Len is the length of the body, without the type byte and the length.
	Len int
}

// ParseHeader decodes a 5-byte header and checks its length against max.
// A length below 4 or above max is a protocol violation (08P01).
func ParseHeader(b []byte, max int) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, Fatalf(CodeProtocolViolation, "incomplete message header")
	}
	n := int64(binary.BigEndian.Uint32(b[1:5]))
	if n < 4 {
		return Header{}, Fatalf(CodeProtocolViolation, "invalid message length %d", n)
	}
	if n-4 > int64(max) {
		return Header{}, Fatalf(CodeProtocolViolation, "message of type %q too large (%d bytes, limit %d)", b[0], n-4, max)
	}
	return Header{Type: b[0], Len: int(n - 4)}, nil
}

// PutHeader writes a header for a message with body length n into b[:5].
func PutHeader(b []byte, typ byte, n int) {
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:5], uint32(n+4))
}

// AppendHeader appends a header for a message with body length n.
func AppendHeader(dst []byte, typ byte, n int) []byte {
	var h [HeaderSize]byte
	PutHeader(h[:], typ, n)
	return append(dst, h[:]...)
}

// AppendQuery appends a simple Query message for sql.
func AppendQuery(dst []byte, sql string) []byte {
	dst = AppendHeader(dst, 'Q', len(sql)+1)
	return append(append(dst, sql...), 0)
}

// AppendReadyForQuery appends a ReadyForQuery message with status to dst.
func AppendReadyForQuery(dst []byte, status byte) []byte {
	return append(dst, 'Z', 0, 0, 0, 5, status)
}

// AppendParse appends a Parse of query as the statement name. types is the
// parameter type section as a client's Parse carries it (an int16 count and
// that many type OIDs), copied undecoded; nil stands for no types.
func AppendParse(dst []byte, name, query string, types []byte) []byte {
	if len(types) == 0 {
		types = noTypes
	}
	dst = AppendHeader(dst, 'P', len(name)+1+len(query)+1+len(types))
	dst = append(append(dst, name...), 0)
	dst = append(append(dst, query...), 0)
	return append(dst, types...)
}

var noTypes = []byte{0, 0}

// AppendDescribe appends a Describe of the statement (kind 'S') or portal
// ('P') name.
func AppendDescribe(dst []byte, kind byte, name string) []byte {
	return appendTarget(dst, 'D', kind, name)
}

// AppendClose appends a Close of the statement (kind 'S') or portal ('P')
// name.
func AppendClose(dst []byte, kind byte, name string) []byte {
	return appendTarget(dst, 'C', kind, name)
}

func appendTarget(dst []byte, typ, kind byte, name string) []byte {
	dst = AppendHeader(dst, typ, 1+len(name)+1)
	dst = append(dst, kind)
	return append(append(dst, name...), 0)
}

// AppendSync appends a Sync message.
func AppendSync(dst []byte) []byte { return AppendHeader(dst, 'S', 0) }

// AppendParseComplete appends a ParseComplete message.
func AppendParseComplete(dst []byte) []byte { return AppendHeader(dst, '1', 0) }

// AppendCloseComplete appends a CloseComplete message.
func AppendCloseComplete(dst []byte) []byte { return AppendHeader(dst, '3', 0) }

// SetLength rewrites the length in the header of msg, a whole message
// whose body was edited, to fit len(msg).
func SetLength(msg []byte) {
	PutHeader(msg, msg[0], len(msg)-HeaderSize)
}

// ErrorField returns the value of field code ('C' SQLSTATE, 'M' message,
// 'V' severity, …) of an ErrorResponse or NoticeResponse body, nil when the
// body has none or is malformed.
func ErrorField(body []byte, code byte) []byte {
	for len(body) > 0 && body[0] != 0 {
		f := body[0]
		end := bytes.IndexByte(body[1:], 0)
		if end < 0 {
			return nil
		}
		if f == code {
			return body[1 : 1+end]
		}
		body = body[2+end:]
	}
	return nil
}

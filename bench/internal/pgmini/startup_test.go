package pgmini

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func packet(code uint32, body string) []byte {
	p := binary.BigEndian.AppendUint32(nil, uint32(8+len(body)))
	p = binary.BigEndian.AppendUint32(p, code)
	return append(p, body...)
}

func TestStartupReply(t *testing.T) {
	ssl := packet(80877103, "")
	start := packet(196608, "user\x00postgres\x00\x00")
	for _, tc := range []struct {
		name    string
		p       []byte
		n       int
		reply   []byte
		greeted bool
	}{
		{"empty", nil, 0, nil, false},
		{"partial header", start[:5], 0, nil, false},
		{"partial body", start[:len(start)-1], 0, nil, false},
		{"SSLRequest", ssl, 8, []byte{'N'}, false},
		{"SSLRequest then more", append(ssl, start[:3]...), 8, []byte{'N'}, false},
		{"startup", start, len(start), Greeting, true},
	} {
		n, reply, greeted, err := StartupReply(tc.p)
		if err != nil || n != tc.n || !bytes.Equal(reply, tc.reply) || greeted != tc.greeted {
			t.Errorf("%s: got %d, %q, %v, %v; want %d, %q, %v, nil", tc.name, n, reply, greeted, err, tc.n, tc.reply, tc.greeted)
		}
	}
	if _, _, _, err := StartupReply(packet(196608, string(make([]byte, 10000)))); err == nil {
		t.Error("a 10008-byte startup packet: got no error, want one")
	}
}

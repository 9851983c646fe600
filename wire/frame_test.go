package wire

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestEncodersAgreeWithPgproto3: each message pgswitch writes by hand on
// the hot path encodes exactly as pgproto3 encodes it.
func TestEncodersAgreeWithPgproto3(t *testing.T) {
	prefix := []byte("keep")
	tests := []struct {
		name string
		got  []byte
		want pgproto3.Message
	}{
		{"Query", AppendQuery(prefix, "SELECT 1"), &pgproto3.Query{String: "SELECT 1"}},
		{"ReadyForQuery", AppendReadyForQuery(prefix, 'T'), &pgproto3.ReadyForQuery{TxStatus: 'T'}},
		{"Parse", AppendParse(prefix, "s1", "SELECT $1, $2", []byte{0, 2, 0, 0, 0, 23, 0, 0, 0, 25}),
			&pgproto3.Parse{Name: "s1", Query: "SELECT $1, $2", ParameterOIDs: []uint32{23, 25}}},
		{"Parse without types", AppendParse(prefix, "", "SELECT 1", nil), &pgproto3.Parse{Query: "SELECT 1"}},
		{"Describe", AppendDescribe(prefix, 'S', "s1"), &pgproto3.Describe{ObjectType: 'S', Name: "s1"}},
		{"Close", AppendClose(prefix, 'P', "p"), &pgproto3.Close{ObjectType: 'P', Name: "p"}},
		{"Sync", AppendSync(prefix), &pgproto3.Sync{}},
		{"ParseComplete", AppendParseComplete(prefix), &pgproto3.ParseComplete{}},
		{"CloseComplete", AppendCloseComplete(prefix), &pgproto3.CloseComplete{}},
	}
	for _, tt := range tests {
		want, err := tt.want.Encode(append([]byte(nil), prefix...))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !bytes.Equal(tt.got, want) {
			t.Errorf("%s: got % x, want % x", tt.name, tt.got, want)
		}
	}
}

func TestAppendCancelRequest(t *testing.T) {
	for _, secret := range [][]byte{{0, 0, 0, 7}, bytes.Repeat([]byte{9}, 32)} {
		got, err := AppendCancelRequest(nil, 4242, secret)
		if err != nil {
			t.Fatal(err)
		}
		var req pgproto3.CancelRequest
		if err := req.Decode(got[4:]); err != nil {
			t.Fatal(err)
		}
		if int(got[3]) != len(got) || req.ProcessID != 4242 || !bytes.Equal(req.SecretKey, secret) {
			t.Errorf("got % x, want pid 4242 and key % x", got, secret)
		}
	}
	if _, err := AppendCancelRequest(nil, 1, make([]byte, 257)); err == nil {
		t.Error("got no error for a 257-byte key, want one")
	}
}

// TestSetLength: an edited message's header is made to fit it.
func TestSetLength(t *testing.T) {
	msg := AppendClose([]byte("x"), 'S', "a")
	msg = append(msg[:len(msg)-2], "longer\x00"...)
	SetLength(msg[1:])
	var c pgproto3.Close
	if err := c.Decode(msg[1+HeaderSize:]); err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(msg[1:], 100)
	if err != nil || h.Len != len(msg)-1-HeaderSize || c.Name != "longer" {
		t.Fatalf("got header %+v (%v), name %q", h, err, c.Name)
	}
}

func TestEncodersAllocateNothingWithRoom(t *testing.T) {
	buf := make([]byte, 0, 256)
	n := testing.AllocsPerRun(100, func() {
		b := AppendParse(buf[:0], "pgswitch_0123", "SELECT 1", nil)
		SetLength(b)
		AppendSync(b)
	})
	if n != 0 {
		t.Fatalf("got %v allocations, want 0", n)
	}
}

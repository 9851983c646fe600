package router

import (
	"encoding/binary"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/router/track"
	"github.com/pgswitch/pgswitch/wire"
)

func TestStartupSets(t *testing.T) {
	got := startupSets(map[string]string{
		"user": "u", "database": "d", "client_encoding": "UTF8", "application_name": "app",
		"DateStyle": "ISO, DMY", "_pq_.x": "y",
		"options": "-c search_path=a,b --statement-timeout=5s -cwork_mem=64MB -c DateStyle=SQL -x",
	})
	want := map[string]string{
		"application_name":  track.SetConfig("application_name", "app"),
		"datestyle":         track.SetConfig("datestyle", "ISO, DMY"), // the explicit parameter wins over options
		"search_path":       track.SetConfig("search_path", "a,b"),
		"statement_timeout": track.SetConfig("statement_timeout", "5s"),
		"work_mem":          track.SetConfig("work_mem", "64MB"),
	}
	if len(got) != len(want) {
		t.Fatalf("got %d settings %v, want %d", len(got), got, len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	// UTF8 given explicitly wins over another encoding in options.
	if got := startupSets(map[string]string{"client_encoding": "UTF8", "options": "-c client_encoding=SQL_ASCII"}); len(got) != 0 {
		t.Errorf("explicit UTF8 over options: %v", got)
	}
	if got := startupSets(map[string]string{"application_name": `o'ha\ra`})["application_name"]; got != `SELECT pg_catalog.set_config(E'application_name', E'o''ha\\ra', false)` {
		t.Errorf("quoting: got %q", got)
	}
}

// bind builds a Bind message with the given parameters and result formats.
func bind(params [][]byte, resultFormats int) []byte {
	var b []byte
	b = append(b, 0)          // portal
	b = append(b, "s\x00"...) // statement
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(params)))
	for _, p := range params {
		if p == nil {
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(resultFormats))
	for range resultFormats {
		b = binary.BigEndian.AppendUint16(b, 1)
	}
	return append(wire.AppendHeader(nil, 'B', len(b)), b...)
}

// batchOf lays messages out as a session's batch.
func batchOf(msgs ...[]byte) ([]byte, []span) {
	var b []byte
	var spans []span
	for _, m := range msgs {
		spans = append(spans, span{typ: m[0], start: len(b), end: len(b) + len(m)})
		b = append(b, m...)
	}
	return b, spans
}

func TestDescribesResult(t *testing.T) {
	describe := append(wire.AppendHeader(nil, 'D', 2), 'P', 0)
	execute := append(wire.AppendHeader(nil, 'E', 5), 0, 0, 0, 0, 0)
	sync := wire.AppendHeader(nil, 'S', 0)
	params := [][]byte{[]byte("42"), nil, []byte("x")}
	tests := []struct {
		name string
		msgs [][]byte
		want bool
	}{
		{"bind, describe, execute", [][]byte{bind(params, 0), describe, execute, sync}, true},
		{"one result format for all", [][]byte{bind(params, 1), describe, execute, sync}, true},
		{"a format per column", [][]byte{bind(params, 2), describe, execute, sync}, false},
		{"no describe", [][]byte{bind(params, 0), execute, sync}, false},
		{"truncated bind", [][]byte{append(wire.AppendHeader(nil, 'B', 4), bind(params, 0)[5:9]...), describe}, false},
	}
	for _, tt := range tests {
		if got := describesResult(batchOf(tt.msgs...)); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestWellFormedParse(t *testing.T) {
	good, _ := (&pgproto3.Parse{Name: "s", Query: "SELECT $1", ParameterOIDs: []uint32{23}}).Encode(nil)
	if !wellFormedParse(good) {
		t.Fatal("a well-formed Parse refused")
	}
	withByte := append(append([]byte(nil), good...), 0)
	binary.BigEndian.PutUint32(withByte[1:], uint32(len(withByte)-1))
	for name, msg := range map[string][]byte{
		"a stray byte":     withByte,
		"no parameters":    good[:len(good)-6],
		"a short type":     good[:len(good)-1],
		"no query end":     append(wire.AppendHeader(nil, 'P', 4), "s\x00ab"...),
		"no name end":      append(wire.AppendHeader(nil, 'P', 2), "ab"...),
		"an empty message": wire.AppendHeader(nil, 'P', 0),
	} {
		if wellFormedParse(msg) {
			t.Errorf("%s: taken as well-formed", name)
		}
	}
}

func TestAppendNamed(t *testing.T) {
	msg := bind([][]byte{[]byte("7")}, 1)
	server := "pgswitch_0123456789abcdef0123456789abcdef"
	out := make([]byte, 0, 256)
	run := func() {
		out = append(out[:0], "prefix"...)
		_, name, off := bindNames(msg)
		out = appendNamed(out, msg, off, len(name), server)
	}
	run()
	got := out[len("prefix"):]
	want := append(wire.AppendHeader(nil, 'B', len(msg)-wire.HeaderSize+len(server)-1), 0)
	want = append(append(append(want, server...), 0), msg[wire.HeaderSize+1+2:]...)
	if string(got) != string(want) {
		t.Fatalf("renamed Bind:\n got %q\nwant %q", got, want)
	}
	// Every query of a caching driver is a Bind.
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Fatalf("renaming a Bind allocates %v times, want 0", n)
	}
}

// FuzzClientMessages: whatever a client sends as a Parse, Bind, Describe or
// Close, reading it and renaming its statement neither panics nor yields a
// message whose length field is wrong.
func FuzzClientMessages(f *testing.F) {
	f.Add(byte('P'), []byte("s\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17"))
	f.Add(byte('B'), []byte("\x00s\x00\x00\x00\x00\x01\x00\x00\x00\x0242\x00\x01\x00\x01"))
	f.Add(byte('B'), []byte("portal\x00s"))
	f.Add(byte('D'), []byte("Ss\x00"))
	f.Add(byte('C'), []byte("Ss\x00"))
	f.Add(byte('D'), []byte("P\x00"))
	f.Add(byte('P'), []byte("\x00"))
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		msg := append(wire.AppendHeader(nil, typ, len(body)), body...)
		var off, n int
		switch typ {
		case 'P':
			parseBody(msg)
			wellFormedParse(msg)
			return
		case 'B':
			_, name, o := bindNames(msg)
			off, n = o, len(name)
			bindResultFormats(body)
		case 'D', 'C':
			_, name, o := targetName(msg)
			if o == 0 {
				return
			}
			off, n = o, len(name)
		default:
			return
		}
		out := appendNamed([]byte("prev"), msg, off, n, "pgswitch_x")
		if string(out[:4]) != "prev" || out[4] != typ {
			t.Fatalf("renamed message %q", out)
		}
		if got := int(binary.BigEndian.Uint32(out[5:])); got != len(out)-5 {
			t.Fatalf("length field %d, message of %d bytes after the type", got, len(out)-5)
		}
	})
}

// TestRetryPolicy: which first errors of a guarded unit make it run again.
func TestRetryPolicy(t *testing.T) {
	stale := "cached plan must not change result type"
	tests := []struct {
		name      string
		replica   bool // the unit runs on a replica
		named     bool // it runs a named statement
		code, msg string
		want      track.Outcome
	}{
		{"read refused by a replica", true, false, "25006", "cannot execute INSERT in a read-only transaction", track.Refused},
		{"read-only refusal on the primary", false, false, "25006", "cannot execute INSERT in a read-only transaction", track.Passed},
		{"stale plan of a named statement", false, true, "0A000", stale, track.Stale},
		{"stale plan on a replica", true, true, "0A000", stale, track.Stale},
		{"other 0A000", false, true, "0A000", "cannot use a cursor WITH HOLD here", track.Passed},
		{"stale plan with no named statement", false, false, "0A000", stale, track.Passed},
		{"type dropped behind pgswitch's back", false, true, "XX000", "cache lookup failed for type 16452", track.Stale},
		{"other internal error", false, true, "XX000", "could not open file", track.Passed},
		{"syntax error", true, true, "42601", "syntax error", track.Passed},
	}
	for _, tt := range tests {
		s := &Session{curRead: tt.replica}
		if tt.named {
			s.b.used = []usedStmt{{}}
		}
		if got := s.policy([]byte(tt.code), []byte(tt.msg)); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

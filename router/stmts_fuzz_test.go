package router

import (
	"encoding/binary"
	"testing"

	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/wire"
)

// FuzzRenameStatement: any Parse, Bind, Describe or Close body a client may
// send is rewritten without a panic into one well-formed message.
func FuzzRenameStatement(f *testing.F) {
	f.Add(byte('P'), []byte("s\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17"))
	f.Add(byte('B'), []byte("\x00s\x00\x00\x00\x00\x01\x00\x00\x00\x0242\x00\x01\x00\x01"))
	f.Add(byte('B'), []byte("portal\x00s"))
	f.Add(byte('D'), []byte("Ss\x00"))
	f.Add(byte('C'), []byte("Ss\x00"))
	f.Add(byte('D'), []byte("P\x00"))
	f.Add(byte('P'), []byte("\x00"))
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		switch typ {
		case 'P', 'B', 'D', 'C':
		default:
			return
		}
		out := make([]byte, 0, 64)
		s := &Session{out: &out, dbs: &dbState{classifier: classify.New(classify.Options{CacheSize: 16}), counters: &dbCounters{}}}
		s.prepared = map[string]*stmtDef{"s": newStmtDef("SELECT 1", nil, classify.Result{})}
		out = append(out, "prev"...)
		start := len(out)
		out = wire.AppendHeader(out, typ, len(body))
		out = append(out, body...)
		s.renameStatement(typ, start)
		msg := (*s.out)[start:]
		if len(msg) == 0 {
			return // a Close answered by pgswitch is removed by send, not here
		}
		if len(msg) < wire.HeaderSize || msg[0] != typ {
			t.Fatalf("rewritten message %q", msg)
		}
		if n := int(binary.BigEndian.Uint32(msg[1:])); n != len(msg)-1 {
			t.Fatalf("length field %d, message of %d bytes after the type", n, len(msg)-1)
		}
		if string((*s.out)[:start]) != "prev" {
			t.Fatalf("the messages before were changed: %q", (*s.out)[:start])
		}
	})
}

// FuzzStatementText: the scanners of SQL text and Bind bodies take any input
// without a panic, and a name found is never empty.
func FuzzStatementText(f *testing.F) {
	f.Add("PREPARE q (int) AS SELECT $1", []byte("\x00s\x00\x00\x00\x00\x00\x00\x01\x00\x00"))
	f.Add(`DEALLOCATE PREPARE "a""b"`, []byte{})
	f.Add("/* x */ EXECUTE q(1)", []byte("\x00\x00\xff\xff"))
	f.Fuzz(func(t *testing.T, text string, bind []byte) {
		firstWord(text)
		for _, kw := range []string{"PREPARE", "EXECUTE", "DEALLOCATE"} {
			if name, ok := sqlName(text, kw); ok && name == "" {
				t.Fatalf("sqlName(%q, %s) found an empty name", text, kw)
			}
		}
		bindResultFormats(bind)
		describesResult(bind)
		startupSets(map[string]string{"options": text})
		startupValue(map[string]string{"options": text}, "search_path")
	})
}

package router

import (
	"encoding/binary"
	"testing"

	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/wire"
)

func TestSQLName(t *testing.T) {
	tests := []struct {
		text, kw, want string
		ok             bool
	}{
		{"PREPARE q (int) AS SELECT $1", "PREPARE", "q", true},
		{"prepare Foo AS SELECT 1", "PREPARE", "foo", true},
		{`PREPARE "Mixed""Q" AS SELECT 1`, "PREPARE", `Mixed"Q`, true},
		{"  /* c */ -- x\n EXECUTE q(1, 2)", "EXECUTE", "q", true},
		{"EXECUTE q", "EXECUTE", "q", true},
		{"DEALLOCATE PREPARE q", "DEALLOCATE", "q", true},
		{"DEALLOCATE prepared_x", "DEALLOCATE", "prepared_x", true},
		{"DEALLOCATE ALL", "DEALLOCATE", "all", true},
		{"SELECT 1", "EXECUTE", "", false},
		{`EXECUTE "unterminated`, "EXECUTE", "", false},
		{"EXECUTE", "EXECUTE", "", false},
	}
	for _, tt := range tests {
		got, ok := sqlName(tt.text, tt.kw)
		if got != tt.want || ok != tt.ok {
			t.Errorf("sqlName(%q, %s) = %q, %v; want %q, %v", tt.text, tt.kw, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFirstWord(t *testing.T) {
	for text, want := range map[string]string{
		"reset search_path":      "RESET",
		"  /* hint */ SET x = 1": "SET",
		"-- c\nEXECUTE q":        "EXECUTE",
		"(SELECT 1)":             "SELECT",
		"/* unterminated":        "",
		"":                       "",
		";;  deallocate all":     "DEALLOCATE",
	} {
		if got := firstWord(text); got != want {
			t.Errorf("firstWord(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestSetsDiff(t *testing.T) {
	want := map[string]string{"search_path": "SET search_path TO s1", "timezone": "SET TimeZone = 'UTC'"}
	have := map[string]string{"search_path": "SET search_path TO s1", "statement_timeout": "SET statement_timeout = 5"}
	got := setsDiff(want, have)
	if exp := `RESET "statement_timeout";SET TimeZone = 'UTC';`; got != exp {
		t.Errorf("setsDiff = %q, want %q", got, exp)
	}
	if got := setsDiff(want, want); got != "" {
		t.Errorf("setsDiff of equal states = %q, want none", got)
	}
	if got := setsDiff(nil, nil); got != "" {
		t.Errorf("setsDiff of empty states = %q, want none", got)
	}
}

func TestStartupSets(t *testing.T) {
	got := startupSets(map[string]string{
		"user": "u", "database": "d", "client_encoding": "UTF8", "application_name": "app",
		"DateStyle": "ISO, DMY", "options": "-c search_path=a,b --statement-timeout=5s -cwork_mem=64MB -x",
	})
	want := map[string]string{
		"application_name":  "SELECT pg_catalog.set_config('application_name', 'app', false)",
		"datestyle":         "SELECT pg_catalog.set_config('datestyle', 'ISO, DMY', false)",
		"search_path":       "SELECT pg_catalog.set_config('search_path', 'a,b', false)",
		"statement_timeout": "SELECT pg_catalog.set_config('statement_timeout', '5s', false)",
		"work_mem":          "SELECT pg_catalog.set_config('work_mem', '64MB', false)",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d settings %v, want %d", len(got), got, len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if got := startupSets(map[string]string{"application_name": "o'hara"}); got["application_name"] != "SELECT pg_catalog.set_config('application_name', 'o''hara', false)" {
		t.Errorf("quoting: got %q", got["application_name"])
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

func TestDescribesResult(t *testing.T) {
	describe := append(wire.AppendHeader(nil, 'D', 2), 'P', 0)
	execute := append(wire.AppendHeader(nil, 'E', 5), 0, 0, 0, 0, 0)
	sync := wire.AppendHeader(nil, 'S', 0)
	unit := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	params := [][]byte{[]byte("42"), nil, []byte("x")}
	tests := []struct {
		name string
		msgs []byte
		want bool
	}{
		{"bind, describe, execute", unit(bind(params, 0), describe, execute, sync), true},
		{"one result format for all", unit(bind(params, 1), describe, execute, sync), true},
		{"a format per column", unit(bind(params, 2), describe, execute, sync), false},
		{"no describe", unit(bind(params, 0), execute, sync), false},
		{"truncated bind", unit(bind(params, 0)[:9], describe), false},
	}
	for _, tt := range tests {
		if got := describesResult(tt.msgs); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestReplaceNameInPlace(t *testing.T) {
	msg := bind([][]byte{[]byte("7")}, 1)
	server := "pgswitch_0123456789abcdef0123456789abcdef"
	out := make([]byte, 0, 256)
	s := &Session{out: &out}
	run := func() {
		*s.out = append((*s.out)[:0], "prefix"...)
		start := len(*s.out)
		*s.out = append(*s.out, msg...)
		// The statement name "s" follows the 5-byte header and the empty portal.
		s.replaceName(start, start+wire.HeaderSize+1, 1, server)
	}
	run()
	got := (*s.out)[len("prefix"):]
	want := append(wire.AppendHeader(nil, 'B', len(msg)-wire.HeaderSize+len(server)-1), 0)
	want = append(append(append(want, server...), 0), msg[wire.HeaderSize+1+2:]...)
	if string(got) != string(want) {
		t.Fatalf("renamed Bind:\n got %q\nwant %q", got, want)
	}
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Fatalf("replaceName allocates %v times per Bind, want 0", n)
	}
}

func TestSetsDiffEqualAllocatesNothing(t *testing.T) {
	a := map[string]string{"application_name": "SELECT pg_catalog.set_config('application_name', 'x', false)"}
	b := map[string]string{"application_name": a["application_name"]}
	if n := testing.AllocsPerRun(100, func() { setsDiff(a, b) }); n != 0 {
		t.Fatalf("setsDiff of equal states allocates %v times, want 0", n)
	}
}

func TestRecordSet(t *testing.T) {
	tests := []struct {
		sql  string
		want map[string]string
	}{
		{"SET search_path TO s1", map[string]string{"search_path": "SET search_path TO s1"}},
		{"SET a.b = 1; SET statement_timeout = 5", map[string]string{"a.b": "SET a.b = 1", "statement_timeout": "SET statement_timeout = 5"}},
		{"SET statement_timeout = 5; SELECT 1", map[string]string{"statement_timeout": "SET statement_timeout = 5"}},
		{"SET LOCAL statement_timeout = 5", map[string]string{}},
		{"SET work_mem = '64MB'; SET LOCAL statement_timeout = 5", map[string]string{"work_mem": "SET work_mem = '64MB'"}},
	}
	for _, tt := range tests {
		s := &Session{dbs: &dbState{classifier: classify.New(classify.Options{CacheSize: 64})}}
		c := &pool.Conn{}
		s.recordSet(c, s.dbs.classifier.Classify(tt.sql), tt.sql)
		if len(s.sets) != len(tt.want) {
			t.Errorf("%q: recorded %v, want %v", tt.sql, s.sets, tt.want)
			continue
		}
		for k, v := range tt.want {
			if s.sets[k] != v || c.Sets()[k] != v {
				t.Errorf("%q: %s recorded as %q (connection %q), want %q", tt.sql, k, s.sets[k], c.Sets()[k], v)
			}
		}
	}
	// RESET and RESET ALL forget.
	s := &Session{dbs: &dbState{classifier: classify.New(classify.Options{CacheSize: 64})}}
	c := &pool.Conn{}
	for _, sql := range []string{"SET a.x = 1", "SET a.y = 2", "RESET a.x"} {
		s.recordSet(c, s.dbs.classifier.Classify(sql), sql)
	}
	if _, ok := s.sets["a.x"]; ok || s.sets["a.y"] != "SET a.y = 2" {
		t.Errorf("after RESET a.x: %v", s.sets)
	}
	s.recordSet(c, s.dbs.classifier.Classify("RESET ALL"), "RESET ALL")
	if len(s.sets) != 0 || len(c.Sets()) != 0 {
		t.Errorf("after RESET ALL: session %v, connection %v", s.sets, c.Sets())
	}
}

package classify

import (
	"hash/maphash"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{"SELECT 1", "SELECT ?"},
		{"  SELECT\n\t a ,b  FROM   t  ", "SELECT a ,b FROM t"},
		{"SELECT a FROM t WHERE aid = 12345;", "SELECT a FROM t WHERE aid = ?;"},
		// Numbers.
		{"SELECT 1.5, .5, 1., 1e10, 1.5E-3, 2e+7", "SELECT ?, ?, ?, ?, ?, ?"},
		{"SELECT 0x1F, 0o17, 0b101, 1_000_000", "SELECT ?, ?, ?, ?"},
		{"SELECT -1, +2", "SELECT -?, +?"},
		{"SELECT t1.c2, c3d FROM t4", "SELECT t1.c2, c3d FROM t4"},
		{"SELECT t.5", "SELECT t?"},
		{"SELECT 1..2", "SELECT ?..?"},
		{"SELECT 1e", "SELECT ?e"},
		// Strings.
		{"SELECT 'abc'", "SELECT ?"},
		{"SELECT 'it''s'", "SELECT ?"},
		{"SELECT 'a\\'", "SELECT ?"}, // standard_conforming_strings: \ is plain
		{"SELECT E'a\\'b'", "SELECT ?"},
		{"SELECT e'a\\\\', 1", "SELECT ?, ?"},
		{"SELECT E'it''s'", "SELECT ?"},
		{"SELECT B'1010', b'01', X'ff', x'00'", "SELECT ?, ?, ?, ?"},
		{"SELECT N'x', n'y'", "SELECT ?, ?"},
		{"SELECT U&'d\\0061t', u&'x''y'", "SELECT ?, ?"},
		{"SELECT U&'d!0061t' UESCAPE '!'", "SELECT ? UESCAPE ?"},
		{"SELECT DATE '2024-01-01', interval '1 day'", "SELECT DATE ?, interval ?"},
		{"SELECT 'a'\n'b'", "SELECT ?"},
		{"SELECT 'a'  \n  -- c\n  'b' AS x", "SELECT ? AS x"},
		{"SELECT 'a' 'b'", "SELECT ? ?"},
		{"SELECT somee'x'", "SELECT somee?"},
		// Dollar quoting.
		{"SELECT $$a'b$$", "SELECT ?"},
		{"SELECT $t$ $$ $t$, $x_1$y$x_1$", "SELECT ?, ?"},
		{"SELECT $1, $23", "SELECT $1, $23"},
		{"SELECT a$b, x$$y$$", "SELECT a$b, x$$y$$"},
		{"SELECT a=$1", "SELECT a=$1"},
		{"SELECT a=$$x$$", "SELECT a=?"},
		// Identifiers.
		{`SELECT "a ""b"" c", "x'y"`, `SELECT "a ""b"" c", "x'y"`},
		{`SELECT U&"d\0061t"`, `SELECT U&"d\0061t"`},
		{"SELECT ключ, 名前", "SELECT ключ, 名前"},
		// Comments.
		{"SELECT 1 -- trailing", "SELECT ?"},
		{"SELECT /* a */ 1 /* b /* nested */ c */ FROM t", "SELECT ? FROM t"},
		{"SELECT a/*x*/b", "SELECT a b"},
		{"SELECT a+--c\n1", "SELECT a+ ?"},
		{"SELECT a--c\n,b", "SELECT a ,b"},
		// Operators are kept as written.
		{"SELECT a<=b, a < = b, j ? 'k', j->>'k'", "SELECT a<=b, a < = b, j ? ?, j->>?"},
		{"SELECT a::int, arr[1:2]", "SELECT a::int, arr[?:?]"},
		// Unterminated constructs keep the rest verbatim.
		{"SELECT 'abc; DELETE FROM t", "SELECT 'abc; DELETE FROM t"},
		{"SELECT E'abc\\'; DELETE FROM t", "SELECT E'abc\\'; DELETE FROM t"},
		{"SELECT $$abc; DELETE FROM t", "SELECT $$abc; DELETE FROM t"},
		{`SELECT "abc; DELETE FROM t`, `SELECT "abc; DELETE FROM t`},
		{"SELECT 1 /* abc; DELETE FROM t", "SELECT ? /* abc; DELETE FROM t"},
		{"SELECT B'10''01'", "SELECT ??"},
		// Hints are read first and kept in front.
		{"/* pgswitch:replica */ SELECT 1", "/* pgswitch:replica */ SELECT ?"},
		{"-- pgswitch:primary\nSELECT 1", "/* pgswitch:primary */ SELECT ?"},
		{"/* pgswitch:other */ SELECT 1", "SELECT ?"},
		{"SELECT 1 /* pgswitch:replica */", "SELECT ?"},
		// Nothing.
		{"", ""},
		{" -- only\n /* comments */ ", ""},
	} {
		if got := Normalize(tc.sql); got != tc.want {
			t.Errorf("Normalize(%q): got %q, want %q", tc.sql, got, tc.want)
		}
	}
}

func TestScannerHint(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want HintKind
	}{
		{"SELECT 1", HintNone},
		{"/* pgswitch:primary */ SELECT 1", HintPrimary},
		{"/* pgswitch:replica */SELECT 1", HintReplica},
		{"\n\n   /*\tpgswitch:replica\n*/ SELECT 1", HintReplica},
		{"--pgswitch:replica\nSELECT 1", HintReplica},
		{"-- pgswitch:primary  \r\nSELECT 1", HintPrimary},
		{"/* x */ -- y\n /* pgswitch:primary */ SELECT 1", HintPrimary},
		{"/* pgswitch:primary */ /* pgswitch:replica */ SELECT 1", HintPrimary},
		{"/* pgswitch:replica; */ SELECT 1", HintNone},
		{"/* pgswitch:replicas */ SELECT 1", HintNone},
		{"/* pgswitch:primary */", HintPrimary},
		{"SELECT /* pgswitch:primary */ 1", HintNone},
		{"'x' /* pgswitch:primary */", HintNone},
	} {
		_, _, got, _ := keyOf(maphash.MakeSeed(), tc.sql)
		if got != tc.want {
			t.Errorf("hint of %q: got %v, want %v", tc.sql, got, tc.want)
		}
	}
}

// keyOf must agree with Normalize: same form, same key and length.
func TestKeyMatchesNormalize(t *testing.T) {
	seed := maphash.MakeSeed()
	for _, tc := range classifyCases {
		key, length, _, empty := keyOf(seed, tc.sql)
		norm := Normalize(tc.sql)
		// Normalize puts the hint in front as text; keyOf hashes it as a byte.
		s := scanner{src: tc.sql}
		for k, _, _ := s.next(); k != tokEOF; k, _, _ = s.next() {
		}
		bare := norm
		if s.hint != HintNone {
			bare = strings.TrimPrefix(strings.TrimPrefix(norm, "/* pgswitch:"+s.hint.String()+" */"), " ")
		}
		if empty != (bare == "") {
			t.Errorf("%q: empty got %v, want %v", tc.sql, empty, bare == "")
		}
		if int(length) != len(bare) {
			t.Errorf("%q: length got %d, want %d (%q)", tc.sql, length, len(bare), bare)
		}
		var h maphash.Hash
		h.SetSeed(seed)
		h.WriteString(bare)
		h.WriteByte(byte(s.hint))
		if want := h.Sum64(); key != want {
			t.Errorf("%q: key got %x, want the hash of %q (%x)", tc.sql, key, bare, want)
		}
	}
}

func TestKeySameForLiterals(t *testing.T) {
	seed := maphash.MakeSeed()
	for _, pair := range [][2]string{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 1;", "SELECT abalance FROM pgbench_accounts WHERE aid = 9876543;"},
		{"SELECT * FROM t WHERE a = 'x' AND b = 1.5", "SELECT * FROM t WHERE a = 'a much longer '' string' AND b = 2e10"},
		{"SELECT E'\\n'", "SELECT E'\\'quoted\\''"},
		{"SELECT $$one$$", "SELECT $q$two; DELETE FROM t$q$"},
		{"SELECT B'1'", "SELECT X'FFFF'"},
		{"SELECT 'nextval(1)'", "SELECT 'plain'"},
		{"SELECT 1 -- one", "SELECT 2 /* two */"},
		{"SELECT\n1", "SELECT  \t 2"},
		{"INSERT INTO t VALUES (1, 'a')", "INSERT INTO t VALUES (2, 'b')"},
	} {
		a, la, _, _ := keyOf(seed, pair[0])
		b, lb, _, _ := keyOf(seed, pair[1])
		if a != b || la != lb {
			t.Errorf("keys of %q and %q: got %x/%d and %x/%d, want equal", pair[0], pair[1], a, la, b, lb)
		}
	}
}

func TestKeyDiffersForCode(t *testing.T) {
	seed := maphash.MakeSeed()
	for _, pair := range [][2]string{
		{"SELECT * FROM t1", "SELECT * FROM t2"},
		{"SELECT a FROM t", "SELECT b FROM t"},
		{"SELECT f(1)", "SELECT nextval(1)"},
		{"SELECT * FROM t", "SELECT * FROM t FOR UPDATE"},
		{"COPY t TO STDOUT", "COPY t FROM STDIN"},
		{"BEGIN READ ONLY", "BEGIN READ WRITE"},
		{"SET x = 1", "SET LOCAL x = 1"},
		{`SELECT "a"`, `SELECT "b"`},
		{`SELECT "A"`, `SELECT a`},
		{"SELECT $1", "SELECT $2"},
		{"SELECT $1", "SELECT 1"},
		{"SELECT ab", "SELECT a b"},
		{"SELECT a<=b", "SELECT a< =b"},
		{"SELECT 'x'", "SELECT 'x"},
		{"SELECT 1", "/* pgswitch:replica */ SELECT 1"},
		{"/* pgswitch:primary */ SELECT 1", "/* pgswitch:replica */ SELECT 1"},
		{"SELECT 1; SELECT 2", "SELECT 1; DELETE FROM t"},
		{"SELECT ключ", "SELECT ключь"},
		{"SELECT x$$y$$", "SELECT x$$z$$"},
		{"SELECT e'x'", "SELECT ee'x'"},
	} {
		a, la, _, _ := keyOf(seed, pair[0])
		b, lb, _, _ := keyOf(seed, pair[1])
		if a == b && la == lb {
			t.Errorf("keys of %q and %q: got equal %x, want different", pair[0], pair[1], a)
		}
	}
}

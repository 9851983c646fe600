package classify

import (
	"hash/maphash"
	"strings"
	"testing"
)

// fuzzClassifier is shared by all inputs of one fuzzing process, so that
// inputs also meet each other's cache entries.
var fuzzClassifier = New(Options{CacheSize: 512, WriteFunctions: []string{"audit"}})

// The appended statement carries no quote, dollar or comment closer, so no
// input can make it part of a literal that then closes; the newline ends a
// trailing -- comment.
const fuzzWrite = "\n; INSERT INTO t VALUES (1)"

// FuzzClassify: Classify never panics, and text holding a write is never a read
// (unless a replica hint asked for it). Seeds: testdata/fuzz/FuzzClassify.
func FuzzClassify(f *testing.F) {
	f.Add("SELECT 1")
	f.Fuzz(func(t *testing.T, sql string) {
		r := fuzzClassifier.Classify(sql)
		if r.Route != Read && r.Route != Write {
			t.Fatalf("Classify(%q): route %d out of range", sql, r.Route)
		}
		if r.Reason == "" {
			t.Fatalf("Classify(%q): empty reason", sql)
		}
		// A cached read must be a read by its own parse too: texts that share
		// a key must share a route. (A text pg_query cannot parse may share a
		// key with a read; the replica then reports the same syntax error.)
		if direct := decide(sql, r.Hint, fuzzClassifier.sets()); r.Route == Read && r.Kind&KindEmpty == 0 && direct.Route == Write && direct.Reason != reasonUnparsable {
			t.Fatalf("Classify(%q): cached read, but its parse says %s", sql, direct.Reason)
		}
		withWrite := sql + fuzzWrite
		got := fuzzClassifier.Classify(withWrite)
		if got.Route == Read && got.Hint != HintReplica {
			t.Fatalf("Classify(%q): got read (%s), want write", withWrite, got.Reason)
		}
		// The same without the cache: the parse alone must agree.
		if got := decide(withWrite, got.Hint, funcSets{}); got.Route == Read && got.Hint != HintReplica {
			t.Fatalf("decide(%q): got read (%s), want write", withWrite, got.Reason)
		}
	})
}

// FuzzNormalize: the scanner never panics, and texts that differ only in one
// numeric literal have the same form and key. Seeds: testdata/fuzz/FuzzNormalize.
func FuzzNormalize(f *testing.F) {
	f.Add("SELECT a FROM t WHERE b = 'x'")
	seed := maphash.MakeSeed()
	f.Fuzz(func(t *testing.T, sql string) {
		Normalize(sql)
		keyOf(seed, sql)
		for _, tmpl := range []string{"SELECT %s ", "/* c */ VALUES (%s) "} {
			a := strings.Replace(tmpl, "%s", "1", 1) + sql
			b := strings.Replace(tmpl, "%s", "123456.5e3", 1) + sql
			if na, nb := Normalize(a), Normalize(b); na != nb {
				t.Fatalf("Normalize(%q) = %q, Normalize(%q) = %q, want equal", a, na, b, nb)
			}
			ka, la, _, _ := keyOf(seed, a)
			kb, lb, _, _ := keyOf(seed, b)
			if ka != kb || la != lb {
				t.Fatalf("keys of %q and %q differ", a, b)
			}
		}
	})
}

package classify

import (
	"fmt"
	"hash/maphash"
	"testing"
)

const pgbenchSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"

// pgbenchQueries are pgbench -S queries with changing literals, as the simple
// protocol sends them.
func pgbenchQueries(n int) []string {
	qs := make([]string, n)
	for i := range qs {
		qs[i] = fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d;", 1+i*7919%100000)
	}
	return qs
}

// BenchmarkClassifyHit is the hot path: a cache hit for a query whose literal
// changes every call. It must report 0 allocs/op.
//
// Rejected alternatives:
//   - keying the cache on the exact text: every new literal misses and parses
//     (see BenchmarkClassifyCold);
//   - pg_query.Normalize or pg_query.Fingerprint as the key: each goes through
//     cgo and PostgreSQL's parser, costing microseconds, about what a parse does;
//   - building the normalized string and hashing it: one allocation per call;
//     keyOf hashes runs of the original text in place instead;
//   - FNV-1a byte by byte: no faster here, and unseeded, so collisions could be
//     aimed at; maphash is seeded per process;
//   - an LRU list (container/list): every hit moves list pointers under the
//     lock and every entry is a separate allocation; CLOCK only sets a bit;
//   - sync.Map: no bound and no eviction.
func BenchmarkClassifyHit(b *testing.B) {
	c := New(Options{})
	qs := pgbenchQueries(1024)
	c.Classify(qs[0])
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if c.Classify(qs[i&1023]).Route != Read {
			b.Fatal("want read")
		}
	}
}

// BenchmarkClassifyHitParallel is the hot path with every core classifying:
// the cache is sharded so that sessions rarely meet on one mutex.
func BenchmarkClassifyHitParallel(b *testing.B) {
	c := New(Options{})
	qs := pgbenchQueries(1024)
	c.Classify(qs[0])
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Classify(qs[i&1023])
			i++
		}
	})
}

// BenchmarkClassifyCold parses every call (the cache is off): the cost of a
// miss. Most of it is pg_query's protobuf decoding into Go structs.
//
// Rejected alternatives: pg_query.ParseToJSON decoded with encoding/json (slower
// and untyped); pg_query.Summary (it reports statement types and functions but
// not locking clauses or where a function sits, so it cannot prove a read); a
// hand-written walk of select nodes instead of the generic protoreflect walk
// (faster, but one missed field would route a write to a replica).
func BenchmarkClassifyCold(b *testing.B) {
	c := New(Options{CacheSize: -1})
	b.ReportAllocs()
	for b.Loop() {
		if c.Classify(pgbenchSelect).Route != Read {
			b.Fatal("want read")
		}
	}
}

// BenchmarkClassifyMiss is a miss through the cache: unique identifiers, so
// every call scans, parses, and inserts with eviction.
func BenchmarkClassifyMiss(b *testing.B) {
	c := New(Options{CacheSize: 1000})
	qs := make([]string, 1<<16)
	for i := range qs {
		qs[i] = fmt.Sprintf("SELECT abalance FROM pgbench_accounts_%d WHERE aid = 1;", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Classify(qs[i&(1<<16-1)])
	}
}

// BenchmarkNormalize measures the scanner alone: "key" is the path Classify
// takes (hash, no string), "string" builds the form for tools.
//
// Rejected alternative: regular expressions (forbidden for classification,
// and they cannot track nested comments or dollar-quote tags).
func BenchmarkNormalize(b *testing.B) {
	long := "/* app:web */ WITH x AS (SELECT a, b, c FROM t WHERE d = 'some text' AND e = E'esc\\'d' AND f IN (1, 2, 3, 4.5e6)) " +
		"SELECT x.a, y.$$b$$, $1 FROM x JOIN y ON x.a = y.a -- trailing\n WHERE z > 10 ORDER BY 1 LIMIT 50"
	for _, tc := range []struct{ name, sql string }{{"pgbench", pgbenchSelect}, {"long", long}} {
		b.Run("key/"+tc.name, func(b *testing.B) {
			seed := maphash.MakeSeed()
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.sql)))
			for b.Loop() {
				keyOf(seed, tc.sql)
			}
		})
		b.Run("string/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.sql)))
			for b.Loop() {
				Normalize(tc.sql)
			}
		})
	}
}

package router

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/pgswitch/pgswitch/router/classify"
)

func TestRouteTableCountsShapes(t *testing.T) {
	var rt routeTable
	cl := classify.New(classify.Options{})
	for i := range 3 {
		addSQL(&rt, cl, fmt.Sprintf("SELECT * FROM t WHERE id = %d", i), true, "read: SELECT")
	}
	addSQL(&rt, cl, "SELECT * FROM t WHERE id = 7", false, "read: SELECT; no fit replica, so the primary")
	addSQL(&rt, cl, "UPDATE t SET x = 'secret' WHERE id = 1", false, "write: UPDATE")
	got := map[string]uint64{}
	for i := range rt.shards {
		for k, rc := range rt.shards[i].byKey {
			got[fmt.Sprintf("%s|%v|%s", rc.query, k.replica, k.why)] = rc.n.Load()
			if len(rc.fingerprint) != 16 {
				t.Errorf("%q: fingerprint %q, want 16 hex digits", rc.query, rc.fingerprint)
			}
		}
	}
	want := map[string]uint64{
		"SELECT * FROM t WHERE id = ?|true|read: SELECT":                                  3,
		"SELECT * FROM t WHERE id = ?|false|read: SELECT; no fit replica, so the primary": 1,
		"UPDATE t SET x = ? WHERE id = ?|false|write: UPDATE":                             1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestRouteTableBounded(t *testing.T) {
	var rt routeTable
	cl := classify.New(classify.Options{})
	for i := range 3 * maxRoutes {
		addSQL(&rt, cl, fmt.Sprintf("SELECT c%d FROM t", i), true, "read: SELECT")
	}
	shapes, others := 0, uint64(0)
	for i := range rt.shards {
		shapes += len(rt.shards[i].byKey)
		others += rt.shards[i].others
	}
	if shapes > maxRoutes || uint64(shapes)+others != 3*maxRoutes {
		t.Fatalf("kept %d shapes and %d others, want at most %d shapes and all %d counted", shapes, others, maxRoutes, 3*maxRoutes)
	}
}

func TestRouteTableHitAllocatesNothing(t *testing.T) {
	var rt routeTable
	cl := classify.New(classify.Options{})
	sql := "SELECT a, b FROM t WHERE id = 42 AND name = 'x'"
	addSQL(&rt, cl, sql, true, "read: SELECT")
	if n := testing.AllocsPerRun(100, func() { addSQL(&rt, cl, sql, true, "read: SELECT") }); n != 0 {
		t.Fatalf("counting a known shape allocates %v times, want 0", n)
	}
}

// BenchmarkRouteTableHit is the per-unit cost SHOW ROUTES adds at a server
// assignment: a literal-free hash of the text and a sharded map update.
// Rejected: pg_query's fingerprint per unit (a parse, ~10 µs) and one
// mutex per database (contended by every session of the database).
func BenchmarkRouteTableHit(b *testing.B) {
	var rt routeTable
	cl := classify.New(classify.Options{})
	sql := "SELECT a, b FROM t WHERE id = 42 AND name = 'x'"
	addSQL(&rt, cl, sql, true, "read: SELECT")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			addSQL(&rt, cl, sql, true, "read: SELECT")
		}
	})
}

// addSQL counts one unit of sql in rt, as a session does with its shape.
func addSQL(rt *routeTable, cl *classify.Classifier, sql string, replica bool, why string) {
	rt.add(routeKey{shape: cl.ShapeKey(sql), replica: replica, why: why}, sql)
}

// TestRouteCountsOfSessions: sessions count on the line their last unit
// counted on when a unit repeats it, and look the line up otherwise. Four
// sessions at once, each unit of a random shape, route and reason (fixed
// seed); every line must end with exactly the units routed its way.
func TestRouteCountsOfSessions(t *testing.T) {
	var rt routeTable
	cl := classify.New(classify.Options{})
	sqls := []string{"SELECT * FROM t WHERE id = 1", "SELECT * FROM u WHERE id = 2", "UPDATE t SET x = 1"}
	whys := []string{"read: SELECT", "write: UPDATE"}
	thens := []string{"", thenNoReplica}
	type line struct {
		sql     int
		replica bool
		why     string
		then    string
	}
	models := make([]map[line]uint64, 4)
	var wg sync.WaitGroup
	for i := range models {
		models[i] = map[line]uint64{}
		wg.Add(1)
		go func(model map[line]uint64, seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			var last *routeCount
			l := line{}
			for range 5000 {
				if rng.IntN(3) == 0 { // a unit unlike the last
					l = line{rng.IntN(len(sqls)), rng.IntN(2) == 0, whys[rng.IntN(len(whys))], thens[rng.IntN(len(thens))]}
				}
				sql := sqls[l.sql]
				rt.count(&last, routeKey{shape: cl.ShapeKey(sql), replica: l.replica, why: l.why, then: l.then}, sql)
				model[l]++
			}
		}(models[i], uint64(i))
	}
	wg.Wait()
	want := map[string]uint64{}
	for _, m := range models {
		for l, n := range m {
			want[fmt.Sprintf("%s|%v|%s%s", classify.Normalize(sqls[l.sql]), l.replica, l.why, l.then)] += n
		}
	}
	got := map[string]uint64{}
	for i := range rt.shards {
		for k, rc := range rt.shards[i].byKey {
			got[fmt.Sprintf("%s|%v|%s%s", rc.query, k.replica, k.why, k.then)] = rc.n.Load()
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("SHOW ROUTES counts\n%v\nwant\n%v", got, want)
	}
}

package classify

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// memoTexts are texts of a few shapes, with literals, hints, a literal-
// sensitive one (EXPLAIN (ANALYZE n): its route depends on n) and a call to
// a function that SetVolatile makes a write.
func memoText(rng *rand.Rand) string {
	n := rng.IntN(100)
	switch rng.IntN(8) {
	case 0:
		return fmt.Sprintf("SELECT * FROM t WHERE id = %d", n)
	case 1:
		return fmt.Sprintf("/* pgswitch:primary */ SELECT * FROM t WHERE id = %d", n)
	case 2:
		return fmt.Sprintf("UPDATE t SET x = %d", n)
	case 3:
		return fmt.Sprintf("EXPLAIN (ANALYZE %d) SELECT * FROM t", n%2)
	case 4:
		return fmt.Sprintf("SELECT refresh_thing(%d)", n)
	case 5:
		return fmt.Sprintf("SELECT * FROM view_calling_nextval WHERE id = %d", n)
	case 6:
		return "  "
	}
	return fmt.Sprintf("SELECT a, b FROM u WHERE a > %d AND b = 'x%d'", n, n)
}

// TestMemoAgreesWithClassify: a session's Memo answers what the shared
// cache would, whatever came between: other shapes, literal-sensitive texts,
// SetVolatile and Remember. Two twin classifiers go through the same
// randomized steps (fixed seed), one asked through three memos taking
// turns, the other without: they must answer alike at every step.
func TestMemoAgreesWithClassify(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 3))
	c, twin := newTestClassifier(t, 0), newTestClassifier(t, 0)
	memos := make([]Memo, 3)
	hits := 0
	for step := 0; step < 5000; step++ {
		switch rng.IntN(40) {
		case 0:
			names := []string{"refresh_thing"}
			if rng.IntN(2) == 0 {
				names = nil
			}
			c.SetVolatile(names)
			twin.SetVolatile(names)
			continue
		case 1:
			sql, r := memoText(rng), Result{Route: Write, Reason: fmt.Sprintf("write: remembered at step %d", step)}
			c.Remember(sql, r)
			twin.Remember(sql, r)
			continue
		}
		m := &memos[rng.IntN(len(memos))]
		sql := memoText(rng)
		before := *m
		got := c.ClassifyMemo(m, sql)
		want := twin.Classify(sql)
		if got.Route != want.Route || got.Reason != want.Reason || got.Kind != want.Kind || got.Hint != want.Hint {
			t.Fatalf("step %d: %q from the memo: %v %q, without: %v %q", step, sql, got.Route, got.Reason, want.Route, want.Reason)
		}
		if got.Shape != c.ShapeKey(sql) {
			t.Fatalf("step %d: %q: shape %x, want %x", step, sql, got.Shape, c.ShapeKey(sql))
		}
		if before.key == m.key && before.c != nil {
			hits++
		}
	}
	if hits < 200 {
		t.Fatalf("the memo answered %d times: the test does not exercise it", hits)
	}
}

// TestMemoHitAllocatesNothing: a unit of the session's last shape costs no
// allocation, as a cache hit.
func TestMemoHitAllocatesNothing(t *testing.T) {
	c := New(Options{})
	var m Memo
	c.ClassifyMemo(&m, "SELECT abalance FROM pgbench_accounts WHERE aid = 1")
	if n := testing.AllocsPerRun(200, func() {
		c.ClassifyMemo(&m, "SELECT abalance FROM pgbench_accounts WHERE aid = 2")
	}); n != 0 {
		t.Fatalf("a memo hit allocates %v times, want 0", n)
	}
}

// TestMemoConcurrent: sessions classify with their own memos while the
// volatile set and remembered results change (for the race detector).
// Whatever a memo answers is a result of the text's own shape, with a reason.
func TestMemoConcurrent(t *testing.T) {
	c := New(Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			var m Memo
			for range 2000 {
				sql := memoText(rng)
				res := c.ClassifyMemo(&m, sql)
				if res.Shape != c.ShapeKey(sql) || res.Reason == "" {
					errs <- fmt.Errorf("%q: shape %x (want %x), reason %q", sql, res.Shape, c.ShapeKey(sql), res.Reason)
					return
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(99, 9))
	for i := range 200 {
		if i%2 == 0 {
			c.SetVolatile([]string{"refresh_thing"})
		} else {
			c.Remember(memoText(rng), Result{Route: Write, Reason: "write: remembered"})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

package router

import "testing"

// TestCheckOdds: reads are checked on a replica while checks pass; once
// most fail, only one read in probeEvery is, until they pass again.
func TestCheckOdds(t *testing.T) {
	var o checkOdds
	checked := func(n int) int {
		c := 0
		for range n {
			if o.worth() {
				c++
			}
		}
		return c
	}
	if c := checked(100); c != 100 {
		t.Fatalf("with no check failed yet, %d of 100 reads checked", c)
	}
	for range 15 {
		o.note(false)
	}
	if c := checked(160); c != 160/probeEvery {
		t.Fatalf("after a run of failed checks, %d of 160 reads checked, want %d probes", c, 160/probeEvery)
	}
	o.note(true) // one pass does not bring them back
	if o.worth() && o.worth() {
		t.Fatal("checks back after one pass")
	}
	for range 40 {
		o.note(true)
	}
	if c := checked(100); c != 100 {
		t.Fatalf("after checks pass again, %d of 100 reads checked", c)
	}
	// A steady third failing keeps them; two thirds stop them.
	for i := range 200 {
		o.note(i%3 != 0)
		if !o.worth() {
			t.Fatalf("checks stopped with one in three failing (miss %d/1024)", o.miss.Load())
		}
	}
	for i := range 200 {
		o.note(i%3 == 0)
	}
	if o.miss.Load() <= missAllowed {
		t.Fatalf("two in three failing leave the miss share at %d/1024", o.miss.Load())
	}
}

//go:build linux

package router

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestParkerTrims: free memory goes back to the operating system once
// trimAfter sessions parked, and not again within trimEvery.
func TestParkerTrims(t *testing.T) {
	var calls atomic.Int32
	done := make(chan struct{}, 4)
	old := trimMemory
	trimMemory = func() { calls.Add(1); done <- struct{}{} }
	defer func() { trimMemory = old }()

	var p parker
	p.sinceTrim.Store(trimAfter - 1)
	p.trim()
	if calls.Load() != 0 {
		t.Fatalf("trimmed after %d parks", trimAfter-1)
	}
	p.sinceTrim.Add(1)
	p.trim()
	<-done
	if calls.Load() != 1 || p.sinceTrim.Load() != 0 {
		t.Fatalf("after %d parks: %d trims, count %d", trimAfter, calls.Load(), p.sinceTrim.Load())
	}
	p.sinceTrim.Store(trimAfter)
	p.trim()
	if calls.Load() != 1 {
		t.Fatal("trimmed twice within trimEvery")
	}
	p.lastTrim = time.Now().Add(-trimEvery)
	p.trim()
	<-done
	if calls.Load() != 2 {
		t.Fatalf("%d trims once trimEvery passed, want 2", calls.Load())
	}
}

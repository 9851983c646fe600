package router

import (
	"runtime"
	"testing"
)

// sessionSink keeps the sessions TestSessionSize allocates reachable.
var sessionSink []*Session

// TestSessionSize: every idle client holds a Session; keep it within the
// 768-byte allocation size class (the next is 896). The heap's own count
// decides, as an object with pointers over 512 bytes carries an 8-byte
// header besides its fields.
func TestSessionSize(t *testing.T) {
	const n = 1000
	sessionSink = make([]*Session, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range sessionSink {
		sessionSink[i] = new(Session)
	}
	runtime.ReadMemStats(&after)
	sessionSink = nil
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 768 {
		t.Fatalf("a Session takes %d bytes of heap: more than the 768-byte size class", per)
	}
}

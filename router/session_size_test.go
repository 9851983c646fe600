package router

import (
	"testing"
	"unsafe"
)

// TestSessionSize: every idle client holds a Session; keep it within the
// 768-byte allocation size class it fits today (the next is 896).
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 768 {
		t.Fatalf("Session is %d bytes: more than the 768-byte size class", n)
	}
}

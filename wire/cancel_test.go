package wire

import "testing"

func TestPeerCancelKey(t *testing.T) {
	for _, peer := range []int{1, 2, 255, 256, 8191, 8192, MaxPeerID} {
		seen := map[CancelKey]bool{}
		for range 50 {
			k := NewPeerCancelKey(peer)
			if got := k.Peer(); got != peer {
				t.Fatalf("NewPeerCancelKey(%d).Peer() = %d, want %d", peer, got, peer)
			}
			if k.ProcessID == 0 || k.ProcessID > 1<<31-1 {
				t.Errorf("peer %d: got ProcessID %d, want within 1..2^31-1", peer, k.ProcessID)
			}
			if k.Issued() != k {
				t.Errorf("peer %d: a new key %+v is not in its issued form", peer, k)
			}
			if seen[k] {
				t.Errorf("peer %d: got key %+v twice in 50 draws", peer, k)
			}
			seen[k] = true
		}
	}
}

// A request forwarded from peer to peer keeps its peer id and its issued
// form, and runs out of hops after three forwards.
func TestCancelKeyForwarded(t *testing.T) {
	k := NewPeerCancelKey(42)
	issued := k
	for hop := 1; hop <= 3; hop++ {
		next, ok := k.Forwarded()
		if !ok {
			t.Fatalf("forward %d refused, want three forwards", hop)
		}
		if next == k || next.Peer() != 42 || next.Issued() != issued || next.ProcessID != issued.ProcessID {
			t.Fatalf("forward %d: got %+v from %+v, want peer 42, issued form %+v", hop, next, k, issued)
		}
		k = next
	}
	if _, ok := k.Forwarded(); ok {
		t.Errorf("a fourth forward of %+v was allowed, want none: hops left 0", k)
	}
}

func TestPeerCancelKeyZeroIsUnpeered(t *testing.T) {
	for _, peer := range []int{0, -1, MaxPeerID + 1} {
		k := NewPeerCancelKey(peer)
		if k.ProcessID == 0 || k.ProcessID > 1<<31-1 {
			t.Errorf("NewPeerCancelKey(%d): got ProcessID %d, want within 1..2^31-1", peer, k.ProcessID)
		}
	}
}

package pgmini

import (
	"testing"

	"github.com/pgswitch/pgswitch/wire"
)

func TestScannerSplits(t *testing.T) {
	// An answer of CommandComplete then ReadyForQuery, fed in every split
	// into two pieces: only the piece holding Z's last byte ends it.
	answer := append([]byte{'C', 0, 0, 0, 13}, "SELECT 1\x00"...)
	answer = wire.AppendReadyForQuery(answer, 'I')
	for cut := 0; cut <= len(answer); cut++ {
		var s Scanner
		first, second := s.Feed(answer[:cut]), s.Feed(answer[cut:])
		wantFirst := cut == len(answer)
		if first != wantFirst || second == wantFirst {
			t.Errorf("cut at %d: got %v, %v; want %v, %v", cut, first, second, wantFirst, !wantFirst)
		}
	}
}

func TestScannerBodylessZ(t *testing.T) {
	// A message of type Z with no body (not PostgreSQL's, but the scanner
	// reads headers only) ends an answer as soon as its header is in.
	var s Scanner
	if !s.Feed([]byte{'Z', 0, 0, 0, 4}) {
		t.Error("got false, want true")
	}
}

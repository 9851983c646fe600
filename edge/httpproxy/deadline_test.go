package httpproxy

import (
	"testing"
	"time"
)

// TestDeadlineArm: a deadline is set when none is, when the one set is
// earlier than wanted or later than wanted plus slack, and to want plus
// slack; zero and a slack of 0 are set exactly.
func TestDeadlineArm(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := time.Second
	for _, tt := range []struct {
		name   string
		cur    time.Time
		want   time.Time
		slack  time.Duration
		set    bool
		result time.Time
	}{
		{"none set", time.Time{}, t0, s, true, t0.Add(s)},
		{"within slack", t0.Add(s / 2), t0, s, false, t0.Add(s / 2)},
		{"at want", t0, t0, s, false, t0},
		{"at want plus slack", t0.Add(s), t0, s, false, t0.Add(s)},
		{"earlier than wanted", t0.Add(-time.Nanosecond), t0, s, true, t0.Add(s)},
		{"later than slack", t0.Add(s + 1), t0, s, true, t0.Add(s)},
		{"none wanted", t0, time.Time{}, s, true, time.Time{}},
		{"none wanted, none set", time.Time{}, time.Time{}, s, false, time.Time{}},
		{"exact", t0.Add(1), t0, 0, true, t0},
		{"exact, set", t0, t0, 0, false, t0},
	} {
		d := deadline{at: tt.cur}
		got, set := d.arm(tt.want, tt.slack)
		if set != tt.set || !got.Equal(tt.result) || !d.at.Equal(tt.result) {
			t.Errorf("%s: got %v, %v (recorded %v), want %v, %v", tt.name, got, set, d.at, tt.result, tt.set)
		}
	}
}

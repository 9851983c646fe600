package checkstate

import (
	"testing"
	"time"
)

func TestObserve(t *testing.T) {
	p := Params{Inter: time.Second, DownInter: 5 * time.Second, Fall: 3, Rise: 2}
	type step struct {
		ok     bool
		change Change
		up     bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first failure marks down at once", []step{
			{false, WentDown, false},
			{true, Unchanged, false},
			{true, WentUp, true},
		}},
		{"first success keeps up", []step{
			{true, Unchanged, true},
			{true, Unchanged, true},
		}},
		{"down after exactly fall failures", []step{
			{true, Unchanged, true},
			{false, Unchanged, true},
			{false, Unchanged, true},
			{false, WentDown, false},
			{false, Unchanged, false},
		}},
		{"a success resets the failure streak", []step{
			{true, Unchanged, true},
			{false, Unchanged, true},
			{false, Unchanged, true},
			{true, Unchanged, true},
			{false, Unchanged, true},
			{false, Unchanged, true},
			{false, WentDown, false},
		}},
		{"a failure resets the success streak", []step{
			{false, WentDown, false},
			{true, Unchanged, false},
			{false, Unchanged, false},
			{true, Unchanged, false},
			{true, WentUp, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(p)
			if !s.Up() || s.Checked() {
				t.Fatalf("new state: up %v checked %v, want up and unchecked", s.Up(), s.Checked())
			}
			for i, st := range tt.steps {
				if got := s.Observe(st.ok); got != st.change {
					t.Fatalf("step %d: change %d, want %d", i, got, st.change)
				}
				if s.Up() != st.up {
					t.Fatalf("step %d: up %v, want %v", i, s.Up(), st.up)
				}
				want := p.DownInter
				if st.up {
					want = p.Inter
				}
				if got := s.Interval(); got != want {
					t.Fatalf("step %d: interval %v, want %v", i, got, want)
				}
				if st.ok && (s.FailStreak() != 0 || s.OKStreak() == 0) || !st.ok && (s.OKStreak() != 0 || s.FailStreak() == 0) {
					t.Fatalf("step %d: streaks ok %d fail %d after ok=%v", i, s.OKStreak(), s.FailStreak(), st.ok)
				}
			}
		})
	}
}

func TestParamsChangeKeepsStreaks(t *testing.T) {
	s := New(Params{Inter: time.Second, DownInter: time.Second, Fall: 5, Rise: 5})
	s.Observe(true)
	s.Observe(false)
	s.Observe(false)
	s.Params.Fall = 3
	if got := s.Observe(false); got != WentDown {
		t.Fatalf("third failure after fall lowered to 3: change %d, want WentDown", got)
	}
}

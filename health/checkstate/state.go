package checkstate

import "time"

// Params are one server's check settings.
type Params struct {
	// Inter is the wait between checks while the server is up, DownInter
	// while it is down.
	Inter, DownInter time.Duration
	// Fall consecutive failures mark an up server down; Rise consecutive
	// successes mark a down server up.
	Fall, Rise int
}

// Change is what one check result did to the state.
type Change uint8

const (
	// Unchanged: the server stays up, or stays down.
	Unchanged Change = iota
	// WentDown: the server was up and is now down.
	WentDown
	// WentUp: the server was down and is now up.
	WentUp
)

// State is one server's check state. A new server counts as up until its
// first check, which decides at once: a first failure marks it down without
// waiting for fall failures, so that a server which never answered takes no
// traffic for fall × inter. After that, only streaks change it.
//
// The zero State is not usable; make one with New. A State is not safe for
// concurrent use: its owner serializes Observe.
type State struct {
	// Params may be replaced between checks (a reload); the streaks so far
	// are kept.
	Params Params

	checked    bool
	up         bool
	okStreak   int
	failStreak int
}

// New returns the state of a server not checked yet: up.
func New(p Params) State {
	return State{Params: p, up: true}
}

// Observe applies the result of one check.
func (s *State) Observe(ok bool) Change {
	first := !s.checked
	s.checked = true
	if !ok {
		s.failStreak++
		s.okStreak = 0
		if s.up && (first || s.failStreak >= s.Params.Fall) {
			s.up = false
			return WentDown
		}
		return Unchanged
	}
	s.okStreak++
	s.failStreak = 0
	if !s.up && s.okStreak >= s.Params.Rise {
		s.up = true
		return WentUp
	}
	return Unchanged
}

// Up reports whether the server is up.
func (s *State) Up() bool { return s.up }

// Checked reports whether any check result was observed.
func (s *State) Checked() bool { return s.checked }

// OKStreak is the number of consecutive successful checks so far.
func (s *State) OKStreak() int { return s.okStreak }

// FailStreak is the number of consecutive failed checks so far.
func (s *State) FailStreak() int { return s.failStreak }

// Interval is how long to wait before the next check: Inter while up,
// DownInter while down.
func (s *State) Interval() time.Duration {
	if s.up {
		return s.Params.Inter
	}
	return s.Params.DownInter
}

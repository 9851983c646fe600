package health

import (
	"fmt"
	"time"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/health/checkstate"
)

// Probe is what one check of a server learned.
type Probe struct {
	// Err is set when the server could not be reached or queried.
	Err error
	// InRecovery is pg_is_in_recovery(): true on a hot standby.
	InRecovery bool
	// LSN is the primary's current WAL position or a replica's replay
	// position, in bytes.
	LSN int64
	// ReplayAge is how long ago a replica replayed its last transaction,
	// in seconds (0 on a primary).
	ReplayAge float64
	// Timeline is the timeline a primary writes (0 on a replica); SystemID
	// is pg_control_system()'s, 0 when the check user may not read it.
	Timeline int64
	SystemID int64
}

// role is the role the probe says the server has.
func (p Probe) role() config.Role {
	if p.InRecovery {
		return config.RoleReplica
	}
	return config.RolePrimary
}

// params are one server's HAProxy-style check settings.
type params = checkstate.Params

func paramsOf(srv *config.Server) params {
	return params{Inter: srv.Inter, DownInter: srv.DownInter, Fall: srv.Fall, Rise: srv.Rise}
}

// eventKind is a change worth a log line and a counter.
type eventKind uint8

const (
	eventDown eventKind = iota + 1
	eventUp
	eventRole
)

// event is a change observe made to a server.
type event struct {
	kind   eventKind
	addr   string
	role   config.Role
	reason string
}

// server is the state machine of one server: up and down as checkstate
// decides (after rise consecutive successful checks, fall consecutive
// failures), and a new role only after rise consecutive checks report it.
// The first check decides at once: until then the configured role is only
// a hint.
type server struct {
	addr  string
	check checkstate.State

	role  config.Role
	since time.Time
	// newRole is a role reported by roleStreak consecutive checks while the
	// server is up in another role.
	newRole    config.Role
	roleStreak int
	last       Probe  // the last successful probe
	lastErr    string // the last failure, for the reason of a down server
	lagging    bool   // excluded for lag in the last evaluation
	counts     Counts
}

func newServer(addr string, p params, hint config.Role, now time.Time) *server {
	return &server{addr: addr, check: checkstate.New(p), role: hint, since: now}
}

// up reports whether the server is up.
func (s *server) up() bool { return s.check.Up() }

// observe applies one probe taken at now.
func (s *server) observe(pr Probe, now time.Time) (ev event, changed bool) {
	s.counts.Checks++
	first := !s.check.Checked()
	change := s.check.Observe(pr.Err == nil)
	if pr.Err != nil {
		s.counts.Failures++
		s.roleStreak = 0
		s.lastErr = pr.Err.Error()
		if change == checkstate.WentDown {
			s.since = now
			s.counts.MarkedDown++
			reason := fmt.Sprintf("%d failed checks: %s", s.check.FailStreak(), s.lastErr)
			if first {
				reason = "first check failed: " + s.lastErr
			}
			return event{kind: eventDown, addr: s.addr, role: s.role, reason: reason}, true
		}
		return event{}, false
	}
	s.last = pr
	got := pr.role()
	switch {
	case first:
		old := s.role
		s.role = got
		if old != got {
			s.since = now
			return event{kind: eventRole, addr: s.addr, role: got, reason: fmt.Sprintf("first check: pg_is_in_recovery() = %t (configured as %s)", pr.InRecovery, roleName(old))}, true
		}
		return event{}, false
	case change == checkstate.WentUp:
		s.role = got
		s.since = now
		s.roleStreak = 0
		s.counts.MarkedUp++
		return event{kind: eventUp, addr: s.addr, role: got, reason: fmt.Sprintf("%d successful checks", s.check.OKStreak())}, true
	case !s.check.Up():
		return event{}, false
	case got == s.role:
		s.roleStreak = 0
		return event{}, false
	}
	if got != s.newRole {
		s.newRole, s.roleStreak = got, 0
	}
	s.roleStreak++
	if s.roleStreak < s.check.Params.Rise {
		return event{}, false
	}
	old := s.role
	s.role = got
	s.since = now
	s.roleStreak = 0
	s.counts.RoleChanges++
	return event{kind: eventRole, addr: s.addr, role: got, reason: fmt.Sprintf("was %s; %d checks report pg_is_in_recovery() = %t", roleName(old), s.check.Params.Rise, pr.InRecovery)}, true
}

// interval is how long to wait before the next check.
func (s *server) interval() time.Duration {
	return s.check.Interval()
}

func roleName(r config.Role) string {
	if r == config.RoleUnknown {
		return "unknown"
	}
	return string(r)
}

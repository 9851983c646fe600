package health

import (
	"errors"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/config"
)

var (
	okPrimary = Probe{InRecovery: false, LSN: 1000, Timeline: 1, SystemID: 7}
	okReplica = Probe{InRecovery: true, LSN: 1000, SystemID: 7}
	failed    = Probe{Err: errors.New("connection refused")}
)

// step is one check of a state machine test: the probe, and what the
// server must look like afterwards.
type step struct {
	probe  Probe
	up     bool
	role   config.Role
	event  eventKind // 0: none
	waitUp bool      // interval must be inter (else downinter)
}

func TestServerStateMachine(t *testing.T) {
	p := params{Inter: time.Second, DownInter: 5 * time.Second, Fall: 3, Rise: 2}
	tests := []struct {
		name  string
		hint  config.Role
		steps []step
	}{
		{"first check decides: down at once", config.RolePrimary, []step{
			{failed, false, config.RolePrimary, eventDown, false},
			{okPrimary, false, config.RolePrimary, 0, false},
			{okPrimary, true, config.RolePrimary, eventUp, true},
		}},
		{"first check corrects the role hint", config.RolePrimary, []step{
			{okReplica, true, config.RoleReplica, eventRole, true},
		}},
		{"down after fall failures, up after rise successes", config.RoleReplica, []step{
			{okReplica, true, config.RoleReplica, 0, true},
			{failed, true, config.RoleReplica, 0, true},
			{failed, true, config.RoleReplica, 0, true},
			{failed, false, config.RoleReplica, eventDown, false},
			{failed, false, config.RoleReplica, 0, false},
			{okReplica, false, config.RoleReplica, 0, false},
			{okReplica, true, config.RoleReplica, eventUp, true},
		}},
		{"a success resets the failure streak", config.RoleReplica, []step{
			{okReplica, true, config.RoleReplica, 0, true},
			{failed, true, config.RoleReplica, 0, true},
			{failed, true, config.RoleReplica, 0, true},
			{okReplica, true, config.RoleReplica, 0, true},
			{failed, true, config.RoleReplica, 0, true},
			{failed, true, config.RoleReplica, 0, true},
			{failed, false, config.RoleReplica, eventDown, false},
		}},
		{"a failure resets the success streak", config.RoleReplica, []step{
			{failed, false, config.RoleReplica, eventDown, false},
			{okReplica, false, config.RoleReplica, 0, false},
			{failed, false, config.RoleReplica, 0, false},
			{okReplica, false, config.RoleReplica, 0, false},
			{okReplica, true, config.RoleReplica, eventUp, true},
		}},
		{"promotion is believed after rise checks", config.RoleReplica, []step{
			{okReplica, true, config.RoleReplica, 0, true},
			{okPrimary, true, config.RoleReplica, 0, true},
			{okPrimary, true, config.RolePrimary, eventRole, true},
			{okPrimary, true, config.RolePrimary, 0, true},
		}},
		{"a flapping role report changes nothing", config.RoleReplica, []step{
			{okReplica, true, config.RoleReplica, 0, true},
			{okPrimary, true, config.RoleReplica, 0, true},
			{okReplica, true, config.RoleReplica, 0, true},
			{okPrimary, true, config.RoleReplica, 0, true},
			{failed, true, config.RoleReplica, 0, true},
			{okPrimary, true, config.RoleReplica, 0, true},
			{okPrimary, true, config.RolePrimary, eventRole, true},
		}},
		{"a server that comes back takes its new role", config.RolePrimary, []step{
			{okPrimary, true, config.RolePrimary, 0, true},
			{failed, true, config.RolePrimary, 0, true},
			{failed, true, config.RolePrimary, 0, true},
			{failed, false, config.RolePrimary, eventDown, false},
			{okReplica, false, config.RolePrimary, 0, false},
			{okReplica, true, config.RoleReplica, eventUp, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			s := newServer("127.0.0.1:5432", p, tt.hint, clock)
			lastChange := clock
			for i, st := range tt.steps {
				clock = clock.Add(s.interval())
				ev, changed := s.observe(st.probe, clock)
				if changed != (st.event != 0) || ev.kind != st.event {
					t.Fatalf("step %d: event %d (changed %v), want %d", i, ev.kind, changed, st.event)
				}
				if s.up() != st.up || s.role != st.role {
					t.Fatalf("step %d: up %v role %q, want up %v role %q", i, s.up(), s.role, st.up, st.role)
				}
				if changed {
					if ev.reason == "" || ev.addr != s.addr {
						t.Fatalf("step %d: event %+v lacks a reason or address", i, ev)
					}
					lastChange = clock
				}
				if s.since != lastChange {
					t.Fatalf("step %d: since %v, want %v (the last change)", i, s.since, lastChange)
				}
				want := p.DownInter
				if st.waitUp {
					want = p.Inter
				}
				if got := s.interval(); got != want {
					t.Fatalf("step %d: next check in %v, want %v", i, got, want)
				}
			}
			var downs, ups, failures uint64
			for _, st := range tt.steps {
				switch st.event {
				case eventDown:
					downs++
				case eventUp:
					ups++
				}
				if st.probe.Err != nil {
					failures++
				}
			}
			c := s.counts
			if c.Checks != uint64(len(tt.steps)) || c.Failures != failures || c.MarkedDown != downs || c.MarkedUp != ups {
				t.Fatalf("counts %+v, want %d checks, %d failures, %d down, %d up", c, len(tt.steps), failures, downs, ups)
			}
		})
	}
}

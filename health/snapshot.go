package health

import (
	"time"

	"github.com/pgswitch/pgswitch/config"
)

// Status is one server as the last checks saw it.
type Status struct {
	Addr string
	Role config.Role
	// Up is false once the server failed enough checks (or connections).
	Up bool
	// Excluded servers answer checks but must get no traffic: the losing
	// side of a split brain, or a server of another cluster.
	Excluded bool
	// Reason says why the server is down, excluded or lagging ("" when fit).
	Reason string
	// LagBytes and LagSeconds are a replica's distance behind the primary.
	LagBytes   int64
	LagSeconds float64
	// Lagging is true while a replica is beyond max_replica_lag.
	Lagging bool
	// Since is when Up or Role last changed.
	Since time.Time
	// Timeline and SystemID as the server last reported them (0: unknown).
	Timeline int64
	SystemID int64
	Counts   Counts
}

// Usable reports whether the server may get traffic of its role.
func (s Status) Usable() bool { return s.Up && !s.Excluded }

// Counts are cumulative events of one server, for the admin console and metrics.
type Counts struct {
	Checks        uint64 // checks run
	Failures      uint64 // checks that failed
	MarkedDown    uint64
	MarkedUp      uint64
	RoleChanges   uint64
	LagExclusions uint64 // times the replica was excluded for lag
}

// Snapshot is an immutable view of every server, keyed by address.
type Snapshot struct {
	Servers map[string]Status
	// Taken is when the snapshot was made.
	Taken time.Time
}

// Static returns the snapshot configuration alone implies: every server up
// in its configured role. It stands until the first health checks.
func Static(cfg *config.Config) *Snapshot {
	s := &Snapshot{Servers: map[string]Status{}, Taken: time.Now()}
	for addr, role := range hintedRoles(cfg) {
		s.Servers[addr] = Status{Addr: addr, Role: role, Up: true, Since: s.Taken}
	}
	return s
}

// hintedRoles returns the role of each server as the configuration hints it.
func hintedRoles(cfg *config.Config) map[string]config.Role {
	roles := map[string]config.Role{}
	for _, db := range cfg.Databases {
		hasPrimary := false
		for _, srv := range db.Servers {
			hasPrimary = hasPrimary || srv.Role == config.RolePrimary
		}
		for i, srv := range db.Servers {
			role := srv.Role
			if role == config.RoleUnknown {
				// Without hints the first server is taken for the primary.
				role = config.RoleReplica
				if i == 0 && !hasPrimary {
					role = config.RolePrimary
				}
			}
			if _, seen := roles[srv.Addr()]; !seen {
				roles[srv.Addr()] = role
			}
		}
	}
	return roles
}

// Get returns the status of addr; an unknown server is down.
func (s *Snapshot) Get(addr string) Status {
	st, ok := s.Servers[addr]
	if !ok {
		return Status{Addr: addr}
	}
	return st
}

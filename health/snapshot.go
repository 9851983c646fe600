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
	// LagBytes and LagSeconds are a replica's distance behind the primary.
	LagBytes   int64
	LagSeconds float64
	// Lagging is true while a replica is beyond max_replica_lag.
	Lagging bool
	// Since is when Up or Role last changed.
	Since time.Time
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
			s.Servers[srv.Addr()] = Status{Addr: srv.Addr(), Role: role, Up: true, Since: s.Taken}
		}
	}
	return s
}

// Get returns the status of addr; an unknown server is down.
func (s *Snapshot) Get(addr string) Status {
	st, ok := s.Servers[addr]
	if !ok {
		return Status{Addr: addr}
	}
	return st
}

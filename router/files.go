package router

import (
	"github.com/pgswitch/pgswitch/config"
)

// FileBudget is how many file descriptors a router may hold at once under
// a configuration, and what for.
type FileBudget struct {
	// Clients: pool.max_client_conn, and the admin console's reserve.
	Clients int
	// Startup: connections still in their startup phase (pool.max_startup_conn).
	Startup int
	// Servers: server connections every pool may open (pool sizes for
	// every database, user and server, within each server's maxconn), and
	// those of health checks, replay polls and catalog reads.
	Servers int
	// Own: the process's own (standard streams, the network poller,
	// listeners, metrics scrapes).
	Own int
}

// ownFiles is what the process holds besides connections, with room to spare.
const ownFiles = 16

// Total is the sum of the budget.
func (b FileBudget) Total() int { return b.Clients + b.Startup + b.Servers + b.Own }

// FilesNeeded returns the most file descriptors a router on cfg may hold
// at once. Server connections count as if every user used every database.
func FilesNeeded(cfg *config.Config) FileBudget {
	b := FileBudget{
		Clients: cfg.Pool.MaxClientConn + adminReserve,
		Startup: cfg.Pool.MaxStartupConn,
		Own:     ownFiles,
	}
	pools := map[string]int{}   // by server address: pool sizes summed
	maxConn := map[string]int{} // by server address: the smallest maxconn given
	for _, db := range cfg.Databases {
		b.Servers++ // a catalog read on the primary (volatile functions)
		for _, srv := range db.Servers {
			addr := srv.Addr()
			for _, u := range cfg.Users {
				pools[addr] += cfg.PoolSizeFor(db, u)
			}
			if m := srv.MaxConn; m > 0 && (maxConn[addr] == 0 || m < maxConn[addr]) {
				maxConn[addr] = m
			}
		}
	}
	for addr, n := range pools {
		if m := maxConn[addr]; m > 0 {
			n = min(n, m)
		}
		b.Servers += n + 2 // the health check's connection and the replay poll's
	}
	return b
}

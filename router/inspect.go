package router

import (
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/health"
	"github.com/pgswitch/pgswitch/pool"
)

// Snapshot is what the router holds at one moment, for the admin console
// and metrics: values, not the live objects. Its parts are read one after
// another, not under one lock, so that no session waits for it; counts in
// different parts may differ by work that ran in between.
type Snapshot struct {
	Config   *config.Config
	Topology *health.Snapshot
	Started  time.Time // when the router was made
	Clients  []ClientInfo
	Pools    []PoolInfo // by key (pool.Key.String)
	// Databases has every configured database, and any other whose name a
	// pool or a client still carries (after a reload removed it).
	Databases map[string]DatabaseInfo
	Servers   map[string]ServerCounts // by server address
	Routes    []RouteStat             // most frequent first
}

// PoolInfo describes one pool of server connections.
type PoolInfo struct {
	Key pool.Key
	// Ref tells the pool apart from a later one of the same key (its
	// address, as PgBouncer's ptr column).
	Ref     string
	Stats   pool.Stats
	Conns   []ServerConn  // oldest first
	MaxWait time.Duration // how long its oldest waiter has waited
	// Busy is how long its connections were given to clients, over
	// Releases; Query how long servers took to answer, over Batches.
	Busy, Query       time.Duration
	Releases, Batches uint64
	Waits             pool.WaitHistogram
	Reconnecting      int // connections RECONNECT marked, still open
}

// ServerConn describes one server connection.
type ServerConn struct {
	pool.ConnInfo
	ClientAddr net.Addr // of the linked client; nil when none
}

// DatabaseInfo is the state and counts of one database.
type DatabaseInfo struct {
	Paused   bool // by PAUSE or KILL
	Disabled bool // by DISABLE
	Stats    DatabaseCounts
}

// DatabaseCounts are the values of DatabaseStats at one moment.
type DatabaseCounts struct {
	Assignments, Queries, Reads, Writes, Received, Sent uint64
	ClientParses, ServerParses, Binds                   uint64
	CausalWaits, CausalPrimary, CausalChecked           uint64
	CausalBehind                                        uint64
}

// ServerCounts are the units of work routed to one server.
type ServerCounts struct {
	Reads, Writes uint64
}

// Inspect returns a snapshot of the router. It takes each pool's and
// session's lock briefly, one at a time; it is for the console and
// metrics, not the hot path.
func (r *Router) Inspect() *Snapshot {
	snap := &Snapshot{
		Config:    r.Config(),
		Topology:  r.Topology(),
		Started:   r.admin.started,
		Clients:   r.Clients(),
		Databases: map[string]DatabaseInfo{},
		Servers:   map[string]ServerCounts{},
		Routes:    r.Routes(0),
	}
	pools := r.pools.Pools()
	sort.Slice(pools, func(i, j int) bool { return pools[i].Key().String() < pools[j].Key().String() })
	snap.Pools = make([]PoolInfo, 0, len(pools))
	for _, p := range pools {
		snap.Pools = append(snap.Pools, inspectPool(p))
	}
	for name := range snap.Config.Databases {
		snap.Databases[name] = DatabaseInfo{Stats: r.Stats(name).load()}
	}
	for _, p := range snap.Pools {
		snap.Databases[p.Key.Database] = snap.Databases[p.Key.Database]
	}
	for _, c := range snap.Clients {
		snap.Databases[c.Database] = snap.Databases[c.Database]
	}
	r.admin.mu.Lock()
	for name, db := range snap.Databases {
		db.Disabled = r.admin.disabled[name]
		snap.Databases[name] = db
	}
	r.admin.mu.Unlock()
	for name, db := range snap.Databases {
		db.Paused = r.pools.DatabasePaused(name)
		snap.Databases[name] = db
	}
	for addr, c := range *r.counters.Load() {
		snap.Servers[addr] = ServerCounts{Reads: c.Reads.Load(), Writes: c.Writes.Load()}
	}
	return snap
}

func inspectPool(p *pool.Pool) PoolInfo {
	info := PoolInfo{Key: p.Key(), Ref: fmt.Sprintf("%p", p), Stats: p.Stats(), MaxWait: p.MaxWait(),
		Waits: p.WaitHistogram(), Reconnecting: p.Reconnecting()}
	info.Busy, info.Releases = p.BusyTime()
	info.Query, info.Batches = p.QueryTime()
	conns := p.Conns()
	sort.Slice(conns, func(i, j int) bool { return conns[i].Created.Before(conns[j].Created) })
	info.Conns = make([]ServerConn, len(conns))
	for i, c := range conns {
		info.Conns[i].ConnInfo = c
		if c.Client != nil {
			info.Conns[i].ClientAddr = c.Client.Conn().RemoteAddr()
		}
	}
	return info
}

// load reads the counts.
func (s *DatabaseStats) load() DatabaseCounts {
	return DatabaseCounts{
		Assignments: s.Assignments.Load(), Queries: s.Queries.Load(), Reads: s.Reads.Load(),
		Writes: s.Writes.Load(), Received: s.Received.Load(), Sent: s.Sent.Load(),
		ClientParses: s.ClientParses.Load(), ServerParses: s.ServerParses.Load(), Binds: s.Binds.Load(),
		CausalWaits: s.CausalWaits.Load(), CausalPrimary: s.CausalPrimary.Load(),
		CausalChecked: s.CausalChecked.Load(), CausalBehind: s.CausalBehind.Load(),
	}
}

package router

import (
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/internal/rawsock"
	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/wire"
)

// DatabaseStats count the work of one database since pgswitch started.
type DatabaseStats struct {
	Assignments atomic.Uint64 // units of work that took a server connection
	Queries     atomic.Uint64 // units of work: simple Queries and extended batches
	Reads       atomic.Uint64 // units routed as reads
	Writes      atomic.Uint64 // units routed as writes
	Received    atomic.Uint64 // bytes from clients
	Sent        atomic.Uint64 // bytes to clients
	// ClientParses are named Parses from clients; ServerParses the Parses
	// sent to servers (theirs, or pgswitch's preparing on demand); Binds of
	// named statements.
	ClientParses atomic.Uint64
	ServerParses atomic.Uint64
	Binds        atomic.Uint64
	// CausalWaits are reads that waited for a replica to replay the writes
	// they must see, and then ran there; CausalPrimary reads that went to
	// the primary instead (none caught up within causal_wait, or a write's
	// position was unknown).
	CausalWaits   atomic.Uint64
	CausalPrimary atomic.Uint64
	// CausalChecked are reads sent to a replica not yet known to have
	// replayed what they must see, behind a check of its position that
	// found it had; CausalBehind those the check found behind, which then
	// waited or went to the primary (and count there too).
	CausalChecked atomic.Uint64
	CausalBehind  atomic.Uint64
}

// dbCounters are one database's statistics; they outlive reloads.
type dbCounters struct {
	stats  DatabaseStats
	routes routeTable
}

// countersFor returns the counters of database name, made on first use.
func (r *Router) countersFor(name string) *dbCounters {
	r.admin.mu.Lock()
	defer r.admin.mu.Unlock()
	if r.admin.counters == nil {
		r.admin.counters = map[string]*dbCounters{}
	}
	c := r.admin.counters[name]
	if c == nil {
		c = &dbCounters{}
		r.admin.counters[name] = c
	}
	return c
}

// Stats returns the statistics of database name.
func (r *Router) Stats(name string) *DatabaseStats { return &r.countersFor(name).stats }

// Started is when the router was made.
func (r *Router) Started() time.Time { return r.admin.started }

// count records a unit of work routed to addr, for the server and for the
// session's database.
func (s *Session) count(addr string, read bool) { s.countN(addr, read, 1) }

// uncount takes back the count of a unit that runs again elsewhere (its
// answer never reached the client), so that it counts once.
func (s *Session) uncount(addr string, read bool) { s.countN(addr, read, ^uint64(0)) }

func (s *Session) countN(addr string, read bool, n uint64) {
	s.r.count(addr, read, n)
	st := &s.dbs.counters.stats
	st.Queries.Add(n)
	if read {
		st.Reads.Add(n)
	} else {
		st.Writes.Add(n)
	}
}

// routed records a unit of work that took server connection c, decided by
// d, starting with sql of the given shape (classify.Result.Shape; 0: not
// known): its counts and its line in SHOW ROUTES.
func (s *Session) routed(c *pool.Conn, d decision, sql string, shape uint64) {
	s.count(c.Addr(), d.read)
	s.dbs.counters.stats.Assignments.Add(1)
	if sql == "" {
		return // a unit that names no statement pgswitch knows
	}
	if shape == 0 {
		shape = s.dbs.classifier.ShapeKey(sql)
	}
	s.dbs.counters.routes.count(&s.route, routeKey{shape: shape, replica: s.curRead, why: d.why, then: d.then}, sql)
}

// maxRoutes bounds the query shapes SHOW ROUTES keeps per database; shapes
// beyond are counted together.
const maxRoutes = 1000

// routeKey is one line of SHOW ROUTES.
type routeKey struct {
	shape     uint64
	replica   bool
	why, then string // decision's
}

// routeShards split a database's route table so that sessions counting
// different shapes do not contend on one mutex.
const routeShards = 16

type routeTable struct {
	shards [routeShards]routeShard
}

type routeShard struct {
	mu     sync.Mutex
	byKey  map[routeKey]*routeCount
	others uint64 // units of shapes beyond the shard's share of maxRoutes
}

// routeCount is a line of SHOW ROUTES. A session keeps the one its last
// unit counted on (Session.route): lines are never removed, and key never
// changes.
type routeCount struct {
	key         routeKey
	fingerprint string // pg_query's, hex; "" when it cannot parse the text
	query       string // literal-free text
	n           atomic.Uint64
}

// count counts one unit of sql on line k for a session whose last unit
// counted on *last, and leaves k's line in *last. Units of a session mostly
// repeat one line: that one counts without a lookup or a lock.
func (t *routeTable) count(last **routeCount, k routeKey, sql string) {
	if rc := *last; rc != nil && rc.key == k {
		rc.n.Add(1)
		return
	}
	*last = t.add(k, sql)
}

// add counts one unit of sql on line k, and returns the line (nil: counted
// among other shapes). Counting a known shape allocates nothing.
func (t *routeTable) add(k routeKey, sql string) *routeCount {
	return t.shards[k.shape%routeShards].add(k, sql)
}

func (t *routeShard) add(k routeKey, sql string) *routeCount {
	t.mu.Lock()
	if rc := t.byKey[k]; rc != nil {
		rc.n.Add(1)
		t.mu.Unlock()
		return rc
	}
	full := len(t.byKey) >= maxRoutes/routeShards
	if full {
		t.others++
	}
	t.mu.Unlock()
	if full {
		return nil
	}
	// First sight of the shape: describe it outside the lock (a parse).
	rc := &routeCount{key: k, query: classify.Normalize(sql)}
	if fp, err := classify.Fingerprint(sql); err == nil {
		rc.fingerprint = fmtHex(fp)
	}
	t.mu.Lock()
	if t.byKey == nil {
		t.byKey = map[routeKey]*routeCount{}
	}
	if old := t.byKey[k]; old != nil {
		rc = old
	} else {
		t.byKey[k] = rc
	}
	rc.n.Add(1)
	t.mu.Unlock()
	return rc
}

func fmtHex(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// RouteStat is one line of SHOW ROUTES: a query shape, where it went and why.
type RouteStat struct {
	Database    string
	Fingerprint string // pg_query fingerprint, hex ("" if pg_query cannot parse it)
	Query       string // the text without its literals
	Route       string // "primary" or "replica"
	Rule        string // the routing rule that decided
	Count       uint64
}

// Routes returns the most frequent query shapes of every database, most
// frequent first, at most limit (0: all).
func (r *Router) Routes(limit int) []RouteStat {
	r.admin.mu.Lock()
	names := make([]string, 0, len(r.admin.counters))
	for name := range r.admin.counters {
		names = append(names, name)
	}
	r.admin.mu.Unlock()
	var out []RouteStat
	for _, name := range names {
		var others uint64
		rt := &r.countersFor(name).routes
		for i := range rt.shards {
			t := &rt.shards[i]
			t.mu.Lock()
			for k, rc := range t.byKey {
				route := "primary"
				if k.replica {
					route = "replica"
				}
				out = append(out, RouteStat{Database: name, Fingerprint: rc.fingerprint, Query: rc.query,
					Route: route, Rule: k.why + k.then, Count: rc.n.Load()})
			}
			others += t.others
			t.mu.Unlock()
		}
		if others > 0 {
			out = append(out, RouteStat{Database: name, Query: "(other shapes)", Count: others})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		if out[i].Database != out[j].Database {
			return out[i].Database < out[j].Database
		}
		return out[i].Query < out[j].Query
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// clientConn is a client connection that counts its bytes for its
// database's statistics and remembers when it was made.
type clientConn struct {
	net.Conn
	stats     *DatabaseStats
	connected time.Time
}

func (c *clientConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.stats.Received.Add(uint64(n))
	return n, err
}

func (c *clientConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.stats.Sent.Add(uint64(n))
	return n, err
}

// Unwrap returns the connection whose traffic c counts.
func (c *clientConn) Unwrap() net.Conn { return c.Conn }

// countBytes wraps a client connection of database db so that its traffic
// is counted.
func (r *Router) countBytes(conn net.Conn, db string) net.Conn {
	if r.Config().Databases[db] == nil {
		return conn
	}
	return &clientConn{Conn: rawsock.Wrap(conn), stats: r.Stats(db), connected: time.Now()}
}

// Parked is how many idle clients wait without a goroutine of their own.
func (r *Router) Parked() int { return r.parker.parked() }

// ClientInfo describes one client session for SHOW CLIENTS.
type ClientInfo struct {
	User, Database  string
	ApplicationName string
	Addr, LocalAddr net.Addr
	Connected       time.Time
	Mode            config.PoolMode
	// Server is the address of the linked server connection ("" when none).
	Server    string
	ServerPID uint32
	Pinned    bool // keeps its server connection for the session
	Waiting   bool // queued for a server connection (or for RESUME)
	Key       wire.CancelKey
}

// Clients describes every client session (not the admin console's).
func (r *Router) Clients() []ClientInfo {
	r.mu.Lock()
	sessions := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		sessions = append(sessions, s)
	}
	r.mu.Unlock()
	out := make([]ClientInfo, 0, len(sessions))
	for _, s := range sessions {
		nc := s.client.Conn()
		ci := ClientInfo{User: s.names.user, Database: s.names.database,
			ApplicationName: s.names.app, Addr: nc.RemoteAddr(), LocalAddr: nc.LocalAddr(),
			Mode: s.mode, Key: s.key, Waiting: s.queue.waiting.Load()}
		if cc, ok := nc.(*clientConn); ok {
			ci.Connected = cc.connected
		}
		if c := s.server.Load(); c != nil && c.LinkedTo(s.client) {
			ci.Server = c.Addr()
			ci.ServerPID = c.PID()
			ci.Pinned = s.mode == config.PoolModeSession
		}
		// Pinned by session state that cannot be replayed elsewhere.
		ci.Pinned = ci.Pinned || s.state.Pinned() != ""
		out = append(out, ci)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Connected.Before(out[j].Connected) })
	return out
}

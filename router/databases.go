package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/health"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/track"
)

// dbState is what sessions of one database share.
type dbState struct {
	classifier *classify.Classifier
	lb         balancer
	counters   *dbCounters // statistics, kept across reloads

	// epoch counts catalog changes seen through pgswitch (or noticed as
	// stale plans): server statement names include it, so that a Parse
	// after a schema change never reuses a statement prepared before it.
	epoch atomic.Uint64
	// parsed are server statement names some server accepted a Parse of
	// in this epoch: a client's Parse of one is answered without a server.
	parsed knownNames
	// mark is where the primary's WAL stood after the last write through
	// pgswitch (routing.consistency causal): reads go to replicas that have
	// replayed that far.
	mark track.Mark
	// checks follows how checks of replicas' replay positions go.
	checks checkOdds
	// view is the database's view of the latest topology (viewOf).
	view atomic.Pointer[view]
}

// viewOf returns db's view of snap, made once for both.
func (d *dbState) viewOf(db *config.Database, snap *health.Snapshot) *view {
	if v := d.view.Load(); v != nil && v.snap == snap && v.db == db {
		return v
	}
	v := viewOf(db, snap)
	d.view.Store(v)
	return v
}

// Written implements track.DB.
func (d *dbState) Written(lsn int64, ok bool) { d.mark.Written(lsn, ok) }

// Parsed implements track.DB.
func (d *dbState) Parsed(name string) { d.parsed.add(name) }

// CatalogChanged implements track.DB.
func (d *dbState) CatalogChanged() {
	d.epoch.Add(1)
	d.parsed.clear()
}

// known reports whether a server accepted the Parse of server statement name.
func (d *dbState) known(name string) bool { return d.parsed.has(name) }

// maxKnown bounds knownNames; past it the set starts again.
const maxKnown = 100000

// knownNames is a bounded set of names.
type knownNames struct {
	mu sync.Mutex
	m  map[string]struct{}
}

func (k *knownNames) add(name string) {
	k.mu.Lock()
	if k.m == nil || len(k.m) >= maxKnown {
		k.m = map[string]struct{}{}
	}
	k.m[name] = struct{}{}
	k.mu.Unlock()
}

func (k *knownNames) has(name string) bool {
	k.mu.Lock()
	_, ok := k.m[name]
	k.mu.Unlock()
	return ok
}

func (k *knownNames) clear() {
	k.mu.Lock()
	k.m = nil
	k.mu.Unlock()
}

// ServerCounters count the units of work routed to one server.
type ServerCounters struct {
	Reads  atomic.Uint64
	Writes atomic.Uint64
}

// database returns the shared state of the database clients know as name.
func (r *Router) database(name string) *dbState {
	return (*r.dbs.Load())[name]
}

// topology is the current view of the servers.
func (r *Router) topology() *health.Snapshot { return r.topo.Load() }

// SetTopology publishes a new view of the servers; sessions use it from
// their next unit of work, and writes waiting for a primary look again.
func (r *Router) SetTopology(s *health.Snapshot) {
	r.topo.Store(s)
	r.topoMu.Lock()
	if r.topoCh != nil {
		close(r.topoCh)
		r.topoCh = nil
	}
	r.topoMu.Unlock()
}

// Topology returns the current view of the servers.
func (r *Router) Topology() *health.Snapshot { return r.topo.Load() }

// topologyChanged returns a channel closed at the next SetTopology.
func (r *Router) topologyChanged() <-chan struct{} {
	r.topoMu.Lock()
	defer r.topoMu.Unlock()
	if r.topoCh == nil {
		r.topoCh = make(chan struct{})
	}
	return r.topoCh
}

// count records a unit of work routed to addr.
func (r *Router) count(addr string, read bool, n uint64) {
	c := (*r.counters.Load())[addr]
	if c == nil {
		return
	}
	if read {
		c.Reads.Add(n)
	} else {
		c.Writes.Add(n)
	}
}

// Counters returns the routed-query counters of addr (nil if unknown).
func (r *Router) Counters(addr string) *ServerCounters {
	return (*r.counters.Load())[addr]
}

// applyDatabases builds per-database state for cfg, keeping the classifier
// (and its cache) of databases whose routing settings did not change.
func (r *Router) applyDatabases(cfg *config.Config) {
	old := map[string]*dbState{}
	if p := r.dbs.Load(); p != nil {
		old = *p
	}
	prev := r.state.Load()
	sameRouting := prev != nil && fmt.Sprint(prev.cfg.Routing) == fmt.Sprint(cfg.Routing)
	dbs := map[string]*dbState{}
	for name := range cfg.Databases {
		if st := old[name]; st != nil && sameRouting {
			dbs[name] = st
			continue
		}
		st := &dbState{counters: r.countersFor(name), classifier: classify.New(classify.Options{
			WriteFunctions: cfg.Routing.WriteFunctions,
			CacheSize:      cfg.Routing.CacheSize,
		})}
		switch cfg.Routing.LoadBalance {
		case "least_connections":
			st.lb = leastConnections{}
		case "random":
			st.lb = weightedRandom{}
		default:
			st.lb = &roundRobin{}
		}
		dbs[name] = st
	}
	r.dbs.Store(&dbs)

	counters := map[string]*ServerCounters{}
	if p := r.counters.Load(); p != nil {
		for k, v := range *p {
			counters[k] = v
		}
	}
	for _, db := range cfg.Databases {
		for _, srv := range db.Servers {
			if counters[srv.Addr()] == nil {
				counters[srv.Addr()] = &ServerCounters{}
			}
		}
	}
	r.counters.Store(&counters)
}

// volatileQuery lists the volatile functions of every schema, pg_catalog
// included: calls to them are writes, but for the built-ins on the
// read-safe list ($1, classify.ReadSafeVolatile).
const volatileQuery = `SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.provolatile = 'v' AND n.nspname <> 'information_schema'
AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
AND NOT (n.nspname = 'pg_catalog' AND p.proname = ANY($1::text[]))`

// Classify classifies sql as the sessions of database db do now (with the
// volatile functions loaded from its primary); false for an unknown db.
func (r *Router) Classify(db, sql string) (classify.Result, bool) {
	d := (*r.dbs.Load())[db]
	if d == nil {
		return classify.Result{}, false
	}
	return d.classifier.Classify(sql), true
}

// RefreshVolatile loads each database's volatile functions from its
// primary into its classifier.
func (r *Router) RefreshVolatile(ctx context.Context) error {
	st := r.state.Load()
	dbs := *r.dbs.Load()
	var errs []string
	for name, db := range st.cfg.Databases {
		names, err := r.loadVolatile(ctx, st.cfg, db)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if d := dbs[name]; d != nil {
			d.classifier.SetVolatile(names)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("load volatile functions: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (r *Router) loadVolatile(ctx context.Context, cfg *config.Config, db *config.Database) ([]string, error) {
	srv := primaryOf(db, r.topology())
	if srv == nil {
		return nil, errors.New("no primary is up")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Health.Timeout+cfg.Timeouts.ServerConnect)
	defer cancel()
	conn, err := health.Connect(ctx, cfg, srv, db.DBName, "pgswitch")
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, volatileQuery, pgx.QueryExecModeSimpleProtocol, classify.ReadSafeVolatile)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// refreshVolatileLoop refreshes the volatile function lists every
// routing.volatile_refresh until the router closes.
func (r *Router) refreshVolatileLoop() {
	for {
		if err := r.RefreshVolatile(r.ctx); err != nil && r.ctx.Err() == nil {
			r.log.Warn("cannot refresh user-defined volatile functions; calls to them may be routed to replicas", "err", err)
		}
		every := r.state.Load().cfg.Routing.VolatileRefresh
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

package router

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/health"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/rules"
)

// want says which kind of server a unit of work needs.
type want uint8

const (
	wantPrimary want = iota
	wantReplica
)

// decision is where a unit of work goes and why.
type decision struct {
	server *config.Server
	read   bool   // the unit was routed as a read (counted as such)
	why    string // the rule that decided, for logs and SHOW ROUTES
	// then: what became of the rule's choice (no fit replica, say), said
	// after why; kept apart so that routing allocates nothing.
	then string
	// behind: fit replicas exist, but none has replayed what the read must
	// see (caughtUp), so the primary was chosen.
	behind bool
}

// balancer picks among candidate replicas; implementations hold only
// counters, so decide stays a pure function of its inputs.
type balancer interface {
	pick(cands []*config.Server, load func(*config.Server) int) int
}

// decide applies the routing contract: database route, hints, the
// classification, then the topology (fit replicas, backups, fallback).
// caughtUp, when set, tells whether a replica has replayed the writes a
// read must see (routing.consistency); a read goes to one that has, or to
// the primary. With no primary up, reads go to fit replicas regardless:
// stale reads beat none.
func decide(res classify.Result, db *config.Database, v *view, lb balancer, load func(*config.Server) int, scratch []*config.Server, caughtUp func(*config.Server) bool) decision {
	w, why := wantFor(res, db.Route)
	if w == wantReplica {
		if v.primary == nil {
			caughtUp = nil
		}
		srv, fit := pickReplica(v, lb, load, scratch, nil, caughtUp)
		if srv != nil {
			return decision{server: srv, read: true, why: why}
		}
		if fit {
			return decision{server: v.primary, read: true, why: why, then: thenBehind, behind: true}
		}
		return decision{server: v.primary, read: true, why: why, then: thenNoReplica}
	}
	return decision{server: v.primary, read: w == wantReplica, why: why}
}

// view is what routing needs of one topology snapshot for one database's
// servers: its primary (primaryOf), its fit replicas (up, not lagging),
// non-backup ones and backups apart, each in the configuration's order, and
// every server in the replica role, fit or not.
// A snapshot never changes, so a view is made once per snapshot and
// configuration (dbState.viewOf) and shared by the database's sessions:
// routing a unit then looks nothing up by address.
type view struct {
	snap              *health.Snapshot // what the view was made of (viewOf's memo)
	db                *config.Database
	primary           *config.Server
	replicas, backups []*config.Server
	standbys          []*config.Server
}

// standby reports whether srv is in the replica role.
func (v *view) standby(srv *config.Server) bool { return slices.Contains(v.standbys, srv) }

// viewOf makes db's view of snap.
func viewOf(db *config.Database, snap *health.Snapshot) *view {
	v := &view{snap: snap, db: db, primary: primaryOf(db, snap)}
	for _, srv := range db.Servers {
		st := snap.Get(srv.Addr())
		if st.Role != config.RoleReplica {
			continue
		}
		v.standbys = append(v.standbys, srv)
		switch {
		case !st.Usable() || st.Lagging: // not fit: down, excluded or lagging
		case srv.Backup:
			v.backups = append(v.backups, srv)
		default:
			v.replicas = append(v.replicas, srv)
		}
	}
	return v
}

// What became of a read's replica.
const (
	thenBehind    = "; no replica has replayed the writes it must see, so the primary"
	thenNoReplica = "; no fit replica, so the primary"
)

// primaryOf returns the server the topology says is primary and up: a
// non-backup one, else a backup. Nil when there is none: writes must wait.

func wantFor(res classify.Result, route config.Route) (want, string) {
	switch route {
	case config.RoutePrimary:
		return wantPrimary, "database route: primary"
	case config.RouteReplica:
		return wantReplica, "database route: replica"
	}
	switch res.Hint {
	case classify.HintPrimary:
		return wantPrimary, res.Reason
	case classify.HintReplica:
		return wantReplica, res.Reason
	}
	if res.Route == classify.Read {
		return wantReplica, res.Reason
	}
	return wantPrimary, res.Reason
}

func primaryOf(db *config.Database, snap *health.Snapshot) *config.Server {
	var backup *config.Server
	for _, srv := range db.Servers {
		st := snap.Get(srv.Addr())
		if st.Role != config.RolePrimary || !st.Usable() {
			continue
		}
		if !srv.Backup {
			return srv
		}
		if backup == nil {
			backup = srv
		}
	}
	return backup
}

// noPrimaryReason says why primaryOf found no primary, for the client.
func noPrimaryReason(db *config.Database, snap *health.Snapshot) string {
	var why []string
	for _, srv := range db.Servers {
		if st := snap.Get(srv.Addr()); st.Role == config.RolePrimary && st.Reason != "" {
			why = append(why, srv.Addr()+" "+st.Reason)
		}
	}
	if len(why) == 0 {
		return "no server reports pg_is_in_recovery() = false"
	}
	return strings.Join(why, "; ")
}

// pickReplica returns one of v's fit replicas (up, not lagging) that has
// caught up (caughtUp nil: any), preferring non-backup servers, balanced by
// lb; nil when none qualifies. fit reports whether any fit replica exists
// at all. only, when set, is a routing rule's: it allows its servers
// alone. scratch is a buffer for the candidates.
func pickReplica(v *view, lb balancer, load func(*config.Server) int, scratch []*config.Server, only *rules.Action, caughtUp func(*config.Server) bool) (_ *config.Server, fit bool) {
	// scratch is the caller's, reused: candidates passed to lb escape.
	cands := scratch[:0]
	for _, group := range [2][]*config.Server{v.replicas, v.backups} {
		for _, srv := range group {
			if only != nil && !only.Has(srv) {
				continue
			}
			fit = true
			if caughtUp == nil || caughtUp(srv) {
				cands = append(cands, srv)
			}
		}
		if len(cands) > 0 {
			return cands[lb.pick(cands, load)], true
		}
	}
	return nil, fit
}

// fitReplicas appends the addresses of v's fit replicas to dst (only: of
// a routing rule's servers alone).
func fitReplicas(dst []string, v *view, only *rules.Action) []string {
	for _, group := range [2][]*config.Server{v.replicas, v.backups} {
		for _, srv := range group {
			if only == nil || only.Has(srv) {
				dst = append(dst, srv.Addr())
			}
		}
	}
	return dst
}

// roundRobin cycles through candidates in proportion to their weights. One
// is shared by all sessions of a database.
type roundRobin struct{ next atomic.Uint64 }

func (r *roundRobin) pick(cands []*config.Server, _ func(*config.Server) int) int {
	total := 0
	for _, c := range cands {
		total += c.Weight
	}
	if total <= 0 {
		return 0
	}
	n := int((r.next.Add(1) - 1) % uint64(total))
	for i, c := range cands {
		if n < c.Weight {
			return i
		}
		n -= c.Weight
	}
	return 0
}

// leastConnections picks the candidate with the fewest active connections
// per unit of weight.
type leastConnections struct{}

func (leastConnections) pick(cands []*config.Server, load func(*config.Server) int) int {
	best, bestLoad := 0, -1.0
	for i, c := range cands {
		l := float64(load(c)) / float64(max(c.Weight, 1))
		if bestLoad < 0 || l < bestLoad {
			best, bestLoad = i, l
		}
	}
	return best
}

// weightedRandom picks a candidate at random in proportion to its weight.
type weightedRandom struct{}

func (weightedRandom) pick(cands []*config.Server, _ func(*config.Server) int) int {
	total := 0
	for _, c := range cands {
		total += c.Weight
	}
	if total <= 0 {
		return 0
	}
	n := rand.IntN(total)
	for i, c := range cands {
		if n < c.Weight {
			return i
		}
		n -= c.Weight
	}
	return 0
}

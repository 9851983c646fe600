package health

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pgswitch/pgswitch/config"
)

// judge turns the servers' own states into a snapshot. Cluster identity,
// split brain and lag are judgements across the servers of one database,
// which no single server's state machine can make.
type judge struct {
	groups  [][]string       // server addresses of each database, config order
	routing config.Routing   // lag limits
	cluster map[string]int64 // system_identifier chosen per group (key: joined addresses)
}

func newJudge(cfg *config.Config) *judge {
	j := &judge{routing: cfg.Routing, cluster: map[string]int64{}}
	seen := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Databases)) {
		var g []string
		for _, srv := range cfg.Databases[name].Servers {
			if !slices.Contains(g, srv.Addr()) {
				g = append(g, srv.Addr())
			}
		}
		if k := strings.Join(g, ","); !seen[k] {
			seen[k] = true
			j.groups = append(j.groups, g)
		}
	}
	return j
}

// snapshot judges servers as of now.
func (j *judge) snapshot(servers map[string]*server, now time.Time) *Snapshot {
	snap := &Snapshot{Servers: make(map[string]Status, len(servers)), Taken: now}
	for addr, s := range servers {
		st := Status{Addr: addr, Role: s.role, Up: s.up(), Since: s.since,
			Timeline: s.last.Timeline, SystemID: s.last.SystemID, Counts: s.counts}
		if !s.up() {
			st.Reason = "down: " + s.lastErr
		}
		snap.Servers[addr] = st
	}
	for _, g := range j.groups {
		j.judgeIdentity(g, snap)
		primary := j.judgeSplitBrain(g, snap)
		j.judgeLag(g, snap, servers, primary)
	}
	return snap
}

// judgeIdentity excludes servers whose system_identifier is not the one most
// servers of the group report: an address that points at another cluster
// must never receive writes. A tie keeps the identifier chosen before.
func (j *judge) judgeIdentity(g []string, snap *Snapshot) {
	votes := map[int64]int{}
	var order []int64
	for _, addr := range g {
		if id := snap.Servers[addr].SystemID; id != 0 {
			if votes[id] == 0 {
				order = append(order, id)
			}
			votes[id]++
		}
	}
	if len(votes) == 0 {
		return
	}
	key := strings.Join(g, ",")
	chosen, best := j.cluster[key], votes[j.cluster[key]]
	for _, id := range order {
		if votes[id] > best {
			chosen, best = id, votes[id]
		}
	}
	j.cluster[key] = chosen
	for _, addr := range g {
		st := snap.Servers[addr]
		if st.SystemID != 0 && st.SystemID != chosen {
			st.Excluded = true
			st.Reason = fmt.Sprintf("system_identifier %d is not this cluster's (%d): wrong address?", st.SystemID, chosen)
			snap.Servers[addr] = st
		}
	}
}

// judgeSplitBrain returns the group's primary. Two servers that both say
// pg_is_in_recovery() = false are a split brain: the newer timeline wins,
// and when that cannot be told neither gets traffic.
func (j *judge) judgeSplitBrain(g []string, snap *Snapshot) string {
	var primaries []string
	for _, addr := range g {
		if st := snap.Servers[addr]; st.Role == config.RolePrimary && st.Usable() {
			primaries = append(primaries, addr)
		}
	}
	if len(primaries) <= 1 {
		if len(primaries) == 1 {
			return primaries[0]
		}
		return ""
	}
	// An unknown timeline (0) ties with everything: nothing can be told.
	winner, newest, tie := "", int64(0), false
	for _, addr := range primaries {
		switch tl := snap.Servers[addr].Timeline; {
		case tl == 0 || tl == newest:
			tie = true
		case tl > newest:
			winner, newest, tie = addr, tl, false
		}
	}
	if slices.ContainsFunc(primaries, func(a string) bool { return snap.Servers[a].Timeline == 0 }) {
		tie = true
	}
	for _, addr := range primaries {
		if addr == winner && !tie {
			continue
		}
		st := snap.Servers[addr]
		st.Excluded = true
		if tie {
			st.Reason = fmt.Sprintf("split brain: %s all claim to be primary and their timelines cannot tell which is newer; writes refused",
				strings.Join(primaries, ", "))
		} else {
			st.Reason = fmt.Sprintf("split brain: also claims to be primary, on timeline %d, but %s is on newer timeline %d",
				st.Timeline, winner, newest)
		}
		snap.Servers[addr] = st
	}
	if tie {
		return ""
	}
	return winner
}

// judgeLag measures replicas against the primary and excludes those beyond
// max_replica_lag. Without a primary nothing is excluded for lag: stale
// reads beat no reads, and there is nothing to catch up with.
func (j *judge) judgeLag(g []string, snap *Snapshot, servers map[string]*server, primary string) {
	if primary == "" {
		return
	}
	head := servers[primary].last.LSN
	for _, addr := range g {
		st := snap.Servers[addr]
		if st.Role != config.RoleReplica || !st.Usable() {
			continue
		}
		s := servers[addr]
		st.LagBytes = max(0, head-s.last.LSN)
		st.LagSeconds = s.last.ReplayAge
		switch {
		case j.routing.MaxReplicaLagBytes > 0 && st.LagBytes > j.routing.MaxReplicaLagBytes:
			st.Lagging = true
			st.Reason = fmt.Sprintf("lagging: %d bytes behind the primary, max_replica_lag_bytes is %d", st.LagBytes, j.routing.MaxReplicaLagBytes)
		case j.routing.MaxReplicaLag > 0 && st.LagSeconds > j.routing.MaxReplicaLag.Seconds():
			st.Lagging = true
			st.Reason = fmt.Sprintf("lagging: replay %.1fs behind, max_replica_lag is %s", st.LagSeconds, j.routing.MaxReplicaLag)
		}
		snap.Servers[addr] = st
	}
}

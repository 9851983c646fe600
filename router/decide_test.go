package router

import (
	"fmt"
	"slices"
	"testing"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/health"
	"github.com/pgswitch/pgswitch/router/classify"
)

func srv(port int, backup bool, weight int) *config.Server {
	s := config.NewServer("127.0.0.1", port)
	s.Backup, s.Weight = backup, weight
	return s
}

// topo builds a snapshot: each entry is role, and flags for down, lagging
// and excluded servers.
type st struct {
	role                   config.Role
	down, lagging, exclude bool
}

func topo(servers []*config.Server, sts ...st) *health.Snapshot {
	snap := &health.Snapshot{Servers: map[string]health.Status{}}
	for i, s := range servers {
		snap.Servers[s.Addr()] = health.Status{Addr: s.Addr(), Role: sts[i].role, Up: !sts[i].down,
			Lagging: sts[i].lagging, Excluded: sts[i].exclude}
	}
	return snap
}

var (
	read  = classify.Result{Route: classify.Read, Reason: "read: SELECT"}
	write = classify.Result{Route: classify.Write, Reason: "write: INSERT"}
	P     = config.RolePrimary
	R     = config.RoleReplica
)

func noLoad(*config.Server) int { return 0 }

func TestDecide(t *testing.T) {
	p, r1, r2, bp, br := srv(1, false, 1), srv(2, false, 1), srv(3, false, 1), srv(4, true, 1), srv(5, true, 1)
	all := []*config.Server{p, r1, r2, bp, br}
	tests := []struct {
		name  string
		res   classify.Result
		route config.Route
		snap  *health.Snapshot
		want  []*config.Server // acceptable servers; nil: none
		read  bool
	}{
		{"write to the primary", write, config.RouteAuto, topo(all, st{role: P}, st{role: R}, st{role: R}, st{role: P}, st{role: R}), []*config.Server{p}, false},
		{"read to a non-backup replica", read, config.RouteAuto, topo(all, st{role: P}, st{role: R}, st{role: R}, st{role: P}, st{role: R}), []*config.Server{r1, r2}, true},
		{"hint primary", classify.Result{Route: classify.Read, Hint: classify.HintPrimary, Reason: "hint: primary"}, config.RouteAuto,
			topo(all, st{role: P}, st{role: R}, st{role: R}, st{role: P}, st{role: R}), []*config.Server{p}, false},
		{"hint replica", classify.Result{Route: classify.Write, Hint: classify.HintReplica, Reason: "hint: replica"}, config.RouteAuto,
			topo(all, st{role: P}, st{role: R}, st{role: R}, st{role: P}, st{role: R}), []*config.Server{r1, r2}, true},
		{"route primary wins over a read", read, config.RoutePrimary, topo(all, st{role: P}, st{role: R}, st{role: R}, st{role: P}, st{role: R}), []*config.Server{p}, false},
		{"route replica wins over a write", write, config.RouteReplica, topo(all, st{role: P}, st{role: R}, st{role: R}, st{role: P}, st{role: R}), []*config.Server{r1, r2}, true},
		{"down replica skipped", read, config.RouteAuto, topo(all, st{role: P}, st{role: R, down: true}, st{role: R}, st{role: P}, st{role: R}), []*config.Server{r2}, true},
		{"lagging replica skipped", read, config.RouteAuto, topo(all, st{role: P}, st{role: R}, st{role: R, lagging: true}, st{role: P}, st{role: R}), []*config.Server{r1}, true},
		{"backup replica only when the others are unfit", read, config.RouteAuto,
			topo(all, st{role: P}, st{role: R, down: true}, st{role: R, lagging: true}, st{role: P}, st{role: R}), []*config.Server{br}, true},
		{"no fit replica: the primary", read, config.RouteAuto,
			topo(all, st{role: P}, st{role: R, down: true}, st{role: R, exclude: true}, st{role: P}, st{role: R, down: true}), []*config.Server{p}, true},
		{"backup primary when the primary is down", write, config.RouteAuto,
			topo(all, st{role: P, down: true}, st{role: R}, st{role: R}, st{role: P}, st{role: R}), []*config.Server{bp}, false},
		{"promoted replica is the primary", write, config.RouteAuto,
			topo(all, st{role: P, down: true}, st{role: P}, st{role: R}, st{role: R, down: true}, st{role: R}), []*config.Server{r1}, false},
		{"excluded primary (split brain loser) never gets writes", write, config.RouteAuto,
			topo(all, st{role: P, exclude: true}, st{role: P}, st{role: R}, st{role: R}, st{role: R}), []*config.Server{r1}, false},
		{"no primary: nowhere to write", write, config.RouteAuto,
			topo(all, st{role: P, down: true}, st{role: R}, st{role: R}, st{role: P, exclude: true}, st{role: R}), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := &config.Database{Name: "app", Route: tt.route, Servers: all}
			lb := &roundRobin{}
			seen := map[*config.Server]bool{}
			for range 10 {
				d := decide(tt.res, db, viewOf(db, tt.snap), lb, noLoad, nil, nil)
				if d.read != tt.read {
					t.Fatalf("read %v, want %v (%s)", d.read, tt.read, d.why)
				}
				if tt.want == nil {
					if d.server != nil {
						t.Fatalf("got %s, want no server", d.server.Addr())
					}
					continue
				}
				ok := false
				for _, w := range tt.want {
					ok = ok || d.server == w
				}
				if !ok {
					t.Fatalf("got %v (%s), want one of %v", d.server, d.why, tt.want)
				}
				seen[d.server] = true
				if d.why == "" {
					t.Fatal("no reason given")
				}
			}
			if len(seen) != len(tt.want) {
				t.Fatalf("round robin used %d of the %d candidates", len(seen), len(tt.want))
			}
		})
	}
}

func TestBalancers(t *testing.T) {
	a, b, c := srv(1, false, 1), srv(2, false, 3), srv(3, false, 0)
	cands := []*config.Server{a, b}
	count := func(lb balancer, load func(*config.Server) int, n int) map[*config.Server]int {
		got := map[*config.Server]int{}
		for range n {
			got[cands[lb.pick(cands, load)]]++
		}
		return got
	}
	if got := count(&roundRobin{}, noLoad, 400); got[a] != 100 || got[b] != 300 {
		t.Errorf("round robin weights 1:3 over 400 picks: got %d:%d, want 100:300", got[a], got[b])
	}
	got := count(weightedRandom{}, noLoad, 4000)
	if got[a] < 700 || got[a] > 1300 {
		t.Errorf("random weights 1:3 over 4000 picks: got %d:%d, want about 1000:3000", got[a], got[b])
	}
	load := map[*config.Server]int{a: 2, b: 3}
	if i := (leastConnections{}).pick(cands, func(s *config.Server) int { return load[s] }); cands[i] != b {
		t.Errorf("least connections with loads 2 (weight 1) and 3 (weight 3): got %s, want %s", cands[i].Addr(), b.Addr())
	}
	load[b] = 9
	if i := (leastConnections{}).pick(cands, func(s *config.Server) int { return load[s] }); cands[i] != a {
		t.Errorf("least connections with loads 2 (weight 1) and 9 (weight 3): got %s, want %s", cands[i].Addr(), a.Addr())
	}
	if i := (&roundRobin{}).pick([]*config.Server{c}, noLoad); i != 0 {
		t.Errorf("all weights zero: got %d, want 0", i)
	}
}

func TestNoPrimaryReason(t *testing.T) {
	p, r := srv(1, false, 1), srv(2, false, 1)
	db := &config.Database{Servers: []*config.Server{p, r}}
	snap := topo(db.Servers, st{role: P, down: true}, st{role: R})
	s := snap.Servers[p.Addr()]
	s.Reason = "down: connection refused"
	snap.Servers[p.Addr()] = s
	if got, want := noPrimaryReason(db, snap), fmt.Sprintf("%s down: connection refused", p.Addr()); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	snap = topo(db.Servers, st{role: R}, st{role: R})
	if got := noPrimaryReason(db, snap); got != "no server reports pg_is_in_recovery() = false" {
		t.Errorf("got %q", got)
	}
}

// TestDecideAllocatesNothing: routing runs for every unit of work.
func TestDecideAllocatesNothing(t *testing.T) {
	p, r1, r2 := srv(1, false, 1), srv(2, false, 1), srv(3, false, 1)
	all := []*config.Server{p, r1, r2}
	db := &config.Database{Name: "app", Route: config.RouteAuto, Servers: all}
	snap := topo(all, st{role: P}, st{role: R}, st{role: R})
	scratch := make([]*config.Server, 0, 8)
	var d dbState
	for _, lb := range []balancer{&roundRobin{}, leastConnections{}, weightedRandom{}} {
		if n := testing.AllocsPerRun(100, func() {
			v := d.viewOf(db, snap)
			decide(read, db, v, lb, noLoad, scratch, nil)
			decide(write, db, v, lb, noLoad, scratch, nil)
		}); n != 0 {
			t.Errorf("%T: decide allocates %v times per unit, want 0", lb, n)
		}
	}
}

// TestViewFollowsTopology: a database's view is made once per topology
// snapshot and configuration, and anew when either changes: a session
// routes by the latest of both.
func TestViewFollowsTopology(t *testing.T) {
	a, b, c := srv(1, false, 1), srv(2, false, 1), srv(3, true, 1)
	all := []*config.Server{a, b, c}
	db := &config.Database{Name: "app", Route: config.RouteAuto, Servers: all}
	var d dbState
	before := topo(all, st{role: P}, st{role: R}, st{role: R})
	v := d.viewOf(db, before)
	if v.primary != a || !slices.Equal(v.replicas, []*config.Server{b}) || !slices.Equal(v.backups, []*config.Server{c}) {
		t.Fatalf("view: primary %v, replicas %v, backups %v", v.primary, v.replicas, v.backups)
	}
	if !v.standby(b) || !v.standby(c) || v.standby(a) {
		t.Fatal("view: standby() does not say which servers are in the replica role")
	}
	if d.viewOf(db, before) != v {
		t.Fatal("the same snapshot and configuration made a new view")
	}
	// b is promoted, a goes down.
	after := topo(all, st{role: P, down: true}, st{role: P}, st{role: R})
	if w := d.viewOf(db, after); w.primary != b || len(w.replicas) != 0 || !slices.Equal(w.backups, []*config.Server{c}) || w.standby(b) {
		t.Fatalf("after failover: primary %v, replicas %v, backups %v", w.primary, w.replicas, w.backups)
	}
	// A reload that drops the backup.
	reloaded := &config.Database{Name: "app", Route: config.RouteAuto, Servers: all[:2]}
	if w := d.viewOf(reloaded, after); w.primary != b || len(w.backups) != 0 {
		t.Fatalf("after reload: primary %v, backups %v", w.primary, w.backups)
	}
	if got := decide(read, db, d.viewOf(db, before), &roundRobin{}, noLoad, nil, nil); got.server != b {
		t.Fatalf("a read routed by the first view again went to %v, want %s", got.server, b.Addr())
	}
}

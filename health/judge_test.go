package health

import (
	"strings"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/config"
)

func testConfig(t *testing.T, routing config.Routing, addrs ...string) *config.Config {
	t.Helper()
	db := &config.Database{Name: "app", DBName: "app"}
	for i, a := range addrs {
		host, port, _ := strings.Cut(a, ":")
		n := 0
		for _, c := range port {
			n = n*10 + int(c-'0')
		}
		role := config.RoleReplica
		if i == 0 {
			role = config.RolePrimary
		}
		db.Servers = append(db.Servers, &config.Server{Host: host, Port: n, Role: role, Inter: time.Second, DownInter: time.Second, Fall: 3, Rise: 2, Weight: 1})
	}
	return &config.Config{Routing: routing, Databases: map[string]*config.Database{"app": db}}
}

const (
	a1 = "127.0.0.1:5001"
	a2 = "127.0.0.1:5002"
	a3 = "127.0.0.1:5003"
)

// judged runs one check of each server with the given probes and returns
// the snapshot.
func judged(t *testing.T, routing config.Routing, probes map[string]Probe) *Snapshot {
	t.Helper()
	cfg := testConfig(t, routing, a1, a2, a3)
	j := newJudge(cfg)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	servers := map[string]*server{}
	for _, db := range cfg.Databases {
		for _, srv := range db.Servers {
			s := newServer(srv.Addr(), paramsOf(srv), srv.Role, now)
			s.observe(probes[srv.Addr()], now)
			servers[srv.Addr()] = s
		}
	}
	return j.snapshot(servers, now)
}

func TestJudge(t *testing.T) {
	primary := func(lsn, tl int64) Probe { return Probe{LSN: lsn, Timeline: tl, SystemID: 7} }
	replica := func(lsn int64, age float64) Probe {
		return Probe{InRecovery: true, LSN: lsn, ReplayAge: age, SystemID: 7}
	}
	type want struct {
		usable, lagging bool
		reason          string // substring; "" means none
	}
	tests := []struct {
		name    string
		routing config.Routing
		probes  map[string]Probe
		want    map[string]want
	}{
		{"healthy cluster", config.Routing{MaxReplicaLagBytes: 100},
			map[string]Probe{a1: primary(1000, 1), a2: replica(1000, 0), a3: replica(950, 0.1)},
			map[string]want{a1: {true, false, ""}, a2: {true, false, ""}, a3: {true, false, ""}}},
		{"replica beyond max_replica_lag_bytes", config.Routing{MaxReplicaLagBytes: 100},
			map[string]Probe{a1: primary(1000, 1), a2: replica(1000, 0), a3: replica(800, 3)},
			map[string]want{a1: {true, false, ""}, a2: {true, false, ""}, a3: {true, true, "200 bytes behind"}}},
		{"replica beyond max_replica_lag seconds", config.Routing{MaxReplicaLag: 2 * time.Second},
			map[string]Probe{a1: primary(1000, 1), a2: replica(990, 2.5), a3: replica(990, 1.5)},
			map[string]want{a1: {true, false, ""}, a2: {true, true, "2.5s behind"}, a3: {true, false, ""}}},
		{"no lag limit configured", config.Routing{},
			map[string]Probe{a1: primary(1<<40, 1), a2: replica(0, 1e6), a3: replica(0, 1e6)},
			map[string]want{a1: {true, false, ""}, a2: {true, false, ""}, a3: {true, false, ""}}},
		{"no primary: nothing excluded for lag", config.Routing{MaxReplicaLagBytes: 1, MaxReplicaLag: time.Second},
			map[string]Probe{a1: failed, a2: replica(10, 100), a3: replica(500, 100)},
			map[string]want{a1: {false, false, "down: connection refused"}, a2: {true, false, ""}, a3: {true, false, ""}}},
		{"split brain: the newer timeline wins", config.Routing{},
			map[string]Probe{a1: primary(1000, 1), a2: primary(900, 2), a3: replica(900, 0)},
			map[string]want{a1: {false, false, "on timeline 1, but 127.0.0.1:5002 is on newer timeline 2"}, a2: {true, false, ""}, a3: {true, false, ""}}},
		{"split brain on the same timeline: no primary", config.Routing{},
			map[string]Probe{a1: primary(1000, 2), a2: primary(900, 2), a3: replica(900, 0)},
			map[string]want{a1: {false, false, "cannot tell"}, a2: {false, false, "cannot tell"}, a3: {true, false, ""}}},
		{"split brain with an unknown timeline: no primary", config.Routing{},
			map[string]Probe{a1: primary(1000, 3), a2: primary(900, 0), a3: replica(900, 0)},
			map[string]want{a1: {false, false, "cannot tell"}, a2: {false, false, "cannot tell"}, a3: {true, false, ""}}},
		{"another cluster's server is excluded", config.Routing{},
			map[string]Probe{a1: primary(1000, 1), a2: replica(1000, 0), a3: {InRecovery: true, LSN: 5, SystemID: 99}},
			map[string]want{a1: {true, false, ""}, a2: {true, false, ""}, a3: {false, false, "system_identifier 99 is not this cluster's (7)"}}},
		{"another cluster's primary cannot cause a split brain", config.Routing{},
			map[string]Probe{a1: primary(1000, 1), a2: replica(1000, 0), a3: {LSN: 5, Timeline: 9, SystemID: 99}},
			map[string]want{a1: {true, false, ""}, a2: {true, false, ""}, a3: {false, false, "system_identifier 99"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := judged(t, tt.routing, tt.probes)
			for addr, w := range tt.want {
				st := snap.Get(addr)
				if st.Usable() != w.usable || st.Lagging != w.lagging {
					t.Errorf("%s: usable %v lagging %v (%s), want usable %v lagging %v", addr, st.Usable(), st.Lagging, st.Reason, w.usable, w.lagging)
				}
				if (w.reason == "") != (st.Reason == "") || !strings.Contains(st.Reason, w.reason) {
					t.Errorf("%s: reason %q, want %q", addr, st.Reason, w.reason)
				}
			}
		})
	}
}

func TestJudgeIdentityTieKeepsEarlierChoice(t *testing.T) {
	cfg := testConfig(t, config.Routing{}, a1, a2)
	j := newJudge(cfg)
	now := time.Now()
	servers := map[string]*server{}
	for _, a := range []string{a1, a2} {
		servers[a] = newServer(a, params{Inter: time.Second, DownInter: time.Second, Fall: 1, Rise: 1}, config.RoleReplica, now)
	}
	servers[a1].observe(Probe{SystemID: 7, Timeline: 1}, now)
	servers[a2].observe(Probe{Err: failed.Err}, now)
	if snap := j.snapshot(servers, now); !snap.Get(a1).Usable() {
		t.Fatalf("the only server seen: %+v, want usable", snap.Get(a1))
	}
	// One vote each now: the identifier chosen first stands.
	servers[a2].observe(Probe{InRecovery: true, SystemID: 8}, now)
	snap := j.snapshot(servers, now)
	if !snap.Get(a1).Usable() || snap.Get(a2).Usable() {
		t.Fatalf("tie: %s usable %v, %s usable %v; want the first cluster kept", a1, snap.Get(a1).Usable(), a2, snap.Get(a2).Usable())
	}
}

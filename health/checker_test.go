package health

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgswitch/pgswitch/config"
)

// fakeServers answers probes from a table the test changes.
type fakeServers struct {
	mu     sync.Mutex
	probes map[string]Probe
	calls  map[string]int
}

func (f *fakeServers) set(addr string, p Probe) {
	f.mu.Lock()
	f.probes[addr] = p
	f.mu.Unlock()
}

type fakeProber struct {
	f    *fakeServers
	addr string
}

func (p fakeProber) probe(context.Context) Probe {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	p.f.calls[p.addr]++
	return p.f.probes[p.addr]
}

func (fakeProber) close() {}

// TestCheckerTimeline drives the checker's own timers in a synctest bubble:
// with inter 1s, downinter 2s, fall 3 and rise 2, a server that stops
// answering right after the check at 0s is marked down by the check at 3s,
// and once it answers again it is up at the second check after that.
func TestCheckerTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t, config.Routing{}, a1, a2, a3)
		for _, srv := range cfg.Databases["app"].Servers {
			srv.DownInter = 2 * time.Second
		}
		f := &fakeServers{calls: map[string]int{}, probes: map[string]Probe{
			a1: {LSN: 10, Timeline: 1, SystemID: 7},
			a2: {InRecovery: true, LSN: 10, SystemID: 7},
			a3: {InRecovery: true, LSN: 10, SystemID: 7},
		}}
		var mu sync.Mutex
		var published []*Snapshot
		var unusable []string
		c := NewChecker(cfg, Hooks{
			Publish: func(s *Snapshot) { mu.Lock(); published = append(published, s); mu.Unlock() },
			Unusable: func(addr, reason string) {
				mu.Lock()
				unusable = append(unusable, addr)
				mu.Unlock()
				if reason == "" {
					t.Errorf("Unusable(%s) without a reason", addr)
				}
			},
		}, nil)
		c.newProber = func(_ *Checker, addr string) prober { return fakeProber{f, addr} }
		start := time.Now() // fake time: the bubble's clock
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.Run(ctx); close(done) }()

		at := func(d time.Duration) { // sleep until d after the start
			time.Sleep(d - time.Since(start))
			synctest.Wait()
		}
		synctest.Wait()
		if st := c.Snapshot().Get(a2); !st.Up || st.Role != config.RoleReplica {
			t.Fatalf("after the first checks: %+v", st)
		}
		f.set(a2, Probe{Err: errors.New("connection refused")})
		at(2500 * time.Millisecond)
		if !c.Snapshot().Get(a2).Up {
			t.Fatal("down after 2 failed checks, want up until the third")
		}
		at(3500 * time.Millisecond)
		if st := c.Snapshot().Get(a2); st.Up || st.Counts.MarkedDown != 1 || st.Counts.Failures != 3 {
			t.Fatalf("after 3 failed checks: %+v, want down", st)
		}
		mu.Lock()
		if len(unusable) != 1 || unusable[0] != a2 {
			t.Fatalf("Unusable calls %v, want [%s]", unusable, a2)
		}
		mu.Unlock()
		f.set(a2, Probe{InRecovery: true, LSN: 10, SystemID: 7})
		// Down: checked every 2s, at 5s and 7s.
		at(6900 * time.Millisecond)
		if c.Snapshot().Get(a2).Up {
			t.Fatal("up after 1 successful check, want rise 2")
		}
		at(7100 * time.Millisecond)
		if st := c.Snapshot().Get(a2); !st.Up || st.Counts.MarkedUp != 1 {
			t.Fatalf("after 2 successful checks: %+v, want up", st)
		}
		f.mu.Lock()
		if n := f.calls[a2]; n != 6 { // 0 1 2 3 (inter), 5 7 (downinter)
			t.Errorf("server 2 checked %d times by 7.1s, want 6", n)
		}
		if n := f.calls[a1]; n != 8 { // every second from 0 to 7
			t.Errorf("server 1 checked %d times by 7.1s, want 8", n)
		}
		f.mu.Unlock()

		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for i := 1; i < len(published); i++ {
			if published[i].Taken.Before(published[i-1].Taken) {
				t.Fatalf("snapshot %d taken before snapshot %d", i, i-1)
			}
		}
		if last := published[len(published)-1]; last != c.Snapshot() {
			t.Fatal("the last published snapshot is not the checker's current one")
		}
	})
}

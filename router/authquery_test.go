package router

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/config"
)

// TestUserLookupCache: what auth_query found is kept for auth_cache_time,
// what it did not find and its failures are not, and logins of one user
// at once wait for one lookup.
func TestUserLookupCache(t *testing.T) {
	var calls atomic.Int32
	passwords := map[string]string{"alice": "md5" + "0123456789abcdef0123456789abcdef"}
	var mu sync.Mutex
	release := make(chan struct{})
	close(release)
	started := make(chan struct{}, 10)
	fail := false
	l := newUserLookup(func(ctx context.Context, cfg *config.Config, db *config.Database, user string) (string, bool, error) {
		calls.Add(1)
		started <- struct{}{}
		<-release
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return "", false, errors.New("server down")
		}
		p, ok := passwords[user]
		return p, ok, nil
	})
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	cfg := &config.Config{AuthCacheTime: 10 * time.Second}
	db := &config.Database{Name: "app"}
	ctx := context.Background()
	look := func(user string) (string, bool, error) {
		t.Helper()
		e, err := l.lookup(ctx, cfg, db, user)
		if err != nil {
			return "", false, err
		}
		return e.password, e.found, nil
	}
	want := func(user, wantPW string, wantFound bool, wantCalls int32) {
		t.Helper()
		p, found, err := look(user)
		if err != nil || p != wantPW || found != wantFound || calls.Load() != wantCalls {
			t.Fatalf("%s: got found %v, err %v, %d queries; want found %v, %d queries", user, found, err, calls.Load(), wantFound, wantCalls)
		}
	}
	want("alice", passwords["alice"], true, 1)
	want("alice", passwords["alice"], true, 1) // cached
	want("bob", "", false, 2)
	mu.Lock()
	passwords["bob"] = "md5" + "fedcba9876543210fedcba9876543210"
	passwords["alice"] = "md5" + "00000000000000000000000000000000"
	mu.Unlock()
	want("bob", passwords["bob"], true, 3) // a miss is not kept: created since
	now = now.Add(9 * time.Second)
	want("alice", "md5"+"0123456789abcdef0123456789abcdef", true, 3) // still fresh
	now = now.Add(time.Second)
	want("alice", passwords["alice"], true, 4) // expired: the changed password

	// A failure is the caller's, and not kept.
	mu.Lock()
	fail = true
	mu.Unlock()
	if _, _, err := look("carol"); err == nil {
		t.Fatal("carol: got no error from a failing auth_query")
	}
	mu.Lock()
	fail = false
	passwords["carol"] = "md5" + "11111111111111111111111111111111"
	mu.Unlock()
	want("carol", passwords["carol"], true, 6)

	// Logins of one user at once share one lookup.
	release = make(chan struct{})
	now = now.Add(time.Hour)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if _, found, err := look("alice"); err != nil || !found {
				t.Errorf("concurrent alice: got found %v, err %v", found, err)
			}
		})
	}
	for range 6 + 1 {
		<-started // the six earlier queries, and the first of the five's
	}
	close(release)
	wg.Wait()
	if got := calls.Load(); got != 7 {
		t.Errorf("five logins at once: got %d queries in all, want 7", got)
	}
}

package router

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/wire"
)

// TestRetire: a retiring router accepts no one, serves the clients it has
// until they leave, and then returns; one that stays past the wait gets
// 57P01.
func TestRetire(t *testing.T) {
	f := newFakePG(t, false)
	r, addr := fakeRouter(t, 2, f)
	stays := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
	leaves := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
	ctx := context.Background()

	retired := make(chan struct{})
	go func() {
		defer close(retired)
		r.Retire(ctx, 0)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break // the listener is closed
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("a retiring router still accepts connections")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range []*pgx.Conn{stays, leaves} {
		if got := scan(t, c, "SELECT 1"); got != "1" {
			t.Fatalf("a client of the retiring router: %q", got)
		}
	}
	leaves.Close(ctx)
	if got := scan(t, stays, "SELECT 1"); got != "1" {
		t.Fatalf("after another client left: %q", got)
	}
	select {
	case <-retired:
		t.Fatal("Retire returned with a client connected and no wait limit")
	case <-time.After(300 * time.Millisecond):
	}
	stays.Close(ctx)
	select {
	case <-retired:
	case <-time.After(10 * time.Second):
		t.Fatal("Retire did not return once the last client left")
	}
}

func TestRetireWaitPasses(t *testing.T) {
	f := newFakePG(t, false)
	r, addr := fakeRouter(t, 2, f)
	c := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
	start := time.Now()
	r.Retire(context.Background(), 200*time.Millisecond)
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("Retire returned after %v, before its wait", took)
	}
	_, err := c.Exec(context.Background(), "SELECT 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != wire.CodeAdminShutdown {
		t.Fatalf("a client left past the wait: %v, want 57P01", err)
	}
}

// TestCancelRelay: a cancel request for a key no session has goes to the
// relay.
func TestCancelRelay(t *testing.T) {
	f := newFakePG(t, false)
	r, addr := fakeRouter(t, 2, f)
	got := make(chan wire.CancelKey, 1)
	r.SetCancelRelay(func(k wire.CancelKey) { got <- k })
	key := wire.CancelKey{ProcessID: 77, SecretKey: 99}
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(key.AppendCancelRequest(nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case k := <-got:
		if k != key {
			t.Fatalf("relayed %+v, want %+v", k, key)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the unknown key never reached the relay")
	}
}

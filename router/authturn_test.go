package router

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
)

func TestTurnstileOrderAndLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ts turnstile
		ctx := context.Background()
		for range 2 {
			if err := ts.enter(ctx, 2); err != nil {
				t.Fatal(err)
			}
		}
		var order []int
		done := make(chan int, 3)
		for i := range 3 {
			go func() {
				if err := ts.enter(ctx, 2); err != nil {
					t.Error(err)
				}
				done <- i
			}()
			synctest.Wait() // queued in this order
		}
		if len(done) != 0 {
			t.Fatalf("got %d turns past the limit of 2, want none", len(done))
		}
		for range 3 {
			ts.leave()
			synctest.Wait()
			order = append(order, <-done)
		}
		if order[0] != 0 || order[1] != 1 || order[2] != 2 {
			t.Errorf("got turns in order %v, want [0 1 2]", order)
		}
		if ts.busy != 2 || len(ts.waiters) != 0 {
			t.Errorf("got %d busy, %d waiting; want 2, 0", ts.busy, len(ts.waiters))
		}
	})
}

func TestTurnstileWaitEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ts turnstile
		if err := ts.enter(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- ts.enter(ctx, 1) }()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		ts.leave()
		if ts.busy != 0 || len(ts.waiters) != 0 {
			t.Errorf("got %d busy, %d waiting; want 0, 0", ts.busy, len(ts.waiters))
		}
	})
}

func TestTurnstileLimitRaised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ts turnstile
		ctx := context.Background()
		if err := ts.enter(ctx, 1); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			ts.enter(ctx, 1)
			close(done)
		}()
		synctest.Wait()
		// A reload raised the limit: the waiter gets a turn with the newcomer.
		if err := ts.enter(ctx, 3); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("waiter still waiting under the raised limit")
		}
		if ts.busy != 3 {
			t.Errorf("got %d busy, want 3", ts.busy)
		}
	})
}

// TestTurnConnHoldsNoTurnWhileWaiting: a login waiting for its client's
// answer holds no turn, so that silent clients cannot keep others out.
func TestTurnConnHoldsNoTurnWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ts turnstile
		client, server := net.Pipe()
		defer client.Close()
		tc := &turnConn{Conn: server, turns: &ts, ctx: context.Background(), limit: 1}
		read := make(chan error, 1)
		go func() {
			var b [1]byte
			_, err := io.ReadFull(tc, b[:])
			read <- err
		}()
		synctest.Wait() // blocked reading from a silent client
		if err := ts.enter(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		// The client answers while the only turn is taken: the login waits
		// for it before computing on.
		go client.Write([]byte{'p'})
		synctest.Wait()
		if len(read) != 0 {
			t.Fatal("login computes without a turn")
		}
		ts.leave()
		if err := <-read; err != nil {
			t.Fatal(err)
		}
		if !tc.held || ts.busy != 1 {
			t.Fatalf("after the read: held %v, busy %d; want true, 1", tc.held, ts.busy)
		}
		tc.release()
		if ts.busy != 0 {
			t.Errorf("got %d busy after release, want 0", ts.busy)
		}
		server.Close()
	})
}

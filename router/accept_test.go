package router

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgswitch/pgswitch/config"
)

// scriptedListener fails Accept with the errors of next until it returns
// nil, then with net.ErrClosed.
type scriptedListener struct {
	mu    sync.Mutex
	calls int
	next  func(call int) (net.Conn, error)
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls++
	call := l.calls
	l.mu.Unlock()
	return l.next(call)
}

func (l *scriptedListener) Close() error { return nil }
func (l *scriptedListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6432}
}

func acceptError(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// countingHandler counts log records and sums their "failures" attribute.
type countingHandler struct {
	mu       sync.Mutex
	records  int
	failures int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records++
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "failures" {
			h.failures += a.Value.Int64()
		}
		return true
	})
	return nil
}

func TestAcceptRetriesTemporaryErrorsAndLogsOnceASecond(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ENOBUFS, syscall.ENOMEM} {
		t.Run(errno.Error(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const failFor = 10*time.Second + 500*time.Millisecond
				start := time.Now()
				client, server := net.Pipe()
				defer client.Close()
				ln := &scriptedListener{next: func(int) (net.Conn, error) {
					if time.Since(start) < failFor {
						return nil, acceptError(errno)
					}
					return server, nil
				}}
				h := &countingHandler{}
				a := acceptor{ln: ln, log: slog.New(h), done: make(chan struct{})}
				nc, err := a.accept()
				if err != nil || nc != server {
					t.Fatalf("got %v, %v; want the connection once the failures passed", nc, err)
				}
				failures := ln.calls - 1
				// One line when the failures begin, then at most one a second.
				if most := int(failFor/time.Second) + 1; h.records > most || h.records < 2 {
					t.Fatalf("%d failures over %v logged in %d lines, want 2 to %d", failures, failFor, h.records, most)
				}
				if int(h.failures)+a.unlogged != failures {
					t.Fatalf("lines count %d failures and %d are pending, want %d in all", h.failures, a.unlogged, failures)
				}
				// Backed off: not a busy loop.
				if failures > 30 {
					t.Fatalf("%d accept calls in %v: the back-off does not hold", failures, failFor)
				}
				if a.delay != 0 {
					t.Fatalf("back-off %v after a success, want 0", a.delay)
				}
			})
		})
	}
}

func TestAcceptStopsOnOtherErrorsAndOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		ln := &scriptedListener{next: func(int) (net.Conn, error) { return nil, boom }}
		a := acceptor{ln: ln, log: slog.New(&countingHandler{}), done: make(chan struct{})}
		if _, err := a.accept(); !errors.Is(err, boom) || ln.calls != 1 {
			t.Fatalf("got %v after %d calls, want boom after 1", err, ln.calls)
		}

		done := make(chan struct{})
		ln = &scriptedListener{next: func(int) (net.Conn, error) { return nil, acceptError(syscall.EMFILE) }}
		a = acceptor{ln: ln, log: slog.New(&countingHandler{}), done: done}
		go func() {
			time.Sleep(3 * time.Second)
			close(done)
		}()
		if _, err := a.accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("got %v when the router closed during a back-off, want net.ErrClosed", err)
		}
	})
}

// Out of file descriptors, Serve kept on: before, EMFILE ended it and with
// it pgswitch.
func TestServeSurvivesEMFILE(t *testing.T) {
	cfg, err := config.Parse([]byte("listen: 127.0.0.1:0\ndatabases:\n  db:\n    servers: [{host: 127.0.0.1, port: 1}]\nusers:\n  u:\n    auth: trust\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ln := &scriptedListener{next: func(call int) (net.Conn, error) {
		if call <= 5 {
			return nil, acceptError(syscall.EMFILE)
		}
		return nil, net.ErrClosed
	}}
	if err := r.Serve(ln); err != nil || ln.calls != 6 {
		t.Fatalf("Serve returned %v after %d accepts, want nil after 6 (5 EMFILE, then closed)", err, ln.calls)
	}
}

// Connections that have not sent their startup packet hold a slot of
// pool.max_startup_conn each; beyond it, new connections wait in the listen
// backlog (no descriptor taken) until a slot frees.
func TestStartupSlotsBoundHalfOpenConnections(t *testing.T) {
	noLeaks(t)
	fp := newFakePG(t, false)
	r, addr := fakeRouter(t, 2, fp)
	cfg := *r.Config()
	cfg.Pool.MaxStartupConn = 2
	if err := r.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	var silent []net.Conn
	for range 2 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		silent = append(silent, nc)
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.startup.count() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections in their startup phase, want the 2 silent ones", r.startup.count())
		}
		time.Sleep(5 * time.Millisecond)
	}

	served := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, "postgres://u@"+addr+"/db?sslmode=disable")
		if err == nil {
			_, err = c.Exec(ctx, "SELECT 1")
			c.Close(ctx)
		}
		served <- err
	}()
	// A slow machine only makes this wait less likely to end early.
	select {
	case err := <-served:
		t.Fatalf("a third client was served (%v) while two connections held the startup slots", err)
	case <-time.After(300 * time.Millisecond):
	}
	if n := r.startup.count(); n != 2 {
		t.Fatalf("%d connections in their startup phase, want 2", n)
	}
	silent[0].Close()
	if err := <-served; err != nil {
		t.Fatalf("the waiting client, once a slot freed: %v", err)
	}
	silent[1].Close()
	// What stays taken is the slot Serve holds for the next connection
	// while it waits in Accept.
	for r.startup.count() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d startup slots still taken after the clients left", r.startup.count())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

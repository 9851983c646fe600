package router

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/wire"
)

func TestMaxPeerIDAgrees(t *testing.T) {
	if config.MaxPeerID != wire.MaxPeerID {
		t.Fatalf("config.MaxPeerID %d, wire.MaxPeerID %d: want the same", config.MaxPeerID, wire.MaxPeerID)
	}
}

// peer makes r the instance id of a group whose addresses are peers.
func peer(t *testing.T, r *Router, id int, peers map[int]string) {
	t.Helper()
	cfg := *r.Config()
	cfg.PeerID, cfg.Peers = id, peers
	if err := r.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
}

// sendCancel sends a CancelRequest for k to addr and waits until the other
// end closes the connection, as libpq does.
func sendCancel(t *testing.T, network, addr string, k wire.CancelKey) {
	t.Helper()
	nc, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := nc.Write(k.AppendCancelRequest(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("cancel connection to %s: got %v, want EOF", addr, err)
	}
}

func keyOf(c *pgx.Conn) wire.CancelKey {
	return wire.CancelKey{ProcessID: c.PgConn().PID(), SecretKey: binary.BigEndian.Uint32(c.PgConn().SecretKey())}
}

// A client of instance A waiting for a server connection sends its cancel
// request to instance B (as a load balancer may): B forwards it to A, the
// client's wait ends with 57014, and the other client of A, whose
// transaction holds the only connection, goes on.
func TestCancelForwardedToPeer(t *testing.T) {
	noLeaks(t)
	pg := newFakePG(t, false)
	a, addrA := fakeRouter(t, 1, pg)
	b, addrB := fakeRouter(t, 1, pg)
	peers := map[int]string{1: addrA, 2: addrB}
	peer(t, a, 1, peers)
	peer(t, b, 2, peers)

	holder := connect(t, addrA, pgx.QueryExecModeSimpleProtocol, false)
	tx, err := holder.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waiter := connect(t, addrA, pgx.QueryExecModeSimpleProtocol, false)
	k := keyOf(waiter)
	if k.Peer() != 1 {
		t.Fatalf("instance 1 gave out a key of peer %d", k.Peer())
	}
	errc := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(context.Background(), "SELECT 1")
		errc <- err
	}()
	deadline := time.Now().Add(15 * time.Second)
	for err = nil; ; {
		// The wait may not have begun yet: cancel until it ends.
		sendCancel(t, "tcp", addrB, k)
		select {
		case err = <-errc:
		case <-time.After(50 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the waiting query was not cancelled through the peer")
			}
			continue
		}
		break
	}
	var pe *pgconn.PgError
	if !errorsAs(err, &pe) || pe.Code != "57014" {
		t.Fatalf("the waiting query: got %v, want 57014 from a cancel sent to the peer", err)
	}
	if got := scan(t, holder, "SELECT 3"); got != "3" {
		t.Fatalf("the other client's transaction after the cancel: got %q, want 3", got)
	}
	tx.Rollback(context.Background())
	if got := scan(t, waiter, "SELECT 2"); got != "2" {
		t.Fatalf("the cancelled client afterwards: got %q, want 2", got)
	}
}

// fakePeer records the cancel keys it is sent.
type fakePeer struct {
	ln   net.Listener
	mu   sync.Mutex
	keys []wire.CancelKey
}

func newFakePeer(t *testing.T, network, addr string) *fakePeer {
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			var b [16]byte
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(nc, b[:]); err == nil && binary.BigEndian.Uint32(b[4:]) == 80877102 {
				p.mu.Lock()
				p.keys = append(p.keys, wire.CancelKey{ProcessID: binary.BigEndian.Uint32(b[8:]), SecretKey: binary.BigEndian.Uint32(b[12:])})
				p.mu.Unlock()
			}
			nc.Close()
		}
	}()
	return p
}

func (p *fakePeer) received() []wire.CancelKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]wire.CancelKey(nil), p.keys...)
}

// A key of another peer is forwarded there with one hop fewer, over TCP
// or a unix socket; a key with no hop left, one of an unknown peer and an
// unknown key of the instance's own are not forwarded.
func TestForwardCancel(t *testing.T) {
	noLeaks(t)
	pg := newFakePG(t, false)
	r, addr := fakeRouter(t, 1, pg)
	tcp := newFakePeer(t, "tcp", "127.0.0.1:0")
	unix := newFakePeer(t, "unix", filepath.Join(t.TempDir(), ".s.PGSQL.6432"))
	peer(t, r, 1, map[int]string{1: addr, 2: tcp.ln.Addr().String(), 4: unix.ln.Addr().String()})

	toTCP, toUnix := wire.NewPeerCancelKey(2), wire.NewPeerCancelKey(4)
	spent := toTCP
	for range 3 {
		spent, _ = spent.Forwarded()
	}
	for _, k := range []wire.CancelKey{spent, wire.NewPeerCancelKey(3), wire.NewPeerCancelKey(1), toTCP, toUnix} {
		sendCancel(t, "tcp", addr, k)
	}
	// The router closes a cancel connection once the peer has closed its
	// own, so everything forwarded has arrived.
	want, _ := toTCP.Forwarded()
	if got := tcp.received(); len(got) != 1 || got[0] != want {
		t.Errorf("the TCP peer received %+v, want only %+v: the key sent, one hop spent", got, want)
	}
	want, _ = toUnix.Forwarded()
	if got := unix.received(); len(got) != 1 || got[0] != want {
		t.Errorf("the unix socket peer received %+v, want only %+v", got, want)
	}
}

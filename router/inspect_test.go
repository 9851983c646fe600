package router

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/wire"
)

// TestInspect: the snapshot shows a client in a transaction, the server
// connection linked to it, the database's counts and state; the admin
// primitives change what the next snapshot shows.
func TestInspect(t *testing.T) {
	noLeaks(t)
	primary := newFakePG(t, false)
	r, addr := fakeRouter(t, 2, primary)
	ctx := context.Background()
	c := connect(t, addr, pgx.QueryExecModeSimpleProtocol, false)
	if _, err := c.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	server := fmt.Sprintf("127.0.0.1:%d", primary.port())

	snap := r.Inspect()
	if len(snap.Clients) != 1 || snap.Clients[0].Server != server || snap.Clients[0].Database != "db" {
		t.Fatalf("clients %+v, want one of db linked to %s", snap.Clients, server)
	}
	if len(snap.Pools) != 1 || snap.Pools[0].Key.Server != server || len(snap.Pools[0].Conns) != 1 {
		t.Fatalf("pools %+v, want one to %s with one connection", snap.Pools, server)
	}
	conn := snap.Pools[0].Conns[0]
	if conn.ClientAddr == nil || conn.ClientAddr.String() != c.PgConn().Conn().LocalAddr().String() {
		t.Errorf("server connection linked to %v, want the client at %v", conn.ClientAddr, c.PgConn().Conn().LocalAddr())
	}
	if snap.Pools[0].Ref == "" || snap.Pools[0].Stats.Total != 1 {
		t.Errorf("pool %+v: want a ref and one connection open", snap.Pools[0])
	}
	db := snap.Databases["db"]
	if db.Paused || db.Disabled || db.Stats.Writes < 2 || db.Stats.Received == 0 {
		t.Errorf("database %+v: want running, two writes counted, bytes received", db)
	}
	if got := snap.Servers[server]; got.Writes < 2 {
		t.Errorf("server counts %+v, want two writes", got)
	}
	if snap.Config != r.Config() || snap.Topology == nil || snap.Started.IsZero() {
		t.Errorf("snapshot lacks the configuration, topology or start time: %+v", snap)
	}

	if err := r.Disable("db"); err != nil {
		t.Fatal(err)
	}
	r.PauseDatabase("db")
	e := wire.Fatalf(wire.CodeAdminShutdown, "terminating connection due to administrator command (KILL db)")
	if n := r.DisconnectDatabase("db", e); n != 1 {
		t.Errorf("DisconnectDatabase disconnected %d clients, want 1", n)
	}
	var pe *pgconn.PgError
	if _, err := c.Exec(ctx, "SELECT 1"); !errors.As(err, &pe) || pe.Code != wire.CodeAdminShutdown {
		t.Errorf("the client after DisconnectDatabase: got %v, want 57P01", err)
	}
	snap = r.Inspect()
	if db := snap.Databases["db"]; !db.Paused || !db.Disabled || len(snap.Clients) != 0 {
		t.Errorf("after DISABLE and KILL: database %+v, clients %+v; want paused, disabled, none", db, snap.Clients)
	}
	r.ResumeDatabase("db")
	if r.Inspect().Databases["db"].Paused {
		t.Error("still paused after ResumeDatabase")
	}
}

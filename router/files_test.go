package router

import (
	"testing"

	"github.com/pgswitch/pgswitch/config"
)

func TestFilesNeeded(t *testing.T) {
	cfg, err := config.Parse([]byte(`
pool: {size: 5, max_client_conn: 100, max_startup_conn: 10}
databases:
  a:
    pool_size: 3
    servers: [{host: 127.0.0.1, port: 5432}, {host: 127.0.0.1, port: 5433, maxconn: 4}]
  b:
    servers: [{host: 127.0.0.1, port: 5432}]
users:
  u: {auth: trust}
  v: {auth: trust, pool_size: 7}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := FilesNeeded(cfg)
	// 5432: a (3 for u, 7 for v) and b (5 for u, 7 for v) = 22;
	// 5433: a's 10 within maxconn 4; two health connections per server;
	// a catalog read per database.
	want := FileBudget{Clients: 100 + adminReserve, Startup: 10, Servers: 22 + 4 + 2*2 + 2, Own: ownFiles}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got.Total() != 100+adminReserve+10+32+ownFiles {
		t.Fatalf("total %d", got.Total())
	}
}

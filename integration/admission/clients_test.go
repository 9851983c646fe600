package admission

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/admin"
	"github.com/pgswitch/pgswitch/integration/testproxy"
)

// connectAs opens a connection through p, or returns the error.
func connectAs(ctx context.Context, p *testproxy.Proxy, user, password, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(p.URLAs(user, password, db))
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return pgx.ConnectConfig(ctx, cfg)
}

func wantTooMany(t *testing.T, who string, conn *pgx.Conn, err error) {
	t.Helper()
	if err == nil {
		conn.Close(context.Background())
		t.Fatalf("%s connected, want 53300", who)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "53300" || pe.Severity != "FATAL" {
		t.Fatalf("%s: got %v, want FATAL 53300", who, err)
	}
}

// When max_client_conn is reached, the admin console's users still get in,
// up to three more (PostgreSQL's superuser_reserved_connections, where
// PgBouncer keeps none); nobody else does.
func TestAdminConsoleBeyondMaxClientConn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := testproxy.Start(t, cl, testproxy.Options{
		DBs: []string{cl.Database}, Primary: true,
		PoolExtra: "  max_client_conn: 2\n",
		YAML:      "admin:\n  admin_users: [" + cl.User + "]\n  stats_users: [watcher]\n",
		ExtraUsers: "  watcher:\n    password: watcher-secret\n" +
			"  plain:\n    password: plain-secret\n",
	})
	p.R.SetAdmin(admin.New(p.R, admin.Options{Version: "test"}))

	for range 2 {
		conn, err := connectAs(ctx, p, cl.User, cl.Password, cl.Database)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
	}
	conn, err := connectAs(ctx, p, cl.User, cl.Password, cl.Database)
	wantTooMany(t, "a third client", conn, err)
	conn, err = connectAs(ctx, p, "plain", "plain-secret", "pgswitch")
	wantTooMany(t, "a user who is not the console's", conn, err)

	for i, u := range [][2]string{{cl.User, cl.Password}, {"watcher", "watcher-secret"}, {cl.User, cl.Password}} {
		console, err := connectAs(ctx, p, u[0], u[1], "pgswitch")
		if err != nil {
			t.Fatalf("console client %d (%s) with max_client_conn reached: %v", i+1, u[0], err)
		}
		defer console.Close(ctx)
		if _, err := console.Exec(ctx, "SHOW POOLS"); err != nil {
			t.Fatalf("console client %d: SHOW POOLS: %v", i+1, err)
		}
	}
	conn, err = connectAs(ctx, p, cl.User, cl.Password, "pgswitch")
	wantTooMany(t, "a fourth console client", conn, err)
}

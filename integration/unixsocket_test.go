package integration

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/admin"
)

// Clients that say host=/dir reach pgswitch's Unix socket unchanged, psql
// and pgx alike, even with sslmode=require (libpq uses no TLS on a socket,
// and pgswitch offers none there); several at once over a pool of one
// server connection each see what a direct connection shows, with their
// own settings; the admin console answers there too.
func TestUnixSocket(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	ctx := testCtx(t)
	direct := primaryConn(t, db)
	if _, err := direct.Exec(ctx, "CREATE TABLE t AS SELECT generate_series(1, 100) AS x"); err != nil {
		t.Fatal(err)
	}
	const q = "SELECT count(*), sum(x), current_database(), current_user FROM t"
	row := func(conn *pgx.Conn) (string, error) {
		var n, sum int64
		var dbName, who string
		err := conn.QueryRow(ctx, q).Scan(&n, &sum, &dbName, &who)
		return fmt.Sprintf("%d|%d|%s|%s", n, sum, dbName, who), err
	}
	want, err := row(direct)
	if err != nil {
		t.Fatal(err)
	}

	cert, key := writeCert(t) // TLS is offered over TCP, never on the socket
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, PoolSize: 1, Unix: true,
		YAML: fmt.Sprintf("tls: {cert_file: %q, key_file: %q}\nadmin:\n  admin_users: [%s]\n", cert, key, cl.User)})
	socket := fmt.Sprintf("%s/.s.PGSQL.%d", p.SocketDir, p.Port)
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o777 {
		t.Fatalf("socket file: %v, %v; want a socket with mode 0777", fi, err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 4 {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, p.SocketConnString(cl.User, cl.Password, db))
			if err != nil {
				errs <- fmt.Errorf("pgx %d: connect over the socket: %w", i, err)
				return
			}
			defer conn.Close(ctx)
			name := "client" + strconv.Itoa(i)
			if _, err := conn.Exec(ctx, "SET application_name = "+name); err != nil {
				errs <- err
				return
			}
			for range 20 {
				got, err := row(conn)
				var app string
				if err == nil {
					err = conn.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&app)
				}
				if err != nil || got != want || app != name {
					errs <- fmt.Errorf("pgx %d: got %q, application_name %q, %v; want %q, %s", i, got, app, err, want, name)
					return
				}
			}
		})
	}
	for i, sslmode := range []string{"prefer", "require", "disable"} {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, clientTool(t, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", q)
			cmd.Env = append(os.Environ(), "PGHOST="+p.SocketDir, "PGPORT="+strconv.Itoa(p.Port), "PGUSER="+cl.User,
				"PGPASSWORD="+cl.Password, "PGDATABASE="+db, "PGSSLMODE="+sslmode, "PGCONNECT_TIMEOUT=30")
			out, err := cmd.CombinedOutput()
			if got := strings.TrimSpace(string(out)); err != nil || got != want {
				errs <- fmt.Errorf("psql %d (sslmode=%s) over the socket: %q, %v; want %q", i, sslmode, got, err, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// The admin console, addressed as over TCP: the database "pgswitch".
	p.R.SetAdmin(admin.New(p.R, admin.Options{Version: "test", Log: quiet}))
	console, err := pgx.Connect(ctx, p.SocketConnString(cl.User, cl.Password, "pgswitch")+" default_query_exec_mode=simple_protocol")
	if err != nil {
		t.Fatalf("admin console over the socket: %v", err)
	}
	defer console.Close(ctx)
	rows, err := console.Query(ctx, "SHOW POOLS")
	if err != nil {
		t.Fatal(err)
	}
	pools, _ := pgx.CollectRows(rows, pgx.RowToMap)
	if rows.Err() != nil || len(pools) == 0 {
		t.Fatalf("SHOW POOLS over the socket: %d rows, %v", len(pools), rows.Err())
	}

	// SHOW CLIENTS names a socket client's address as PgBouncer does:
	// "unix", with the port in local_port.
	client, err := pgx.Connect(ctx, p.SocketConnString(cl.User, cl.Password, db))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(ctx)
	rows, err = console.Query(ctx, "SHOW CLIENTS")
	if err != nil {
		t.Fatal(err)
	}
	clients, _ := pgx.CollectRows(rows, pgx.RowToMap)
	sawSocket := false
	for _, c := range clients {
		if c["addr"] == "unix" {
			sawSocket = true
			if c["local_addr"] != "unix" || fmt.Sprint(c["local_port"]) != fmt.Sprint(p.Port) {
				t.Errorf("a socket client's local address: %v:%v, want unix:%d", c["local_addr"], c["local_port"], p.Port)
			}
		}
	}
	if !sawSocket {
		t.Errorf("SHOW CLIENTS over the socket shows no client with addr unix: %v", clients)
	}

	// SSLRequest: 'N' on the socket as PostgreSQL answers there, 'S' over TCP.
	for _, c := range []struct{ network, addr, want string }{{"unix", socket, "N"}, {"tcp", p.Addr, "S"}} {
		got, err := sslAnswer(c.network, c.addr)
		if err != nil || got != c.want {
			t.Errorf("SSLRequest over %s: got %q, %v; want %q", c.network, got, err, c.want)
		}
	}
}

// sslAnswer sends an SSLRequest and returns the one-byte answer.
func sslAnswer(network, addr string) (string, error) {
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		return "", err
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil {
		return "", err
	}
	return string(b), nil
}

// peer authentication takes the OS user at the other end of the socket:
// its own name, or one peer_map allows; anyone else, and anyone over TCP,
// is refused with 28000.
func TestPeerAuth(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	ctx := testCtx(t)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{me.Username, "peer_mapped", "peer_other"} {
		createRole(t, r)
	}
	users := "users:\n"
	for _, r := range []string{me.Username, "peer_mapped", "peer_other"} {
		users += fmt.Sprintf("  %q:\n    auth: peer\n    server_password: %q\n", r, cl.Password)
	}
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, Unix: true, ExtraUsers: users,
		YAML: fmt.Sprintf("peer_map:\n  %q: [peer_mapped]\n", me.Username)})
	for _, c := range []struct {
		role string
		tcp  bool
		ok   bool
	}{
		{me.Username, false, true},
		{"peer_mapped", false, true},
		{"peer_other", false, false},
		{"peer_mapped", true, false},
	} {
		dsn := p.SocketConnString(c.role, "", db)
		if c.tcp {
			dsn = p.URLAs(c.role, "", db)
		}
		conn, err := pgx.Connect(ctx, dsn)
		if c.ok {
			if err != nil {
				t.Errorf("%s (OS user %s): %v", c.role, me.Username, err)
				continue
			}
			var who string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != c.role {
				t.Errorf("%s: current_user %q, %v", c.role, who, err)
			}
			conn.Close(ctx)
			continue
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "28000" || pe.Message != fmt.Sprintf("peer authentication failed for user %q", c.role) {
			t.Errorf("%s (tcp %v): got %v, want 28000 peer authentication failed", c.role, c.tcp, err)
		}
		if conn != nil {
			conn.Close(ctx)
		}
	}
}

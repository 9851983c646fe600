package main

import (
	"context"
	be "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Two pgswitch instances run as one: each gives out cancel keys carrying
// its peer_id and forwards the others' to them, so a cancel sent to either
// instance (as a load balancer would) cancels the query it names, and no
// other. Peers are added by editing the files, which --watch-config
// reloads. The console commands then address both at once.
func TestPeersCancelAndStatus(t *testing.T) {
	cl := startCluster(t)
	base := func(id int) string { return serveConfig(cl, true, fmt.Sprintf("peer_id: %d\n", id)) }
	a := startServe(t, base(1), "--watch-config", "100ms")
	b := startServe(t, base(2), "--watch-config", "100ms")
	peers := fmt.Sprintf("peers:\n  1: %s\n  2: %s\n", a.addr, b.addr)
	for i, s := range []*server{a, b} {
		text := serveConfig(cl, true, fmt.Sprintf("peer_id: %d\n%s", i+1, peers))
		if err := os.WriteFile(s.path+".new", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(s.path+".new", s.path); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*server{a, b} {
		eventually(t, "the edited file reloaded", func() error {
			if !strings.Contains(s.logs.String(), "configuration reloaded") {
				return errors.New(s.logs.String())
			}
			return nil
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type running struct {
		conn *pgx.Conn
		done chan error
	}
	start := func(s *server, alias string) running {
		c, err := pgx.Connect(ctx, s.url(cl, cl.Database))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		r := running{c, make(chan error, 1)}
		go func() {
			_, err := c.Exec(ctx, "SELECT pg_sleep(120) AS "+alias)
			r.done <- err
		}()
		return r
	}
	x, y, z := start(a, "x"), start(a, "y"), start(b, "z")
	// cancelThrough sends r's cancel request to s until r's query ends
	// (a cancel that comes before the query reached its server is lost, as
	// with PostgreSQL): it must end with 57014.
	cancelThrough := func(what string, s *server, r running) {
		t.Helper()
		pid := r.conn.PgConn().PID()
		secret := be.BigEndian.Uint32(r.conn.PgConn().SecretKey())
		deadline := time.Now().Add(time.Minute)
		for {
			sendCancel(t, s.addr, pid, secret)
			select {
			case err := <-r.done:
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "57014" {
					t.Fatalf("%s: got %v, want 57014", what, err)
				}
				return
			case <-time.After(200 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the query was not cancelled", what)
			}
		}
	}
	stillRunning := func(what string, rs ...running) {
		t.Helper()
		for _, r := range rs {
			select {
			case err := <-r.done:
				t.Fatalf("%s: another client's query ended: %v", what, err)
			default:
			}
		}
	}
	cancelThrough("a client of instance 1 cancelled through instance 2", b, x)
	stillRunning("after cancelling x", y, z)
	cancelThrough("a client of instance 2 cancelled through instance 1", a, z)
	stillRunning("after cancelling z", y)
	cancelThrough("a client of instance 1 cancelled through instance 1", a, y)
	if _, err := x.conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("a cancelled client's next query: %v", err)
	}

	// The console commands over both instances, and a third that is down.
	urlA, urlB := a.url(cl, "pgswitch"), b.url(cl, "pgswitch")
	both := []string{"--admin-url", urlA, "--admin-url", urlB}
	out := mustCLI(t, nil, append([]string{"status"}, both...)...)
	for _, s := range []*server{a, b} {
		if strings.Count(out, s.addr) < 1+3+1 { // version, three servers, one database
			t.Errorf("status over both: instance %s has fewer than 5 rows:\n%s", s.addr, out)
		}
	}
	tables := strings.Split(out, "\n\n")
	if len(tables) != 3 {
		t.Fatalf("status over both: got %d tables, want 3:\n%s", len(tables), out)
	}
	checkAligned(t, tables[0], "INSTANCE", "VERSION")
	checkAligned(t, tables[1], "INSTANCE", "SERVER", "ROLE", "STATE")
	checkAligned(t, tables[2], "INSTANCE", "NAME", "ROUTE", "PAUSED")

	if out := mustCLI(t, nil, append([]string{"pause", cl.Database}, both...)...); !strings.Contains(out, a.addr+": paused: "+cl.Database) ||
		!strings.Contains(out, b.addr+": paused: "+cl.Database) {
		t.Fatalf("pause over both:\n%s", out)
	}
	var st struct {
		Instances []map[string]any `json:"instances"`
		Databases []map[string]any `json:"databases"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, nil, append([]string{"status", "--json"}, both...)...)), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Instances) != 2 || len(st.Databases) != 2 {
		t.Fatalf("status --json over both: %+v", st)
	}
	for _, db := range st.Databases {
		if db["paused"] != float64(1) || (db["instance"] != a.addr && db["instance"] != b.addr) {
			t.Errorf("status --json over both after pause: %v", db)
		}
	}
	mustCLI(t, nil, append([]string{"resume"}, both...)...)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	out, errOut, code := cli(t, nil, append([]string{"servers", "--admin-url", strings.Replace(urlA, a.addr, down, 1)}, both...)...)
	if code != 1 || !strings.Contains(errOut, down) || !strings.Contains(errOut, "cannot reach") ||
		strings.Count(strings.TrimSpace(errOut), "\n") != 0 || strings.Count(out, a.addr) != 3 || strings.Count(out, b.addr) != 3 {
		t.Errorf("servers with one instance down: exit %d\nstdout:\n%sstderr:\n%s\nwant both others' three servers, one error line naming %s, exit 1",
			code, out, errOut, down)
	}
}

// sendCancel sends a CancelRequest to addr and waits until pgswitch closes
// the connection, as libpq does.
func sendCancel(t *testing.T, addr string, pid, secret uint32) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	msg := be.BigEndian.AppendUint32(nil, 16)
	msg = be.BigEndian.AppendUint32(msg, 80877102)
	msg = be.BigEndian.AppendUint32(msg, pid)
	msg = be.BigEndian.AppendUint32(msg, secret)
	if _, err := nc.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("cancel connection to %s: got %v, want EOF", addr, err)
	}
}

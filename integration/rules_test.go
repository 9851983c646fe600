package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/config"
)

// rules refuses TRUNCATE (first: the first rule that matches decides),
// keeps the billing schema on the primary and routes reports to one named
// replica, reportsTo: the entries of routing.rules.
func rules(reportsTo string, refuseTruncate bool) string {
	s := ""
	if refuseTruncate {
		s += "    - name: no-truncate\n      match: {query: '(?i)^\\s*truncate'}\n" +
			"      reject: {code: P0001, message: TRUNCATE is refused here}\n"
	}
	return s + "    - name: billing\n      match: {tables: 'billing.*'}\n      route: primary\n" +
		"    - name: reports\n      match: {application_name: 'reports*'}\n      server: " + reportsTo + "\n"
}

// TestRoutingRules: several clients at once over a pool of one per server,
// some of them "reports": a rule sends their reads to replica2 (by
// inet_server_port()), another keeps queries on billing.* on the primary
// for everyone, one refuses TRUNCATE with its SQLSTATE wherever it comes
// (inside a transaction the transaction fails, as after any error). A
// reload changes the outcome: reports go to replica1 and TRUNCATE passes.
func TestRoutingRules(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	setup := primaryConn(t, db)
	ctx := testCtx(t)
	for _, sql := range []string{
		"CREATE SCHEMA billing",
		"CREATE TABLE billing.invoices (id int)",
		"INSERT INTO billing.invoices VALUES (1), (2)",
		"CREATE TABLE scratch (id int)",
		"INSERT INTO scratch VALUES (1)",
	} {
		if _, err := setup.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	replicated(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, PoolSize: 1, YAML: "routing:\n  rules:\n" + rules("replica2", true),
		Consistency: config.ConsistencyEventual})
	primary, replica1, replica2 := cl.Primary.Port, cl.Replicas[0].Port, cl.Replicas[1].Port
	replicas := map[int]bool{replica1: true, replica2: true}

	type client struct {
		conn    *pgx.Conn
		reports bool
	}
	connect := func(app string, mode pgx.QueryExecMode) *pgx.Conn {
		cfg, err := pgx.ParseConfig(p.URL(db))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DefaultQueryExecMode = mode
		cfg.RuntimeParams["application_name"] = app
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	var clients []client
	for i, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		clients = append(clients, client{connect(fmt.Sprintf("reports-%d", i), mode), true}, client{connect("web", mode), false})
	}

	// run has every client run its queries at once; check says what each
	// must see.
	run := func(t *testing.T, check func(c client) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, len(clients))
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := check(c); err != nil {
					errs <- fmt.Errorf("application %q: %w", c.conn.Config().RuntimeParams["application_name"], err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	port := func(c client, sql string) (int, error) {
		var port int
		err := c.conn.QueryRow(ctx, sql).Scan(&port)
		return port, err
	}
	routes := func(reportsPort int) func(c client) error {
		return func(c client) error {
			for range 20 {
				got, err := port(c, "SELECT inet_server_port()")
				switch {
				case err != nil:
					return err
				case c.reports && got != reportsPort:
					return fmt.Errorf("a report ran on port %d, want %d", got, reportsPort)
				case !c.reports && !replicas[got]:
					return fmt.Errorf("a read ran on port %d, not a replica", got)
				}
				if got, err = port(c, "SELECT inet_server_port() FROM billing.invoices LIMIT 1"); err != nil {
					return err
				} else if got != primary {
					return fmt.Errorf("a billing read ran on port %d, want the primary's %d", got, primary)
				}
			}
			return nil
		}
	}
	refused := func(err error) error {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "P0001" || pe.Message != "TRUNCATE is refused here" {
			return fmt.Errorf("TRUNCATE: got %v, want P0001 TRUNCATE is refused here", err)
		}
		return nil
	}

	t.Run("routes", func(t *testing.T) { run(t, routes(replica2)) })
	t.Run("reject", func(t *testing.T) {
		run(t, func(c client) error {
			if _, err := c.conn.Exec(ctx, "TRUNCATE scratch"); refused(err) != nil {
				return refused(err)
			}
			tx, err := c.conn.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "truncate scratch"); refused(err) != nil {
				return refused(err)
			}
			// As after any error, PostgreSQL fails the rest of the transaction.
			var pe *pgconn.PgError
			if _, err := tx.Exec(ctx, "SELECT 1"); !errors.As(err, &pe) || pe.Code != "25P02" {
				return fmt.Errorf("after the refusal in a transaction: got %v, want 25P02", err)
			}
			return nil
		})
		var n int
		if err := setup.QueryRow(ctx, "SELECT count(*) FROM scratch").Scan(&n); err != nil || n != 1 {
			t.Fatalf("scratch has %d rows (%v) after refused TRUNCATEs, want 1", n, err)
		}
	})

	var why []string
	for _, r := range p.R.Routes(0) {
		if r.Database == db {
			why = append(why, r.Route+" "+r.Rule+" "+r.Query)
		}
	}
	for _, want := range []string{"replica rule reports: server replica2 SELECT inet_server_port()",
		"primary rule billing: primary SELECT inet_server_port() FROM billing.invoices"} {
		found := false
		for _, w := range why {
			found = found || strings.HasPrefix(w, want)
		}
		if !found {
			t.Errorf("SHOW ROUTES has no line %q: %q", want, why)
		}
	}

	text := strings.Replace(p.Text, rules("replica2", true), rules("replica1", false), 1)
	if text == p.Text {
		t.Fatal("the rules are not in the configuration's text")
	}
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.R.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	t.Run("after reload", func(t *testing.T) { run(t, routes(replica1)) })
	if _, err := clients[0].conn.Exec(ctx, "TRUNCATE scratch"); err != nil {
		t.Fatalf("TRUNCATE after the rule was removed: %v", err)
	}
}

// Package maintenance runs PAUSE, a restart of the primary and RESUME under
// load through pgswitch, against a cluster of its own: restarting servers
// would disturb other packages' tests.
package maintenance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgswitch/pgswitch/admin"
	"github.com/pgswitch/pgswitch/integration/testproxy"
	"github.com/pgswitch/pgswitch/internal/pgcluster"
)

var cl *pgcluster.Cluster

func TestMain(m *testing.M) { os.Exit(pgcluster.Main(m, pgcluster.Options{}, &cl)) }

var (
	failedRe    = regexp.MustCompile(`number of failed transactions: (\d+)`)
	processedRe = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
)

// TestZeroDowntimeRestart restarts the primary under pgbench load between
// PAUSE and RESUME: pgbench must see no failed transaction.
func TestZeroDowntimeRestart(t *testing.T) {
	p := testproxy.Start(t, cl, testproxy.Options{
		DBs:      []string{cl.Database},
		PoolSize: 8,
		YAML: "timeouts:\n  query_wait: 60s\n  pause: 60s\n" +
			"admin:\n  admin_users: [" + cl.User + "]\n",
	})
	p.R.SetAdmin(admin.New(p.R, admin.Options{Version: "test", Log: quiet}))
	host, port, _ := net.SplitHostPort(p.Addr)
	env := append(os.Environ(), "PGHOST="+host, "PGPORT="+port, "PGUSER="+cl.User,
		"PGPASSWORD="+cl.Password, "PGDATABASE="+cl.Database, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=30")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	initCmd := exec.CommandContext(ctx, testproxy.Tool(t, cl, "pgbench"), "-i", "-q", "-s", "1")
	initCmd.Env = env
	if out, err := initCmd.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}

	bench := exec.CommandContext(ctx, testproxy.Tool(t, cl, "pgbench"), "-c", "8", "-j", "2", "-T", "20", "-P", "2")
	bench.Env = env
	var out testproxy.Output
	bench.Stdout, bench.Stderr = &out, &out
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	benchDone := make(chan struct{})
	var benchErr error
	go func() {
		benchErr = bench.Wait()
		close(benchDone)
	}()

	acfg, err := pgx.ParseConfig(p.URL("pgswitch"))
	if err != nil {
		t.Fatal(err)
	}
	acfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	console, err := pgx.ConnectConfig(ctx, acfg)
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close(ctx)

	// Let pgbench get going: transactions are flowing once the stats move.
	testproxy.Eventually(t, time.Minute, "pgbench running", func() error {
		select {
		case <-benchDone: // a pgbench that gave up says why
			return fmt.Errorf("pgbench exited before the pause (%v):\n%s", benchErr, out.String())
		default:
		}
		return atLeast(ctx, console, 200)
	})
	if _, err := console.Exec(ctx, "PAUSE "+cl.Database); err != nil {
		t.Fatalf("PAUSE: %v", err)
	}
	// PAUSE returned: no server connection of the database is open.
	var open int
	if err := console.QueryRow(ctx, "SHOW DATABASES").Scan(scanColumns(19, 12, &open)...); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Fatalf("after PAUSE, %d server connections are open", open)
	}
	started := postmasterStart(t, ctx)
	if err := cl.RestartServer(cl.Primary, "fast"); err != nil {
		t.Fatalf("restart the primary: %v", err)
	}
	if again := postmasterStart(t, ctx); !again.After(started) {
		t.Fatalf("the primary did not restart: started %v, then %v", started, again)
	}
	if _, err := console.Exec(ctx, "RESUME"); err != nil {
		t.Fatalf("RESUME: %v", err)
	}
	<-benchDone
	if benchErr != nil {
		t.Fatalf("pgbench: %v\n%s", benchErr, out.String())
	}
	text := out.String()
	m := processedRe.FindStringSubmatch(text)
	if m == nil || m[1] == "0" {
		t.Fatalf("pgbench processed nothing:\n%s", text)
	}
	if f := failedRe.FindStringSubmatch(text); f == nil || f[1] != "0" {
		t.Fatalf("pgbench failed transactions (want 0):\n%s", text)
	}
	t.Logf("pgbench through PAUSE, restart, RESUME:\n%s", text)
}

// atLeast checks that the database has routed n units of work.
func atLeast(ctx context.Context, console *pgx.Conn, n int) error {
	rows, err := console.Query(ctx, "SHOW STATS")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		vals := rows.RawValues()
		if string(vals[0]) != cl.Database {
			continue
		}
		got, _ := strconv.Atoi(string(vals[2])) // total_query_count
		if got >= n {
			return nil
		}
		return errNotYet(got)
	}
	return errNotYet(-1)
}

type errNotYet int

func (e errNotYet) Error() string { return "units routed so far: " + strconv.Itoa(int(e)) }

// scanColumns returns Scan destinations for a row of n text columns that
// keeps column i in dest.
func scanColumns(n, i int, dest *int) []any {
	out := make([]any, n)
	for k := range out {
		if k == i {
			out[k] = dest
		} else {
			out[k] = new(any)
		}
	}
	return out
}

// postmasterStart asks the primary directly when it started.
func postmasterStart(t *testing.T, ctx context.Context) time.Time {
	t.Helper()
	conn, err := pgx.Connect(ctx, cl.DSN(cl.Primary))
	if err != nil {
		t.Fatalf("connect to the primary: %v", err)
	}
	defer conn.Close(ctx)
	var at time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_postmaster_start_time()").Scan(&at); err != nil {
		t.Fatal(err)
	}
	return at
}

// quiet discards the admin console's logs.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

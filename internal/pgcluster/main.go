package pgcluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// startTimeout bounds Start inside Main; a healthy Start takes seconds.
const startTimeout = 3 * time.Minute

// logEnv set to anything non-empty sends server logs to stderr in Main.
const logEnv = "PGSWITCH_CLUSTER_LOG"

// Main runs an integration test package against its own cluster:
//
//	var cl *pgcluster.Cluster
//	func TestMain(m *testing.M) { os.Exit(pgcluster.Main(m, pgcluster.Options{}, &cl)) }
//
// It starts the cluster into *cl, runs m.Run and stops the cluster. When
// PostgreSQL is not installed it says why and returns 1 if $CI is "true" (tests
// must not pass by skipping in CI), else prints SKIP and returns 0 without
// running the tests. A cluster that is installed but fails to start is always
// a failure.
func Main(m interface{ Run() int }, opts Options, cl **Cluster) int {
	return runMain(m, opts, cl, os.Stderr)
}

func runMain(m interface{ Run() int }, opts Options, cl **Cluster, stderr io.Writer) int {
	if _, err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(stderr, "FAIL: integration tests need PostgreSQL and CI=true: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "\n"+
			"**********************************************************************\n"+
			"SKIP: integration tests NOT RUN: %v\n"+
			"**********************************************************************\n\n", err)
		// go test hides the output of a passing package unless -v; this line
		// makes its summary read "ok … [no tests to run]" instead of a plain ok.
		fmt.Fprintln(stderr, "testing: warning: no tests to run")
		return 0
	}
	if opts.Log == nil && os.Getenv(logEnv) != "" {
		opts.Log = stderr
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	began := time.Now()
	c, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "FAIL: start PostgreSQL cluster: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "cluster: primary and %d replicas started in %v under %s\n",
		len(c.Replicas), time.Since(began).Round(time.Millisecond), c.BaseDir)

	// pg_ctl puts the servers in their own session, so an interrupted test run
	// would leave them behind; stop them on the way out.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	defer func() {
		signal.Stop(sigs)
		close(done)
	}()
	go func() {
		select {
		case sig := <-sigs:
			fmt.Fprintf(stderr, "cluster: %v: stopping servers\n", sig)
			_ = c.Stop()
			os.Exit(1)
		case <-done:
		}
	}()

	*cl = c
	code := m.Run()
	if err := c.Stop(); err != nil {
		fmt.Fprintf(stderr, "FAIL: stop PostgreSQL cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

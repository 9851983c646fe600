// Package integration runs pgswitch end to end against a real PostgreSQL
// primary and two streaming replicas started by the cluster harness.
package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgswitch/pgswitch/integration/testproxy"
	"github.com/pgswitch/pgswitch/internal/pgcluster"
)

var cl *pgcluster.Cluster

func TestMain(m *testing.M) { os.Exit(pgcluster.Main(m, pgcluster.Options{}, &cl)) }

var dbSeq atomic.Int64

// newDatabase creates a database of its own for the test on the primary, so
// tests can run in parallel without seeing each other's tables.
func newDatabase(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t_%s_%d", strings.ToLower(sanitize(t.Name())), dbSeq.Add(1))
	if len(name) > 60 {
		name = name[len(name)-60:]
		name = "t" + name[1:]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := primaryConn(t, cl.Database)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	// Replicas can serve it once they replayed its creation.
	if err := cl.WaitReplicated(ctx); err != nil {
		t.Fatal(err)
	}
	return name
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// primaryConn connects straight to the primary, bypassing pgswitch.
func primaryConn(t *testing.T, db string) *pgx.Conn {
	t.Helper()
	return directConn(t, cl.Primary, db)
}

func directConn(t *testing.T, s *pgcluster.Server, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN(cl.User, cl.Password, db))
	if err != nil {
		t.Fatalf("connect to %s: %v", s.Name, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// proxy and proxyOptions are the shared test proxy, under short names.
type proxy = testproxy.Proxy
type proxyOptions = testproxy.Options

func startProxy(t *testing.T, o proxyOptions) *proxy { return testproxy.Start(t, cl, o) }

// ctx returns a context bounded generously for a loaded 2-core machine.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func eventually(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	testproxy.Eventually(t, within, what, check)
}

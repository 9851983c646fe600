// Package servertls tests pgswitch's TLS to servers end to end, against a
// primary and a replica with ssl = on and a certificate from a CA made for
// the run.
package servertls

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/pgswitch/pgswitch/integration/testpki"
	"github.com/pgswitch/pgswitch/internal/pgcluster"
)

var (
	cl *pgcluster.Cluster
	// pki holds the files of the run: the servers' CA, another CA, and
	// pgswitch's client certificate for the role certRole.
	pki struct {
		dir, caFile, otherCAFile, clientCert, clientKey string
	}
)

// certRole logs in to the servers with a client certificate alone.
const certRole = "pgswitch_cert"

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pgswitch-servertls-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	tlsFiles, err := makePKI(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: make certificates:", err)
		return 1
	}
	return pgcluster.Main(&setup{m: m}, pgcluster.Options{
		Replicas: 1,
		TLS:      tlsFiles,
		HBA:      []string{"hostssl all " + certRole + " 127.0.0.1/32 cert"},
	}, &cl)
}

// setup creates certRole once the cluster is up, then runs the tests.
type setup struct{ m *testing.M }

func (s *setup) Run() int {
	if err := createCertRole(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: create role:", err)
		return 1
	}
	return s.m.Run()
}

// makePKI makes the servers' CA and certificate (db.test, localhost,
// 127.0.0.1), another CA, and a client certificate for certRole.
func makePKI(dir string) (*pgcluster.TLS, error) {
	ca, err := testpki.NewCA("pgswitch test CA")
	if err != nil {
		return nil, err
	}
	other, err := testpki.NewCA("another CA")
	if err != nil {
		return nil, err
	}
	server, err := ca.Server("db.test", "db.test", "localhost", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	client, err := ca.Client(certRole)
	if err != nil {
		return nil, err
	}
	pki.dir = dir
	if pki.caFile, err = ca.WriteCA(dir, "ca"); err != nil {
		return nil, err
	}
	if pki.otherCAFile, err = other.WriteCA(dir, "other-ca"); err != nil {
		return nil, err
	}
	if pki.clientCert, pki.clientKey, err = client.Write(dir, "client"); err != nil {
		return nil, err
	}
	return &pgcluster.TLS{Cert: server.Cert, Key: server.Key, CA: ca.PEM}, nil
}

// logBuffer collects a router's log for a test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

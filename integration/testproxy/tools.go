package testproxy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pgswitch/pgswitch/internal/pgcluster"
)

// Tool finds a PostgreSQL client program (psql, pgbench): on PATH, or next
// to the cluster's server binaries.
func Tool(t testing.TB, cl *pgcluster.Cluster, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := filepath.Join(cl.BinDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found on PATH nor in %s", name, cl.BinDir)
	}
	return p
}

// Output collects a child process's output while the test reads it.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

package router

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgswitch/pgswitch/config"
)

func socketConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgsw-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg, err := config.Parse([]byte("unix_socket_dir: " + dir + "\n" + extra +
		"databases:\n  db: {servers: [{host: 127.0.0.1}]}\nusers:\n  u: {auth: trust}\n"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A socket file left by a process that died is removed and taken over;
// the listener's mode and group are the configured ones; closing it
// removes the file.
func TestListenUnixStale(t *testing.T) {
	cfg := socketConfig(t, "unix_socket_mode: '0770'\nunix_socket_group: '"+strconv.Itoa(os.Getgid())+"'\n")
	path := cfg.UnixSocketPath(6432)
	dead, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	dead.(*net.UnixListener).SetUnlinkOnClose(false)
	dead.Close() // the file stays, as after a crash

	var log bytes.Buffer
	ln, err := ListenUnix(cfg, 6432, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatalf("ListenUnix over a stale socket: %v", err)
	}
	if !strings.Contains(log.String(), "removed a stale Unix socket") {
		t.Errorf("log: got %q, want a line about the stale socket", log.String())
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o770 {
		t.Fatalf("socket file: %v, %v; want a socket with mode 0770", fi, err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new socket: %v", err)
	}
	c.Close()
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Close: Lstat %v, want the file removed", err)
	}
}

// A socket a live process accepts on is never taken, nor is a file that
// is not a socket removed.
func TestListenUnixRefuses(t *testing.T) {
	cfg := socketConfig(t, "")
	path := cfg.UnixSocketPath(6432)
	live, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ListenUnix(cfg, 6432, slog.Default())
	if err == nil || !strings.Contains(err.Error(), "is in use: another process") {
		t.Errorf("over a live socket: got %v, want it refused as in use", err)
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Errorf("the live socket no longer answers: %v", err)
	} else {
		c.Close()
	}
	live.Close()

	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ListenUnix(cfg, 6432, slog.Default())
	if err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Errorf("over a regular file: got %v, want it refused", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the regular file was removed: %v", err)
	}
	if got := filepath.Base(path); got != ".s.PGSQL.6432" {
		t.Errorf("socket name: got %s, want .s.PGSQL.6432", got)
	}
}

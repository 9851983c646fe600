package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serve listens on unix_socket_dir's .s.PGSQL.<port> beside TCP: a socket
// file left by a process that died is taken over (and logged), TLS is not
// offered there, and SIGTERM removes the file. No server is needed.
func TestServeUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "pgsw-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	path := filepath.Join(dir, fmt.Sprintf(".s.PGSQL.%d", port))
	dead, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	dead.(*net.UnixListener).SetUnlinkOnClose(false)
	dead.Close() // left behind, as by a process that was killed

	s := startServe(t, fmt.Sprintf("listen: 127.0.0.1:%d\nunix_socket_dir: %s\nunix_socket_mode: '0700'\n", port, dir)+
		"databases:\n  app: {servers: [{host: 127.0.0.1, port: 1}]}\nusers:\n  app: {password: secret}\n")
	eventually(t, "the Unix socket answers", func() error {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
			return err
		}
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil || b[0] != 'N' {
			return fmt.Errorf("SSLRequest: got %q, %v; want N", b, err)
		}
		return nil
	})
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket file: %v, %v; want mode 0700", fi, err)
	}
	if !strings.Contains(s.logs.String(), "removed a stale Unix socket") {
		t.Errorf("no log line about the stale socket:\n%s", s.logs.String())
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := s.exit(t); code != 0 {
		t.Fatalf("exit code %d, want 0\n%s", code, s.logs.String())
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after SIGTERM: Lstat %v, want the socket file removed", err)
	}
}

// With --config, an admin user whose auth is peer reaches the console
// over the Unix socket; others over TCP, as before.
func TestConsoleConnStringPeer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pgswitch.yaml")
	text := "listen: 127.0.0.1:6543\nunix_socket_dir: " + dir + "\nadmin:\n  admin_users: [ops, app]\n" +
		"databases:\n  app: {servers: [{host: 127.0.0.1}]}\nusers:\n  ops: {auth: peer}\n  app: {password: secret}\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ user, want string }{
		{"ops", fmt.Sprintf("host='%s' port=6543 user='ops' dbname=pgswitch", dir)},
		{"app", "postgres://app:secret@127.0.0.1:6543/pgswitch?sslmode=disable"},
	} {
		f := consoleFlags{configPath: path, user: c.user}
		got, err := f.connStrings()
		if err != nil || len(got) != 1 || got[0] != c.want {
			t.Errorf("%s: got %q, %v; want %q", c.user, got, err, c.want)
		}
	}
}

//go:build unix

package upgrade

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/wire"
)

// childEnv makes the test binary play the new process (runChild) instead
// of running tests: "serve", "exit" or "hang".
const childEnv = "PGSWITCH_UPGRADE_TEST_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}

// testKey is the key the child forwards as one it does not know.
var testKey = wire.CancelKey{ProcessID: 4242, SecretKey: 0xdeadbeef}

// runChild takes the handover; "serve" answers one connection on the
// inherited listener with its PID after forwarding testKey, then exits.
func runChild(role string) int {
	if role == "exit" {
		return 1 // as a binary that refuses its configuration: before it takes anything
	}
	in, err := Take()
	if err != nil || in == nil {
		fmt.Fprintln(os.Stderr, "take:", in, err)
		return 3
	}
	if _, ok := os.LookupEnv(envName); ok {
		fmt.Fprintln(os.Stderr, envName, "still set")
		return 3
	}
	switch role {
	case "hang":
		time.Sleep(time.Minute)
		return 1
	}
	ln, inherited, err := in.Listen(Key("listen", "127.0.0.1:0"), "tcp", "127.0.0.1:0")
	if err != nil || !inherited {
		fmt.Fprintln(os.Stderr, "listen:", inherited, err)
		return 3
	}
	in.ForwardCancel(testKey)
	if err := in.Ready(); err != nil {
		fmt.Fprintln(os.Stderr, "ready:", err)
		return 3
	}
	nc, err := ln.Accept()
	if err != nil {
		return 3
	}
	fmt.Fprintf(nc, "%d\n", os.Getpid())
	nc.Close()
	return 0
}

func start(t *testing.T, role string, ln net.Listener, cancel func(wire.CancelKey), timeout time.Duration) (*Successor, error) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, role)
	var lns []Listener
	if ln != nil {
		lns = []Listener{{Key: Key("listen", "127.0.0.1:0"), Listener: ln}}
	}
	return Start(Options{Listeners: lns, Cancel: cancel, Timeout: timeout, Path: self, Args: []string{}})
}

// TestHandover: the new process serves the listener handed to it, says
// so with its PID, and its unknown cancel keys come back to this process.
func TestHandover(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	keys := make(chan wire.CancelKey, 1)
	s, err := start(t, "serve", ln, func(k wire.CancelKey) { keys <- k }, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nonBlocking(t, ln)
	ln.Close() // the old process stops accepting: the socket stays the new one's
	nc, err := net.DialTimeout("tcp", ln.Addr().String(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Minute))
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil {
		t.Fatalf("read from the new process: %v", err)
	}
	if pid, _ := strconv.Atoi(strings.TrimSpace(line)); pid != s.PID || pid == os.Getpid() {
		t.Fatalf("served by pid %q, want the new process %d", line, s.PID)
	}
	select {
	case k := <-keys:
		if k != testKey {
			t.Fatalf("relayed key %+v, want %+v", k, testKey)
		}
	case <-time.After(time.Minute):
		t.Fatal("the forwarded cancel key never came back")
	}
}

// TestHandoverFails: a new process that exits, or does not serve in
// time, fails the upgrade; the old listener is untouched.
func TestHandoverFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := start(t, "exit", ln, nil, time.Minute); err == nil || !strings.Contains(err.Error(), "exited before serving") {
		t.Fatalf("a new process that exits: %v, want exited before serving", err)
	}
	nonBlocking(t, ln)
	if _, err := start(t, "hang", ln, nil, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not serving after") {
		t.Fatalf("a new process that hangs: %v, want not serving after", err)
	}
	nonBlocking(t, ln)
	// Still ours: a connection is accepted here.
	go net.Dial("tcp", ln.Addr().String())
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
	nc, err := ln.Accept()
	if err != nil {
		t.Fatalf("the old listener after failed upgrades: %v", err)
	}
	nc.Close()
}

// TestNoHandover: a process started anew inherits nothing and listens anew.
func TestNoHandover(t *testing.T) {
	in, err := Take()
	if in != nil || err != nil {
		t.Fatalf("Take without %s: %v, %v", envName, in, err)
	}
	ln, inherited, err := in.Listen(Key("listen", "127.0.0.1:0"), "tcp", "127.0.0.1:0")
	if err != nil || inherited {
		t.Fatalf("Listen: inherited %v, %v", inherited, err)
	}
	ln.Close()
	in.ForwardCancel(testKey)
	if err := in.Ready(); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeHandover(t *testing.T) {
	for _, bad := range []string{"", "{", `{"parent":1,"ready":3}`, `{"parent":1,"ready":3,"cancels":[4],"listeners":{"listen=x":0}}`, `{"parent":1,"ready":3,"cancels":[1]}`} {
		if _, err := decodeHandover(bad); err == nil {
			t.Errorf("decodeHandover(%q): no error", bad)
		}
	}
	h := &handover{Parent: 7, Ready: 4, Cancels: []int{5, 6}, Listeners: map[string]int{Key("listen", "[::1]:6432"): 3}}
	s, _ := h.encode()
	got, err := decodeHandover(s)
	if err != nil || got.Listeners["listen=[::1]:6432"] != 3 || got.Parent != 7 {
		t.Fatalf("round trip of %s: %+v, %v", s, got, err)
	}
}

// nonBlocking fails the test if ln's socket is in blocking mode: a handover
// must not change it, or a goroutine would block in accept(2) and closing
// the listener would wait for it.
func nonBlocking(t *testing.T, ln net.Listener) {
	t.Helper()
	rc, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags uintptr
	var errno syscall.Errno
	rc.Control(func(fd uintptr) {
		flags, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
	})
	if errno != 0 {
		t.Fatal(errno)
	}
	if flags&syscall.O_NONBLOCK == 0 {
		t.Fatal("the listener's socket is in blocking mode after the handover")
	}
}

// TestNotify: the state reaches NOTIFY_SOCKET as one datagram; without
// it, nothing is sent.
func TestNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify("READY=1"); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	if err := Notify("MAINPID=42\nREADY=1"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "MAINPID=42\nREADY=1" {
		t.Fatalf("received %q, %v", buf[:n], err)
	}
}

package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// startEcho runs a TCP server on loopback that answers each line with its
// name and the line, and says "bye" when the client half-closes.
func startEcho(t *testing.T, name string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err == io.EOF {
						io.WriteString(c, name+" bye\n")
						return
					}
					if err != nil {
						return
					}
					io.WriteString(c, name+" "+line)
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestTCPMode: bytes go both ways and half-closes pass; a dead server is
// skipped once fall connect checks failed; the backup serves only when no
// other server is up.
func TestTCPMode(t *testing.T) {
	s1 := startEcho(t, "redis01")
	s2 := startEcho(t, "redis02")
	bk := startEcho(t, "redis03")
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
listens:
  redis:
    mode: tcp
    binds: [127.0.0.1:0]
    check: {inter: 30ms, fall: 2, rise: 2, timeout: 5s}
    timeouts: {client: 1m, server: 1m}
    servers:
      - {name: redis01, addr: %q, maxconn: 10}
      - {name: redis02, addr: %q}
      - {name: redis03, addr: %q, backup: true}
`, s1.Addr(), s2.Addr(), bk.Addr()))
	addr := p.addr(t, "redis", 0)
	// talk sends two lines, half-closes, and returns everything answered.
	talk := func() string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(c, "PING\nGET k\n")
		c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(b)
	}
	seen := map[string]int{}
	for range 4 {
		got := talk()
		name := strings.Fields(got)[0]
		if want := fmt.Sprintf("%[1]s PING\n%[1]s GET k\n%[1]s bye\n", name); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
		seen[name]++
	}
	if seen["redis01"] != 2 || seen["redis02"] != 2 {
		t.Fatalf("round robin over 4 connections: %v", seen)
	}

	// A server whose very first check fails goes down at once; under load
	// that check may not have run yet.
	waitFor(t, func() bool {
		for _, l := range p.Status().Listens {
			for _, s := range l.Servers {
				if l.Name == "redis" && s.Name == "redis01" {
					return s.Checks > 0
				}
			}
		}
		return false
	}, "redis01 checked once")
	s1.Close() // redis01 dies
	waitFor(t, func() bool { up, _ := p.serverUp("redis", "redis01"); return !up }, "redis01 marked down")
	if !strings.Contains(p.log.String(), "failed_checks=2") {
		t.Fatalf("down without fall = 2 failed checks:\n%s", p.log.String())
	}
	for range 4 {
		if got := talk(); !strings.HasPrefix(got, "redis02 ") {
			t.Fatalf("with redis01 down: %q, want redis02", got)
		}
	}
	s2.Close()
	waitFor(t, func() bool { up, _ := p.serverUp("redis", "redis02"); return !up }, "redis02 marked down")
	if got := talk(); !strings.HasPrefix(got, "redis03 ") {
		t.Fatalf("with both down: %q, want the backup redis03", got)
	}
}

// TestTCPMaxConn: a second connection waits while the first holds the only
// slot, and goes through when it ends.
func TestTCPMaxConn(t *testing.T) {
	s1 := startEcho(t, "mc01")
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
listens:
  memcached:
    mode: tcp
    binds: [127.0.0.1:0]
    timeouts: {queue: 1m}
    servers: [{name: mc01, addr: %q, maxconn: 1, check: false}]
`, s1.Addr()))
	addr := p.addr(t, "memcached", 0)
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(first, "a\n")
	br1 := bufio.NewReader(first)
	if l, _ := br1.ReadString('\n'); l != "mc01 a\n" {
		t.Fatalf("first: %q", l)
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	io.WriteString(second, "b\n")
	waitFor(t, func() bool {
		for _, l := range p.Status().Listens {
			if l.Name == "memcached" {
				return l.Queue == 1
			}
		}
		return false
	}, "the second connection queued")
	first.Close()
	second.SetReadDeadline(time.Now().Add(30 * time.Second))
	if l, err := bufio.NewReader(second).ReadString('\n'); l != "mc01 b\n" {
		t.Fatalf("second after the first closed: %q %v", l, err)
	}
}

package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/edge/config"
)

// TestReloadKeepsSocketsAndDrains: a reload sends new requests to the new
// servers on the same socket, while a request in flight on the old
// configuration finishes; a configuration that cannot be applied changes
// nothing.
func TestReloadKeepsSocketsAndDrains(t *testing.T) {
	a1 := startApp(t, "app01")
	a2 := startApp(t, "app02")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bindAddr := ln.Addr().String()
	ln.Close() // a fixed port, so that the reload keeps the same bind
	text := func(app string) string {
		return fmt.Sprintf(`
access_log: {path: "off"}
listens:
  myapp:
    binds: [%q]
    servers: [{name: app, addr: %q, check: false}]
`, bindAddr, app)
	}
	p := startProxy(t, text(a1.addr))
	client := plainClient()
	url := "http://" + bindAddr

	slow := make(chan string, 1)
	go func() {
		_, body := get(t, client, url+"/slow")
		slow <- body
	}()
	waitFor(t, func() bool { return a1.inFlight.Load() == 1 }, "a request in flight on app01")

	cfg, err := config.Parse([]byte(text(a2.addr)))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, plainClient(), url+"/after"); body != "app02 /after" {
		t.Fatalf("after reload: %q, want app02", body)
	}
	a1.open()
	select {
	case body := <-slow:
		if body != "app01 /slow" {
			t.Fatalf("request in flight across the reload: %q", body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("request in flight across the reload never finished")
	}

	bad, err := config.Parse([]byte(strings.Replace(text(a1.addr), "binds: [", "binds: [{addr: 127.0.0.1:0, tls: {cert_dir: /nonexistent}}, ", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Reload(bad); err == nil || !strings.Contains(err.Error(), "cert") {
		t.Fatalf("reload with a missing certificate directory: %v", err)
	}
	if _, body := get(t, plainClient(), url+"/still"); body != "app02 /still" {
		t.Fatalf("after a refused reload: %q, want app02 still", body)
	}
}

// TestShutdownDrains: Shutdown stops accepting at once but lets a request
// in flight finish; past the timeout, what is left is closed.
func TestShutdownDrains(t *testing.T) {
	a := startApp(t, "app01")
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
listens:
  myapp:
    binds: [127.0.0.1:0]
    servers: [{name: app01, addr: %q, check: false}]
`, a.addr))
	addr := p.addr(t, "myapp", 0)
	slow := make(chan string, 1)
	go func() {
		_, body := get(t, plainClient(), "http://"+addr+"/slow")
		slow <- body
	}()
	waitFor(t, func() bool { return a.inFlight.Load() == 1 }, "a request in flight")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done <- p.Shutdown(ctx)
	}()
	waitFor(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, "the bind to close")
	select {
	case err := <-done:
		t.Fatalf("shutdown returned (%v) with a request in flight", err)
	default:
	}
	a.open()
	if body := <-slow; body != "app01 /slow" {
		t.Fatalf("in-flight request: %q", body)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	// A request that outlives the timeout is cut.
	b := startApp(t, "app02")
	p2 := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
listens:
  myapp:
    binds: [127.0.0.1:0]
    servers: [{name: app02, addr: %q, check: false}]
`, b.addr))
	addr2 := p2.addr(t, "myapp", 0)
	errc := make(chan error, 1)
	go func() {
		resp, err := plainClient().Get("http://" + addr2 + "/slow")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, func() bool { return b.inFlight.Load() == 1 }, "a request in flight")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p2.Shutdown(ctx); err == nil {
		t.Fatal("shutdown past its timeout reported no error")
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("request cut by shutdown reported success")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("request not cut after the shutdown timeout")
	}
}

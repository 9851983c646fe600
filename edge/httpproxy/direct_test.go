package httpproxy

import (
	"crypto/tls"
	"io"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/edge/internal/testpki"
)

// TestDirectHTTP2: an HTTP/2 request without a body reaches the server
// with the client's fields, X-Forwarded-For after the client's own, the
// proxy's X-Forwarded-Host and -Proto instead of the client's; the answer
// comes back without its hop-by-hop fields, chunked ones with their
// trailer.
func TestDirectHTTP2(t *testing.T) {
	t.Run("net/http", func(t *testing.T) { testDirectHTTP2(t, false) })
	t.Run("lean", func(t *testing.T) { testDirectHTTP2(t, true) })
}

// testDirectHTTP2 is TestDirectHTTP2 with net/http's server or the lean
// HTTP/2 loop.
func testDirectHTTP2(t *testing.T, lean bool) {
	var mu sync.Mutex
	var seen http.Header
	var seenHost string
	s := startRawServer(t, func(req *http.Request) (string, bool) {
		mu.Lock()
		seen, seenHost = req.Header.Clone(), req.Host
		mu.Unlock()
		switch req.URL.Path {
		case "/chunked":
			return "HTTP/1.1 200 OK\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: t\r\n\r\n", false
		case "/head":
			return "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", false
		}
		return "HTTP/1.1 201 Created\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nConnection: X-Hop\r\nX-Hop: h\r\n" +
			"Keep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok", false
	})
	l := newBenchListen(t, s.addr, "off")
	l.cfg.LeanHTTP2 = &lean
	ca := testpki.NewCA(t, "direct test CA")
	leaf := ca.Issue(t, []string{"a.test"}, time.Time{}, time.Time{})
	conf := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"h2", "http/1.1"}}
	ln := dispatchOn(t, l, conf)
	var h2 http.Protocols
	h2.SetHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &h2,
		TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: ca.Pool()}}, Timeout: time.Minute}
	url := "https://" + ln.Addr().String()

	req, _ := http.NewRequest(http.MethodGet, url+"/fields?q=1", nil)
	req.Host = "www.example.com"
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Host", "evil")
	req.Header.Set("X-Forwarded-Proto", "http")
	req.Header.Set("X-End-To-End", "kept")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 201 || string(body) != "ok" {
		t.Fatalf("answer %s %d %q", resp.Proto, resp.StatusCode, body)
	}
	if !reflect.DeepEqual(resp.Header["Set-Cookie"], []string{"a=1", "b=2"}) || resp.Header.Get("X-Hop") != "" ||
		resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("Connection") != "" {
		t.Fatalf("answer fields %v", resp.Header)
	}
	mu.Lock()
	h, host := seen, seenHost
	mu.Unlock()
	if host != "www.example.com" || !reflect.DeepEqual(h["X-Forwarded-For"], []string{"203.0.113.7", "127.0.0.1"}) ||
		h.Get("X-Forwarded-Host") != "www.example.com" || h.Get("X-Forwarded-Proto") != "https" || h.Get("X-End-To-End") != "kept" {
		t.Fatalf("the server saw Host %q and %v", host, h)
	}

	resp, err = client.Get(url + "/chunked")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" || resp.Trailer.Get("X-T") != "t" {
		t.Fatalf("chunked: %q trailer %v", body, resp.Trailer)
	}

	resp, err = client.Head(url + "/head")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != 1000 {
		t.Fatalf("HEAD: length %d", resp.ContentLength)
	}
}

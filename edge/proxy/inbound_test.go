package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/edge/internal/testpki"
)

// TestHTTPSWithSNIAndHTTP2 serves two certificates from a directory: each
// name gets its own, an unknown name the default; an HTTP/2 client
// negotiates h2 by ALPN; an HTTP/1.1 client reuses its connection.
func TestHTTPSWithSNIAndHTTP2(t *testing.T) {
	a := startApp(t, "app01")
	ca := testpki.NewCA(t, "edge test CA")
	dir := t.TempDir()
	ca.Issue(t, []string{"a.test"}, time.Time{}, time.Time{}).WriteCombined(t, filepath.Join(dir, "a.pem"))
	ca.Issue(t, []string{"b.test", "*.b.test"}, time.Time{}, time.Time{}).WriteCombined(t, filepath.Join(dir, "b.pem"))
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
admin: {listen: 127.0.0.1:0}
listens:
  myapp:
    binds:
      - 127.0.0.1:0
      - addr: 127.0.0.1:0
        tls: {cert_dir: %q, default_cert: b.pem}
    servers: [{name: app01, addr: %q, check: false}]
`, dir, a.addr))
	addrs := p.Addrs()["myapp"]
	if len(addrs) != 2 {
		t.Fatalf("binds %v", addrs)
	}
	plainAddr, tlsAddr := addrs[0], addrs[1]

	for _, tt := range []struct{ sni, wantCN string }{
		{"a.test", "a.test"}, {"b.test", "b.test"}, {"www.b.test", "b.test"}, {"unknown.test", "b.test"},
	} {
		c, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: tt.sni, RootCAs: ca.Pool(), InsecureSkipVerify: tt.sni == "unknown.test"})
		if err != nil {
			t.Fatalf("SNI %s: %v", tt.sni, err)
		}
		if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != tt.wantCN {
			t.Errorf("SNI %s: certificate %s, want %s", tt.sni, got, tt.wantCN)
		}
		c.Close()
	}

	// HTTP/2 by ALPN.
	var h2 http.Protocols
	h2.SetHTTP2(true)
	h2Client := &http.Client{Transport: &http.Transport{Protocols: &h2,
		TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: ca.Pool()}}, Timeout: time.Minute}
	resp, err := h2Client.Get("https://" + tlsAddr + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || resp.TLS.NegotiatedProtocol != "h2" || string(body) != "app01 /hello" {
		t.Fatalf("h2: proto %s alpn %q body %q", resp.Proto, resp.TLS.NegotiatedProtocol, body)
	}
	hdr, _ := a.header()
	if hdr.Get("X-Forwarded-Proto") != "https" || hdr.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Fatalf("h2 request reached the app with X-Forwarded-Proto %q, X-Forwarded-For %q", hdr.Get("X-Forwarded-Proto"), hdr.Get("X-Forwarded-For"))
	}

	// HTTP/1.1 over TLS: a client offering only http/1.1 gets it, and its
	// connection is reused.
	h1TLS := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(),
		NextProtos: []string{"http/1.1"}}}, Timeout: time.Minute}
	for _, c := range []struct {
		client *http.Client
		url    string
		proto  string
	}{
		{h1TLS, "https://" + tlsAddr, "https"},
		{plainClient(), "http://" + plainAddr, "http"},
	} {
		reused := 0
		for i := range 3 {
			ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused++
				}
			}})
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/r%d", c.url, i), nil)
			resp, err := c.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Proto != "HTTP/1.1" || string(body) != fmt.Sprintf("app01 /r%d", i) {
				t.Fatalf("%s: proto %s body %q", c.url, resp.Proto, body)
			}
		}
		if reused != 2 {
			t.Fatalf("%s: %d of 3 requests reused a connection, want 2", c.url, reused)
		}
		hdr, _ := a.header()
		if got := hdr.Get("X-Forwarded-Proto"); got != c.proto {
			t.Fatalf("%s: X-Forwarded-Proto %q, want %q", c.url, got, c.proto)
		}
	}

	// A client that comes back resumes its TLS session; the metrics tell
	// full handshakes from resumed ones.
	cache := tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		c, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(), ClientSessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		// TLS 1.3 tickets arrive after the handshake: read for them.
		fmt.Fprintf(c, "GET /t HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
		io.ReadAll(c)
		if resumed := c.ConnectionState().DidResume; resumed != (i == 1) {
			t.Fatalf("connection %d: resumed %v", i, resumed)
		}
		c.Close()
	}
	// session_tickets: false: no resumption.
	noTickets := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
listens:
  myapp:
    binds: [{addr: 127.0.0.1:0, tls: {cert_dir: %q, session_tickets: false}}]
    servers: [{name: app01, addr: %q, check: false}]
`, dir, a.addr))
	for i := range 2 {
		c, err := tls.Dial("tcp", noTickets.addr(t, "myapp", 0), &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(), ClientSessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /t HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
		io.ReadAll(c)
		if c.ConnectionState().DidResume {
			t.Fatalf("session_tickets false: connection %d resumed", i)
		}
		c.Close()
	}

	_, metrics := get(t, plainClient(), "http://"+p.AdminAddr()+"/metrics")
	if !strings.Contains(metrics, `pgswitch_edge_tls_handshakes_total{listen="myapp",result="resumed"} 1`) ||
		!strings.Contains(metrics, `pgswitch_edge_tls_handshakes_total{listen="myapp",result="full"}`) {
		t.Fatalf("handshake metrics:\n%s", grepLines(metrics, "tls_handshakes"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestForwardedAndHopByHop: X-Forwarded-For is appended to, Host kept,
// hop-by-hop headers (RFC 9110 7.6.1) are not forwarded, end-to-end ones are.
func TestForwardedAndHopByHop(t *testing.T) {
	a := startApp(t, "app01")
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
listens:
  myapp:
    binds: [127.0.0.1:0]
    servers: [{name: app01, addr: %q, check: false}]
`, a.addr))
	addr := p.addr(t, "myapp", 0)
	status, _ := rawRequest(t, addr, "GET /h HTTP/1.1\r\nHost: www.example.com\r\nX-Forwarded-For: 203.0.113.7\r\n"+
		"Connection: close, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n"+
		"X-End-To-End: kept\r\n\r\n")
	if !strings.Contains(status, "200") {
		t.Fatalf("status %q", status)
	}
	hdr, host := a.header()
	if host != "www.example.com" {
		t.Errorf("Host %q, want the client's www.example.com", host)
	}
	if got := hdr.Values("X-Forwarded-For"); strings.Join(got, ",") != "203.0.113.7,127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want the client's value then 127.0.0.1", got)
	}
	if hdr.Get("X-Forwarded-Host") != "www.example.com" || hdr.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("X-Forwarded-Host %q Proto %q", hdr.Get("X-Forwarded-Host"), hdr.Get("X-Forwarded-Proto"))
	}
	for _, h := range []string{"X-Private", "Keep-Alive", "Proxy-Connection"} {
		if v := hdr.Get(h); v != "" {
			t.Errorf("hop-by-hop %s reached the app: %q", h, v)
		}
	}
	if hdr.Get("X-End-To-End") != "kept" {
		t.Errorf("end-to-end header lost")
	}
}

// TestWebSocketUpgrade: an Upgrade request passes through and the
// connection becomes a tunnel both ways.
func TestWebSocketUpgrade(t *testing.T) {
	a := startApp(t, "app01")
	p := startProxy(t, fmt.Sprintf(`
access_log: {path: "off"}
listens:
  myapp:
    binds: [127.0.0.1:0]
    servers: [{name: app01, addr: %q, check: false}]
`, a.addr))
	c, err := net.Dial("tcp", p.addr(t, "myapp", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("upgrade answered %s %v", resp.Status, resp.Header)
	}
	for _, msg := range []string{"hello\n", "second message\n"} {
		io.WriteString(c, msg)
		got, err := br.ReadString('\n')
		if err != nil || got != strings.ToUpper(msg) {
			t.Fatalf("tunnel echo: got %q (%v), want %q", got, err, strings.ToUpper(msg))
		}
	}
}

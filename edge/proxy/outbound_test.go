package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgswitch/pgswitch/edge/internal/testpki"
)

// startHTTPS runs an HTTPS server on loopback with leaf's certificate; it
// answers with the Host and SNI it saw.
func startHTTPS(t *testing.T, leaf *testpki.Leaf) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "host=%s sni=%s path=%s", r.Host, r.TLS.ServerName, r.URL.Path)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}},
		ErrorLog:  log.New(io.Discard, "", 0), // the handshakes refused on purpose
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestOutboundHTTPS: a loopback plain-HTTP listen forwards to an HTTPS
// service whose certificate is verified against ca_file with SNI set to the
// service's name. Wrong CA, expired or wrong-name certificates get 502 and
// a log line saying why.
func TestOutboundHTTPS(t *testing.T) {
	ca := testpki.NewCA(t, "service CA")
	other := testpki.NewCA(t, "some other CA")
	dir := t.TempDir()
	caFile, otherFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other.pem")
	testpki.WriteFile(t, caFile, ca.PEM)
	testpki.WriteFile(t, otherFile, other.PEM)

	good := startHTTPS(t, ca.Issue(t, []string{"service.internal"}, time.Time{}, time.Time{}))
	expired := startHTTPS(t, ca.Issue(t, []string{"service.internal"}, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))
	wrongName := startHTTPS(t, ca.Issue(t, []string{"other.internal"}, time.Time{}, time.Time{}))

	listen := func(name, addr, caf string) string {
		return fmt.Sprintf(`
  %s:
    binds: [127.0.0.1:0]
    rewrite_host: true
    servers:
      - name: %s01
        addr: %q
        check: false
        tls: {verify: required, ca_file: %q, server_name: service.internal}
`, name, name, addr, caf)
	}
	p := startProxy(t, `
access_log: {path: "off"}
listens:`+listen("good", good, caFile)+listen("wrongca", good, otherFile)+
		listen("expired", expired, caFile)+listen("wrongname", wrongName, caFile))
	client := plainClient()

	status, body := get(t, client, "http://"+p.addr(t, "good", 0)+"/api")
	if status != 200 || body != "host=service.internal sni=service.internal path=/api" {
		t.Fatalf("right CA: %d %q", status, body)
	}
	for _, tt := range []struct{ listen, reason string }{
		{"wrongca", "certificate signed by unknown authority"},
		{"expired", "certificate has expired"},
		{"wrongname", "not service.internal"},
	} {
		status, body := get(t, client, "http://"+p.addr(t, tt.listen, 0)+"/api")
		if status != http.StatusBadGateway || !strings.Contains(body, "did not verify") {
			t.Errorf("%s: %d %q, want 502", tt.listen, status, body)
		}
		wantLog := fmt.Sprintf(`msg="server certificate not verified: 502" listen=%s server=%s01`, tt.listen, tt.listen)
		waitFor(t, func() bool {
			for _, line := range strings.Split(p.log.String(), "\n") {
				if strings.Contains(line, wantLog) && strings.Contains(line, tt.reason) {
					return true
				}
			}
			return false
		}, tt.listen+" log line with reason "+tt.reason)
	}
}

// TestServerTLSConfigErrors: verify: none must be said, never assumed, and
// a missing CA file fails the start rather than falling back.
func TestServerTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := startProxyErr(`
listens:
  out:
    binds: [127.0.0.1:0]
    servers: [{name: s, addr: "127.0.0.1:1", tls: {ca_file: "` + filepath.Join(dir, "missing.pem") + `"}}]
`)
	if err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Fatalf("missing ca_file: got %v", err)
	}
}

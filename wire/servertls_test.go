package wire

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/integration/testpki"
)

func mustCA(t *testing.T, cn string) *testpki.CA {
	t.Helper()
	ca, err := testpki.NewCA(cn)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func derOf(t *testing.T, p testpki.Pair) [][]byte {
	t.Helper()
	b, _ := pem.Decode(p.Cert)
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	return [][]byte{b.Bytes}
}

func poolOf(t *testing.T, ca *testpki.CA) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.PEM) {
		t.Fatal("CA PEM not appended")
	}
	return pool
}

// verifyServer checks as libpq does: the chain for verify-ca (name ""),
// and for verify-full the subjectAltNames of the host's type, else the CN.
func TestVerifyServer(t *testing.T) {
	ca, other := mustCA(t, "test CA"), mustCA(t, "other CA")
	issue := func(cn string, names ...string) testpki.Pair {
		p, err := ca.Server(cn, names...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	sans := issue("db", "db.test", "127.0.0.1")
	cnOnly := issue("db.test")
	cnIP := issue("127.0.0.1", "db.test")
	dnsOverCN := issue("db.test", "other.test")
	wildcard := issue("", "*.db.test")
	foreign, err := other.Server("db", "db.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cert testpki.Pair
		host string // "" for verify-ca
		want string // "" for accepted, else part of the error
	}{
		{"verify-ca ignores the name", sans, "", ""},
		{"verify-ca: wrong CA", foreign, "", "server certificate verification failed: x509: certificate signed by unknown authority"},
		{"verify-full: wrong CA", foreign, "db.test", "certificate signed by unknown authority"},
		{"DNS subjectAltName", sans, "db.test", ""},
		{"DNS name ignores case", sans, "DB.Test", ""},
		{"IP subjectAltName", sans, "127.0.0.1", ""},
		{"other name", sans, "wrong.test", `server certificate for "db.test" (and 1 other name) does not match host name "wrong.test"`},
		{"other IP", sans, "127.0.0.2", `does not match host name "127.0.0.2"`},
		{"common name alone", cnOnly, "db.test", ""},
		{"common name alone, other name", cnOnly, "wrong.test", `server certificate for "db.test" does not match host name "wrong.test"`},
		{"IP host, no IP subjectAltName: the CN counts", cnIP, "127.0.0.1", ""},
		{"DNS subjectAltName hides the CN", dnsOverCN, "db.test", `server certificate for "other.test" does not match host name "db.test"`},
		{"wildcard, one label", wildcard, "a.db.test", ""},
		{"wildcard, two labels", wildcard, "a.b.db.test", "does not match"},
		{"wildcard, no label", wildcard, "db.test", "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verifyServer(derOf(t, tc.cert), poolOf(t, ca), tc.host)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want accepted", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			case err != nil:
				if _, ok := err.(*ServerCertError); !ok {
					t.Errorf("got %T, want *ServerCertError", err)
				}
			}
		})
	}
}

// Configure turns pgconn's configuration for each sslmode into libpq's
// checks, with server_name replacing the host; shown by real handshakes.
func TestServerTLSConfigure(t *testing.T) {
	ca := mustCA(t, "test CA")
	dir := t.TempDir()
	caFile, err := ca.WriteCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("db", "db.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := tls.X509KeyPair(srv.Cert, srv.Key)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client("pgswitch")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := client.Write(dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		t    ServerTLS
		host string
		want string // "" for a handshake that succeeds
	}{
		{"verify-full by IP", ServerTLS{Mode: "verify-full", CAFile: caFile}, "127.0.0.1", ""},
		{"verify-full, server_name", ServerTLS{Mode: "verify-full", CAFile: caFile, ServerName: "db.test"}, "10.9.9.9", ""},
		{"verify-full, wrong server_name", ServerTLS{Mode: "verify-full", CAFile: caFile, ServerName: "wrong.test"}, "127.0.0.1",
			`does not match host name "wrong.test"`},
		{"verify-ca, wrong server_name", ServerTLS{Mode: "verify-ca", CAFile: caFile, ServerName: "wrong.test"}, "127.0.0.1", ""},
		{"require with a CA is verify-ca", ServerTLS{Mode: "require", CAFile: filepath.Join(dir, "ca.crt"), ServerName: "wrong.test"}, "127.0.0.1", ""},
		{"verify-full without a CA: system roots", ServerTLS{Mode: "verify-full"}, "127.0.0.1", "certificate signed by unknown authority"},
		{"require without a CA checks nothing", ServerTLS{Mode: "require"}, "wrong.test", ""},
		{"client certificate", ServerTLS{Mode: "verify-full", CAFile: caFile, CertFile: certFile, KeyFile: keyFile}, "127.0.0.1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := pgconn.ParseConfig("host=" + QuoteConnValue(tc.host) + " user=u" + tc.t.ConnParams())
			if err != nil {
				t.Fatal(err)
			}
			tc.t.Configure(cfg, tc.host)
			if cfg.TLSConfig == nil {
				t.Fatal("no TLS configuration")
			}
			cc, sc := tcpPair(t)
			seen := make(chan string, 1)
			go func() {
				var cn string
				defer func() { seen <- cn }()
				s := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{serverCert},
					ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: poolOf(t, ca)})
				if s.Handshake() == nil {
					if pc := s.ConnectionState().PeerCertificates; len(pc) > 0 {
						cn = pc[0].Subject.CommonName
					}
				}
				s.Close()
			}()
			c := tls.Client(cc, cfg.TLSConfig)
			err = c.Handshake()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("handshake: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("handshake: got %v, want an error containing %q", err, tc.want)
			}
			c.Close()
			cc.Close()
			if seenCN := <-seen; tc.t.CertFile != "" && seenCN != "pgswitch" {
				t.Errorf("server saw client certificate CN %q, want pgswitch", seenCN)
			}
		})
	}
}

func TestServerTLSConnParams(t *testing.T) {
	got := ServerTLS{Mode: "verify-full", CAFile: "/ca dir/ca.crt", KeyFile: "k"}.ConnParams()
	if want := ` sslmode='verify-full' sslrootcert='/ca dir/ca.crt' sslkey='k'`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := (ServerTLS{}).ConnParams(); got != ` sslmode='disable'` {
		t.Errorf("zero value: got %q, want sslmode 'disable'", got)
	}
}

package router

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/wire"
)

// checkTransport and authenticateCert decide as pg_hba.conf's hostssl,
// clientcert and cert method do; the Unix socket is exempt from TLS.
func TestOriginChecks(t *testing.T) {
	withCN := func(cn string) *tls.ConnectionState {
		return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: cn}}}}}
	}
	plainTLS := &tls.ConnectionState{}
	for _, tc := range []struct {
		name string
		mode string
		o    origin
		cert bool   // also run the cert method
		want string // "" for accepted, else the message
	}{
		{"prefer, plain text", "prefer", origin{}, false, ""},
		{"require, plain text", "require", origin{}, false, "connection requires TLS (client_tls_mode require)"},
		{"require, TLS", "require", origin{tls: plainTLS}, false, ""},
		{"require, Unix socket", "require", origin{unix: true}, false, ""},
		{"verify-ca, no certificate", "verify-ca", origin{tls: plainTLS}, false, "connection requires a valid client certificate"},
		{"verify-ca, any CN", "verify-ca", origin{tls: withCN("other")}, false, ""},
		{"verify-full, other CN", "verify-full", origin{tls: withCN("other")}, false,
			`certificate validation (client_tls_mode verify-full) failed for user "app": CN mismatch`},
		{"verify-full, the user's CN", "verify-full", origin{tls: withCN("app")}, false, ""},
		{"verify-full, Unix socket", "verify-full", origin{unix: true}, false, ""},
		{"cert, the user's CN", "prefer", origin{tls: withCN("app")}, true, ""},
		{"cert, other CN", "prefer", origin{tls: withCN("other")}, true, `certificate authentication failed for user "app"`},
		{"cert, TLS without certificate", "prefer", origin{tls: plainTLS}, true, "connection requires a valid client certificate"},
		{"cert, plain text", "prefer", origin{}, true, "connection requires a valid client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{ClientTLSMode: tc.mode}
			err := tc.o.checkTransport(cfg, "app")
			if err == nil && tc.cert {
				err = tc.o.authenticateCert("app")
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want accepted", err)
			case tc.want != "":
				e, ok := err.(*wire.Error)
				if !ok || e.Code != wire.CodeInvalidAuthorizationSpecification || e.Message != tc.want {
					t.Errorf("got %v, want 28000 %q", err, tc.want)
				}
			}
		})
	}
}

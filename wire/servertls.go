package wire

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ServerTLS says how pgswitch secures its connections to a server, in
// libpq's terms: Mode is sslmode, CAFile, CertFile and KeyFile are
// sslrootcert, sslcert and sslkey. ServerName, when set, replaces the
// server's host as the name verify-full checks and TLS SNI sends.
//
// pgconn reads the files and negotiates; Configure makes its verification
// libpq's: verify-ca checks the chain only, verify-full also the name,
// against subjectAltNames of the host's type or else the common name.
type ServerTLS struct {
	Mode, CAFile, CertFile, KeyFile, ServerName string
}

// ConnParams returns t as libpq keywords for a keyword/value connection
// string, starting with a space.
func (t ServerTLS) ConnParams() string {
	mode := t.Mode
	if mode == "" {
		mode = "disable"
	}
	var b strings.Builder
	b.WriteString(" sslmode=" + QuoteConnValue(mode))
	for _, kv := range [][2]string{{"sslrootcert", t.CAFile}, {"sslcert", t.CertFile}, {"sslkey", t.KeyFile}} {
		if kv[1] != "" {
			b.WriteString(" " + kv[0] + "=" + QuoteConnValue(kv[1]))
		}
	}
	return b.String()
}

// Configure finishes cfg, parsed from a connection string with t's
// ConnParams, for a server at host.
func (t ServerTLS) Configure(cfg *pgconn.Config, host string) {
	name := host
	if t.ServerName != "" {
		name = t.ServerName
	}
	t.configure(cfg.TLSConfig, name)
	for _, fb := range cfg.Fallbacks {
		t.configure(fb.TLSConfig, name)
	}
}

func (t ServerTLS) configure(tc *tls.Config, name string) {
	if tc == nil {
		return // this attempt is in plain text
	}
	if net.ParseIP(name) == nil {
		tc.ServerName = name // SNI; RFC 6066 has no IP addresses
	}
	roots := tc.RootCAs // nil: the system's
	switch {
	case t.Mode == "verify-full":
		tc.InsecureSkipVerify = true // verifyServer checks chain and name
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyServer(raw, roots, name)
		}
	case tc.VerifyPeerCertificate != nil:
		// verify-ca, or require with a CA file, which libpq takes as
		// verify-ca: the chain alone. Ours says why it failed.
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyServer(raw, roots, "")
		}
	}
}

// ServerCertError is a server certificate that failed verification.
type ServerCertError struct {
	// Name is the host name checked; "" when only the chain was.
	Name string
	Err  error
}

func (e *ServerCertError) Error() string { return e.Err.Error() }

func (e *ServerCertError) Unwrap() error { return e.Err }

// verifyServer checks the certificates a server sent: that they chain up
// to roots (nil: the system's), and, unless name is "", that the first
// one is for name as libpq checks it.
func verifyServer(raw [][]byte, roots *x509.CertPool, name string) error {
	if len(raw) == 0 {
		return &ServerCertError{Name: name, Err: errors.New("server certificate verification failed: the server sent none")}
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return &ServerCertError{Name: name, Err: fmt.Errorf("server certificate verification failed: %w", err)}
		}
		certs[i] = c
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		// OpenSSL, under libpq, does not require the serverAuth usage.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return &ServerCertError{Name: name, Err: fmt.Errorf("server certificate verification failed: %w", err)}
	}
	if name != "" && !certMatchesName(certs[0], name) {
		return &ServerCertError{Name: name, Err: nameMismatch(certs[0], name)}
	}
	return nil
}

// certMatchesName checks name against the certificate as libpq does
// (pq_verify_peer_name_matches_certificate): its subjectAltNames, dNSName
// entries compared as text and iPAddress entries as addresses; the common
// name only when no subjectAltName of the name's type (DNS or IP) exists.
// Go's own check never reads the common name, which certificates made by
// PostgreSQL's documented openssl recipe carry alone.
func certMatchesName(c *x509.Certificate, name string) bool {
	ip := net.ParseIP(name)
	sameType := false
	for _, d := range c.DNSNames {
		sameType = sameType || ip == nil
		if matchHostName(d, name) {
			return true
		}
	}
	for _, a := range c.IPAddresses {
		if ip != nil {
			sameType = true
			if a.Equal(ip) {
				return true
			}
		}
	}
	return !sameType && c.Subject.CommonName != "" && matchHostName(c.Subject.CommonName, name)
}

// matchHostName compares a certificate's name with host, ignoring case; a
// leading "*." stands for exactly one label, as libpq allows.
func matchHostName(pattern, host string) bool {
	if strings.EqualFold(pattern, host) {
		return true
	}
	rest, ok := strings.CutPrefix(pattern, "*")
	if !ok || !strings.HasPrefix(rest, ".") || len(host) <= len(rest) {
		return false
	}
	label, suffix := host[:len(host)-len(rest)], host[len(host)-len(rest):]
	return strings.EqualFold(suffix, rest) && !strings.Contains(label, ".")
}

// nameMismatch is libpq's message for a certificate not made for name.
func nameMismatch(c *x509.Certificate, name string) error {
	var names []string
	names = append(names, c.DNSNames...)
	for _, a := range c.IPAddresses {
		names = append(names, a.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	switch len(names) {
	case 0:
		return fmt.Errorf("server certificate has no name to match host name %q", name)
	case 1:
		return fmt.Errorf("server certificate for %q does not match host name %q", names[0], name)
	case 2:
		return fmt.Errorf("server certificate for %q (and 1 other name) does not match host name %q", names[0], name)
	}
	return fmt.Errorf("server certificate for %q (and %d other names) does not match host name %q", names[0], len(names)-1, name)
}

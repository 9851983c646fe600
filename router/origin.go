package router

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os/user"
	"slices"
	"strconv"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/wire"
)

// origin is what the transport tells about a client: whether it came over
// the Unix socket, and the identity TLS or the kernel vouches for. The
// login reads it; nothing changes it after the startup packet.
type origin struct {
	unix bool
	raw  net.Conn             // the accepted connection, for SO_PEERCRED
	tls  *tls.ConnectionState // nil: plain text
}

// newOrigin describes a client accepted as raw and talking over conn
// (raw itself, or TLS over it).
func newOrigin(raw, conn net.Conn) *origin {
	o := &origin{raw: raw}
	_, o.unix = raw.(*net.UnixConn)
	if tc, ok := conn.(*tls.Conn); ok {
		st := tc.ConnectionState()
		o.tls = &st
	}
	return o
}

// clientTLS returns the TLS configuration to offer a client accepted as
// raw: none over the Unix socket, as PostgreSQL.
func (st *state) clientTLS(raw net.Conn) *tls.Config {
	if _, unix := raw.(*net.UnixConn); unix {
		return nil
	}
	return st.tls
}

// verifiedCN returns the common name of the client's certificate if one
// was given and verified with tls.ca_file.
func (o *origin) verifiedCN() (string, bool) {
	if o.tls == nil || len(o.tls.VerifiedChains) == 0 || len(o.tls.VerifiedChains[0]) == 0 {
		return "", false
	}
	return o.tls.VerifiedChains[0][0].Subject.CommonName, true
}

// errNoClientCert is PostgreSQL's answer to a client without the
// certificate its login needs.
func errNoClientCert() *wire.Error {
	return wire.Fatalf(wire.CodeInvalidAuthorizationSpecification, "connection requires a valid client certificate")
}

// checkTransport applies client_tls_mode to a TCP client logging in as
// name, as pg_hba.conf's hostssl lines and clientcert option do.
func (o *origin) checkTransport(cfg *config.Config, name string) error {
	mode := cfg.ClientTLSMode
	if o.unix {
		return nil // TLS is not offered there
	}
	switch mode {
	case "require", "verify-ca", "verify-full":
	default:
		return nil
	}
	if o.tls == nil {
		return wire.Fatalf(wire.CodeInvalidAuthorizationSpecification, "connection requires TLS (client_tls_mode %s)", mode).
			WithHint("Connect with sslmode=require or stricter.")
	}
	if mode == "require" {
		return nil
	}
	cn, ok := o.verifiedCN()
	if !ok {
		return errNoClientCert()
	}
	if mode == "verify-full" && cn != name {
		return wire.Fatalf(wire.CodeInvalidAuthorizationSpecification,
			"certificate validation (client_tls_mode verify-full) failed for user %q: CN mismatch", name).
			WithCause(fmt.Errorf("the certificate's common name is %q", cn))
	}
	return nil
}

// authenticateCert is the cert method: the verified client certificate's
// common name must be the user name, as PostgreSQL's.
func (o *origin) authenticateCert(name string) error {
	cn, ok := o.verifiedCN()
	if !ok {
		return errNoClientCert()
	}
	if cn != name {
		return wire.Fatalf(wire.CodeInvalidAuthorizationSpecification, "certificate authentication failed for user %q", name).
			WithCause(fmt.Errorf("provided user name (%s) and authenticated user name (%s) do not match", name, cn))
	}
	return nil
}

// authenticatePeer is the peer method: the OS user at the other end of the
// Unix socket must be name, or map to it in peer_map.
func (o *origin) authenticatePeer(cfg *config.Config, name string) error {
	failed := func(cause error) error {
		return wire.Fatalf(wire.CodeInvalidAuthorizationSpecification, "peer authentication failed for user %q", name).WithCause(cause)
	}
	if !o.unix {
		return failed(errors.New("peer authentication works over the Unix socket only (unix_socket_dir)"))
	}
	uid, err := peerUID(o.raw)
	if err != nil {
		return failed(fmt.Errorf("could not get peer credentials: %w", err))
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return failed(fmt.Errorf("could not look up local user ID %d: %w", uid, err))
	}
	if u.Username != name && !slices.Contains(cfg.PeerMap[u.Username], name) {
		return failed(fmt.Errorf("provided user name (%s) and authenticated user name (%s) do not match, nor does peer_map allow it", name, u.Username))
	}
	return nil
}

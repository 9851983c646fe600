package config

import (
	"crypto/x509"
	"fmt"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// authTypes are the values of auth_type and users.NAME.auth.
var authTypes = []string{string(AuthSCRAM), string(AuthMD5), string(AuthPassword), string(AuthTrust), string(AuthCert), string(AuthPeer)}

// Passwordless reports whether a method proves who the client is without
// a password: trust, cert and peer.
func (a AuthType) Passwordless() bool {
	return a == AuthTrust || a == AuthCert || a == AuthPeer
}

// sslModes are libpq's sslmode values, which server_tls_mode and
// client_tls_mode take.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// maxSocketPath is the longest path a Unix socket may have: sun_path holds
// 108 bytes with its terminating NUL on Linux (104 on BSDs and macOS).
const maxSocketPath = 103

// UnixSocketPath is the socket clients reach with host=unix_socket_dir and
// port, ".s.PGSQL.<port>" in the directory, as PostgreSQL and PgBouncer
// name theirs; "" without unix_socket_dir.
func (c *Config) UnixSocketPath(port int) string {
	if c.UnixSocketDir == "" {
		return ""
	}
	return filepath.Join(c.UnixSocketDir, ".s.PGSQL."+strconv.Itoa(port))
}

// UnixSocketFileMode is unix_socket_mode as a file mode (0777 if invalid,
// which validation refuses).
func (c *Config) UnixSocketFileMode() os.FileMode {
	m, err := parseFileMode(c.UnixSocketMode)
	if err != nil {
		return 0o777
	}
	return m
}

func parseFileMode(s string) (os.FileMode, error) {
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	m, err := strconv.ParseUint(digits, 8, 32)
	if err != nil || digits == "" {
		return 0, fmt.Errorf("must be an octal file mode such as \"0770\", got %q", s)
	}
	if m > 0o777 {
		return 0, fmt.Errorf("must be at most 0777, got %q", s)
	}
	return os.FileMode(m), nil
}

// UnixSocketOwnership returns the user and group IDs unix_socket_owner and
// unix_socket_group name, -1 for those not set.
func (c *Config) UnixSocketOwnership() (uid, gid int, err error) {
	uid, gid = -1, -1
	if c.UnixSocketOwner != "" {
		u, lerr := user.Lookup(c.UnixSocketOwner)
		if lerr != nil {
			u, lerr = user.LookupId(c.UnixSocketOwner)
		}
		if lerr != nil {
			return -1, -1, fmt.Errorf("unix_socket_owner: no such user %q", c.UnixSocketOwner)
		}
		uid, _ = strconv.Atoi(u.Uid)
	}
	if c.UnixSocketGroup != "" {
		g, lerr := user.LookupGroup(c.UnixSocketGroup)
		if lerr != nil {
			g, lerr = user.LookupGroupId(c.UnixSocketGroup)
		}
		if lerr != nil {
			return -1, -1, fmt.Errorf("unix_socket_group: no such group %q", c.UnixSocketGroup)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid, nil
}

// validateTLS checks the tls, client_tls_mode, server_tls_mode and
// server_tls keys.
func (c *Config) validateTLS(bad func(key, format string, args ...any), oneOf func(key, v string, allowed ...string)) {
	file := func(key, path string) bool {
		if path == "" {
			return false
		}
		if _, err := os.Stat(path); err != nil {
			bad(key, "%v", err)
			return false
		}
		return true
	}
	caFile := func(key, path string) {
		if !file(key, path) {
			return
		}
		data, err := os.ReadFile(path)
		if err != nil {
			bad(key, "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(data) {
			bad(key, "no PEM certificate in %s", path)
		}
	}
	oneOf("client_tls_mode", c.ClientTLSMode, sslModes...)
	oneOf("server_tls_mode", c.ServerTLSMode, sslModes...)
	if c.TLS != nil {
		if c.TLS.CertFile == "" {
			bad("tls.cert_file", "is required when tls is set")
		} else {
			file("tls.cert_file", c.TLS.CertFile)
		}
		if c.TLS.KeyFile == "" {
			bad("tls.key_file", "is required when tls is set")
		} else {
			file("tls.key_file", c.TLS.KeyFile)
		}
		caFile("tls.ca_file", c.TLS.CAFile)
	}
	switch mode := c.ClientTLSMode; {
	case mode == "disable":
	case c.TLS == nil:
		bad("client_tls_mode", "%q needs the tls block (cert_file, key_file)", mode)
	case (mode == "verify-ca" || mode == "verify-full") && c.TLS.CAFile == "":
		bad("client_tls_mode", "%q needs tls.ca_file, the certificates that sign client certificates", mode)
	}

	st := c.ServerTLS
	caFile("server_tls.ca_file", st.CAFile)
	file("server_tls.cert_file", st.CertFile)
	file("server_tls.key_file", st.KeyFile)
	if (st.CertFile == "") != (st.KeyFile == "") {
		if st.CertFile == "" {
			bad("server_tls.cert_file", "is required with server_tls.key_file")
		} else {
			bad("server_tls.key_file", "is required with server_tls.cert_file")
		}
	}
	if strings.ContainsAny(st.ServerName, " \t/:") {
		bad("server_tls.server_name", "must be a host name, got %q", st.ServerName)
	}
	if c.ServerTLSMode == "disable" && st != (ServerTLS{}) {
		bad("server_tls", "is set but server_tls_mode is \"disable\": set server_tls_mode (verify-full checks the servers' certificates)")
	}
}

// validateUnixSocket checks the unix_socket_* keys.
func (c *Config) validateUnixSocket(bad func(key, format string, args ...any)) {
	if _, err := parseFileMode(c.UnixSocketMode); err != nil {
		bad("unix_socket_mode", "%v", err)
	}
	if c.UnixSocketDir == "" {
		if c.UnixSocketOwner != "" {
			bad("unix_socket_owner", "needs unix_socket_dir")
		}
		if c.UnixSocketGroup != "" {
			bad("unix_socket_group", "needs unix_socket_dir")
		}
		return
	}
	if fi, err := os.Stat(c.UnixSocketDir); err != nil {
		bad("unix_socket_dir", "%v", err)
	} else if !fi.IsDir() {
		bad("unix_socket_dir", "%s is not a directory", c.UnixSocketDir)
	}
	if p := c.UnixSocketPath(65535); len(p) > maxSocketPath {
		bad("unix_socket_dir", "too long for a Unix socket: %s has %d bytes, at most %d fit", p, len(p), maxSocketPath)
	}
	if _, _, err := c.UnixSocketOwnership(); err != nil {
		key, msg, _ := strings.Cut(err.Error(), ": ")
		bad(key, "%s", msg)
	}
}

// validateAuthNeeds checks that each authentication method in use can
// work: cert needs client certificates, peer a Unix socket.
func (c *Config) validateAuthNeeds(bad func(key, format string, args ...any)) {
	need := func(key string, a AuthType) {
		switch {
		case a == AuthCert && (c.TLS == nil || c.TLS.CAFile == ""):
			bad(key, "cert needs tls with ca_file: client certificates are verified with it")
		case a == AuthCert && c.ClientTLSMode == "disable":
			bad(key, "cert needs TLS, but client_tls_mode is \"disable\"")
		case a == AuthPeer && c.UnixSocketDir == "":
			bad(key, "peer needs unix_socket_dir: it works over Unix sockets only")
		}
	}
	need("auth_type", c.AuthType)
	for _, name := range slices.Sorted(maps.Keys(c.Users)) {
		if u := c.Users[name]; u != nil && u.Auth != "" {
			need("users."+name+".auth", u.Auth)
		}
	}
	for _, osUser := range slices.Sorted(maps.Keys(c.PeerMap)) {
		for _, r := range c.PeerMap[osUser] {
			if c.Users[r] == nil {
				bad("peer_map."+osUser, "%q is not a configured user", r)
			}
		}
	}
}

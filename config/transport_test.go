package config

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgswitch/pgswitch/integration/testpki"
)

// pemCert writes a CA certificate in PEM to dir/name.crt.
func pemCert(t *testing.T, dir, name string) string {
	t.Helper()
	ca, err := testpki.NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	path, err := ca.WriteCA(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTransportKeysValid(t *testing.T) {
	dir := t.TempDir()
	ca := pemCert(t, dir, "ca")
	file := filepath.Join(dir, "any.pem") // existence is checked, not content
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsBlock := "tls: {cert_file: '" + file + "', key_file: '" + file + "', ca_file: '" + ca + "'}\n"
	for _, tc := range []struct{ name, yaml string }{
		{"server_tls block", minimal + "server_tls_mode: verify-full\nserver_tls: {ca_file: '" + ca + "', cert_file: '" + file +
			"', key_file: '" + file + "', server_name: db.example}\n"},
		{"server verify-ca with a CA", minimal + "server_tls_mode: verify-ca\nserver_tls: {ca_file: '" + ca + "'}\n"},
		// As before server_tls existed: the system's roots.
		{"server verify-full without a CA", minimal + "server_tls_mode: verify-full\n"},
		{"client verify-full", minimal + tlsBlock + "client_tls_mode: verify-full\n"},
		{"client require without ca_file", minimal + "tls: {cert_file: '" + file + "', key_file: '" + file + "'}\nclient_tls_mode: require\n"},
		{"cert auth", tlsBlock + withUser("auth: cert")},
		{"cert auth globally", tlsBlock + "auth_type: cert\n" + withUser("server_password: s")},
		{"peer auth with a map", "unix_socket_dir: '" + dir + "'\npeer_map: {root: [app]}\n" + withUser("auth: peer")},
		{"unix socket mode as octal number", minimal + "unix_socket_dir: '" + dir + "'\nunix_socket_mode: 0770\n"},
		{"unix socket mode 0o", minimal + "unix_socket_dir: '" + dir + "'\nunix_socket_mode: 0o700\n"},
	} {
		t.Run(tc.name, func(t *testing.T) { mustParse(t, tc.yaml) })
	}

	cfg := mustParse(t, minimal+"unix_socket_dir: '"+dir+"'\nunix_socket_mode: 0770\n")
	if got, want := cfg.UnixSocketPath(6432), filepath.Join(dir, ".s.PGSQL.6432"); got != want {
		t.Errorf("UnixSocketPath: got %q, want %q", got, want)
	}
	if got := cfg.UnixSocketFileMode(); got != 0o770 {
		t.Errorf("UnixSocketFileMode: got %o, want 770", got)
	}
	cfg = mustParse(t, minimal)
	if cfg.ClientTLSMode != "disable" || cfg.UnixSocketPath(6432) != "" || cfg.UnixSocketFileMode() != 0o777 {
		t.Errorf("defaults without tls: client_tls_mode %q, socket %q, mode %o; want disable, none, 777",
			cfg.ClientTLSMode, cfg.UnixSocketPath(6432), cfg.UnixSocketFileMode())
	}
	if cfg := mustParse(t, minimal+tlsBlock); cfg.ClientTLSMode != "prefer" {
		t.Errorf("client_tls_mode with tls: got %q, want prefer", cfg.ClientTLSMode)
	}
}

func TestTransportKeysErrors(t *testing.T) {
	dir := t.TempDir()
	ca := pemCert(t, dir, "ca")
	file := filepath.Join(dir, "any.pem")
	if err := os.WriteFile(file, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tlsNoCA := "tls: {cert_file: '" + file + "', key_file: '" + file + "'}\n"
	long := filepath.Join(dir, strings.Repeat("d", 100))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"client_tls_mode unknown", minimal + tlsNoCA + "client_tls_mode: verify\n",
			[]string{`client_tls_mode: must be one of "disable", "allow", "prefer", "require", "verify-ca", "verify-full", got "verify"`}},
		{"server_tls_mode unknown", minimal + "server_tls_mode: full\n", []string{`server_tls_mode: must be one of`}},
		{"client_tls_mode without tls", minimal + "client_tls_mode: require\n",
			[]string{`client_tls_mode: "require" needs the tls block`}},
		{"client verify-ca without ca_file", minimal + tlsNoCA + "client_tls_mode: verify-ca\n",
			[]string{`client_tls_mode: "verify-ca" needs tls.ca_file`}},
		{"tls.ca_file missing", minimal + "tls: {cert_file: '" + file + "', key_file: '" + file + "', ca_file: '" + missing + "'}\n",
			[]string{"tls.ca_file: stat " + missing}},
		{"tls.ca_file not PEM", minimal + "tls: {cert_file: '" + file + "', key_file: '" + file + "', ca_file: '" + file + "'}\n",
			[]string{"tls.ca_file: no PEM certificate in " + file}},
		{"server_tls files missing", minimal + "server_tls_mode: verify-full\nserver_tls: {ca_file: '" + missing +
			"', cert_file: '" + missing + "', key_file: '" + missing + "'}\n",
			[]string{"server_tls.ca_file: stat ", "server_tls.cert_file: stat ", "server_tls.key_file: stat "}},
		{"server_tls cert without key", minimal + "server_tls_mode: require\nserver_tls: {cert_file: '" + file + "'}\n",
			[]string{"server_tls.key_file: is required with server_tls.cert_file"}},
		{"server_tls key without cert", minimal + "server_tls_mode: require\nserver_tls: {key_file: '" + file + "'}\n",
			[]string{"server_tls.cert_file: is required with server_tls.key_file"}},
		{"server_tls with TLS off", minimal + "server_tls: {ca_file: '" + ca + "'}\n",
			[]string{`server_tls: is set but server_tls_mode is "disable"`}},
		{"server_name not a name", minimal + "server_tls_mode: verify-full\nserver_tls: {server_name: 'db:5432'}\n",
			[]string{`server_tls.server_name: must be a host name, got "db:5432"`}},
		{"server_tls unknown key", minimal + "server_tls: {root_cert: x}\n", []string{"server_tls.root_cert: unknown key"}},
		{"cert auth without ca_file", tlsNoCA + withUser("auth: cert"),
			[]string{"users.app.auth: cert needs tls with ca_file"}},
		{"cert auth without tls", "auth_type: cert\n" + withUser("server_password: s"),
			[]string{"auth_type: cert needs tls with ca_file"}},
		{"peer auth without socket", withUser("auth: peer"),
			[]string{"users.app.auth: peer needs unix_socket_dir"}},
		{"peer_map names an unknown user", minimal + "unix_socket_dir: '" + dir + "'\npeer_map: {root: [app, nobody]}\n",
			[]string{`peer_map.root: "nobody" is not a configured user`}},
		{"password still required for scram", withUser("auth: scram-sha-256"),
			[]string{"users.app.password: is required unless auth is trust, cert or peer"}},
		{"unix_socket_dir missing", minimal + "unix_socket_dir: '" + missing + "'\n",
			[]string{"unix_socket_dir: stat " + missing}},
		{"unix_socket_dir a file", minimal + "unix_socket_dir: '" + file + "'\n",
			[]string{"unix_socket_dir: " + file + " is not a directory"}},
		{"unix_socket_dir too long", minimal + "unix_socket_dir: '" + long + "'\n",
			[]string{"unix_socket_dir: too long for a Unix socket"}},
		{"unix_socket_mode not octal", minimal + "unix_socket_dir: '" + dir + "'\nunix_socket_mode: rwx\n",
			[]string{`unix_socket_mode: must be an octal file mode such as "0770", got "rwx"`}},
		{"unix_socket_mode too large", minimal + "unix_socket_dir: '" + dir + "'\nunix_socket_mode: '1777'\n",
			[]string{`unix_socket_mode: must be at most 0777, got "1777"`}},
		{"unix_socket_group unknown", minimal + "unix_socket_dir: '" + dir + "'\nunix_socket_group: no-such-group-pgswitch\n",
			[]string{`unix_socket_group: no such group "no-such-group-pgswitch"`}},
		{"unix_socket_owner unknown", minimal + "unix_socket_dir: '" + dir + "'\nunix_socket_owner: no-such-user-pgswitch\n",
			[]string{`unix_socket_owner: no such user "no-such-user-pgswitch"`}},
		{"unix_socket_owner without dir", minimal + "unix_socket_owner: root\n",
			[]string{"unix_socket_owner: needs unix_socket_dir"}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkErrorLines(t, mustFail(t, tc.yaml), tc.want) })
	}
}

func TestUnixSocketOwnership(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, owner := range []string{me.Username, me.Uid} {
		cfg := mustParse(t, minimal+"unix_socket_dir: '"+dir+"'\nunix_socket_owner: '"+owner+"'\nunix_socket_group: '"+me.Gid+"'\n")
		uid, gid, err := cfg.UnixSocketOwnership()
		if err != nil || itoa(uid) != me.Uid || itoa(gid) != me.Gid {
			t.Errorf("owner %q: got %d, %d, %v; want %s, %s", owner, uid, gid, err, me.Uid, me.Gid)
		}
	}
	uid, gid, err := mustParse(t, minimal).UnixSocketOwnership()
	if uid != -1 || gid != -1 || err != nil {
		t.Errorf("unset: got %d, %d, %v; want -1, -1, nil", uid, gid, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

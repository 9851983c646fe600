package config

import (
	"maps"
	"strings"
	"testing"
)

const peersBase = "databases:\n  app:\n    servers: [{host: 127.0.0.1}]\nusers:\n  app:\n    password: secret\n"

func TestPeers(t *testing.T) {
	t.Setenv("PGSWITCH_TEST_PEER_ID", "2")
	for _, c := range []struct {
		name, yaml string
		id         int
		peers      map[int]string
	}{
		{"off by default", "", 0, nil},
		{"peers", "peer_id: 1\npeers:\n  1: 10.0.0.1:6432\n  2: pgswitch-2.pgswitch-peers:6432\n  3: /run/pgswitch/.s.PGSQL.6432\n",
			1, map[int]string{1: "10.0.0.1:6432", 2: "pgswitch-2.pgswitch-peers:6432", 3: "/run/pgswitch/.s.PGSQL.6432"}},
		{"peer_id from the environment", "peer_id: ${PGSWITCH_TEST_PEER_ID}\npeers: {1: a:1, 2: b:2}\n",
			2, map[int]string{1: "a:1", 2: "b:2"}},
		{"largest id", "peer_id: 16383\n", MaxPeerID, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(c.yaml + peersBase))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.PeerID != c.id || !maps.Equal(cfg.Peers, c.peers) {
				t.Errorf("got peer_id %d peers %v, want %d %v", cfg.PeerID, cfg.Peers, c.id, c.peers)
			}
			if r := cfg.Redacted(); !maps.Equal(r.Peers, c.peers) || r.PeerID != c.id {
				t.Errorf("Redacted: got peer_id %d peers %v, want them unchanged", r.PeerID, r.Peers)
			}
		})
	}
}

func TestPeersErrors(t *testing.T) {
	t.Setenv("PGSWITCH_TEST_PEER_ID", "two")
	for _, c := range []struct{ yaml, want string }{
		{"peer_id: 16384\n", "line 1: peer_id: must be within 0..16383, got 16384"},
		{"peer_id: -1\n", "line 1: peer_id: must be within 0..16383, got -1"},
		{"peer_id: x\n", `line 1: peer_id: "x" is not a number`},
		{"peer_id: ${PGSWITCH_TEST_PEER_ID}\n", `line 1: peer_id: "two" is not a number`},
		{"peer_id: ${PGSWITCH_TEST_NO_SUCH}\n", "line 1: peer_id: environment variable PGSWITCH_TEST_NO_SUCH is not set"},
		{"peers: {1: a:1}\n", "line 1: peers: needs peer_id"},
		{"peer_id: 1\npeers:\n  one: a:1\n", `line 3: peers.one: "one" is not a number`},
		{"peer_id: 1\npeers:\n  0: a:1\n", "line 3: peers.0: a peer id must be within 1..16383, got 0"},
		{"peer_id: 1\npeers:\n  2: nohost\n", `line 3: peers.2: must be host:port or the path of a unix socket, got "nohost"`},
		{"peer_id: 1\npeers:\n  2: a:0\n", `line 3: peers.2: invalid port in "a:0"`},
		{"peer_id: 1\npeers:\n  2: [a]\n", "line 3: peers.2: must be a single value"},
	} {
		_, err := Parse([]byte(c.yaml + peersBase))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error containing %q", c.yaml, err, c.want)
		}
	}
}

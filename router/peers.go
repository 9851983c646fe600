package router

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/wire"
)

// peerCancelWait bounds how long a peer may take to relay a forwarded
// cancel request, after the connection to it is made: as long as this
// instance gives its own server to confirm one.
const peerCancelWait = 10 * time.Second

// forwardCancel sends a CancelRequest whose key another peer gave out to
// that peer (peers in the configuration), one hop spent, and waits until
// the peer closes the connection: the peer has then relayed the request to
// its server, so that the client, which waits for the end of its own
// cancel connection as libpq does, learns no sooner than it would from a
// single instance that its cancel has landed. A key of an unknown peer, or
// one with no hop left, is dropped with a log line; the key itself is
// never logged. Anyone who can connect can make an instance forward a
// made-up key, at most three hops along the configured peers: no more than
// a client can make it do by cancelling.
func (r *Router) forwardCancel(cfg *config.Config, k wire.CancelKey) {
	peer := k.Peer()
	addr, ok := cfg.Peers[peer]
	if !ok {
		// Debug: anyone may send keys with made-up peer ids.
		r.log.Debug("cancel request for an unknown peer ignored", "peer_id", peer)
		return
	}
	next, ok := k.Forwarded()
	if !ok {
		r.log.Warn("cancel request dropped: forwarded three times already; does each peer's address lead to the instance with that peer_id?",
			"peer_id", peer, "addr", addr)
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, cfg.Timeouts.ServerConnect+peerCancelWait)
	defer cancel()
	network := "tcp"
	if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	d := net.Dialer{Timeout: cfg.Timeouts.ServerConnect}
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		r.log.Warn("cannot forward a cancel request to its peer", "peer_id", peer, "err", err)
		return
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := nc.Write(next.AppendCancelRequest(nil)); err != nil {
		r.log.Warn("cannot forward a cancel request to its peer", "peer_id", peer, "addr", addr, "err", err)
		return
	}
	var b [1]byte
	if _, err := nc.Read(b[:]); !errors.Is(err, io.EOF) {
		r.log.Warn("peer did not confirm a forwarded cancel request", "peer_id", peer, "addr", addr, "err", err)
		return
	}
	r.log.Debug("cancel request forwarded", "peer_id", peer, "addr", addr)
}

package wire

import (
	"crypto/rand"
	"encoding/binary"
)

// Peered cancel keys. Several pgswitch instances behind one TCP load
// balancer each give out their own keys, but a client's CancelRequest
// arrives on a new connection that the balancer may send to any of them.
// A key made by NewPeerCancelKey carries the id of the instance that made
// it, so that the one receiving the request knows whose it is and forwards
// it there (PgBouncer's peer_id does the same). Its layout, 3.0's 4-byte
// process ID and 4-byte secret:
//
//	ProcessID  0 | r | peer id (14 bits) | r (16 bits)
//	SecretKey  r (30 bits) | hops left (2 bits)
//
// r is random: 47 bits in all. Bit 31 stays 0 because clients show the
// process ID as a PID and some read it as a signed int32. Hops left starts
// at 3 and each forward takes one, so that a request bounced between
// misconfigured peers dies after three hops instead of looping.

// MaxPeerID is the largest peer id a cancel key can carry.
const MaxPeerID = 1<<14 - 1

const (
	peerShift = 16
	peerMask  = MaxPeerID << peerShift
	hopsMask  = 3
)

// NewPeerCancelKey returns a random key carrying peer, within
// 1..MaxPeerID, with its full hop budget. Peer 0 (no peering) gives a key
// with every bit random but bit 31 of the process ID, as NewCancelKey.
func NewPeerCancelKey(peer int) CancelKey {
	if peer <= 0 || peer > MaxPeerID {
		return NewCancelKey()
	}
	var b [8]byte
	// crypto/rand.Read never fails (it crashes the program instead).
	_, _ = rand.Read(b[:])
	pid := binary.BigEndian.Uint32(b[:4])&^(1<<31|peerMask) | uint32(peer)<<peerShift
	return CancelKey{ProcessID: pid, SecretKey: binary.BigEndian.Uint32(b[4:]) | hopsMask}
}

// Peer returns the peer id k carries (0 for none); meaningful only for
// keys made by NewPeerCancelKey.
func (k CancelKey) Peer() int { return int(k.ProcessID&peerMask) >> peerShift }

// Forwarded returns k as forwarded to the peer it names: one hop fewer.
// ok is false when k has no hop left and must not be forwarded again.
func (k CancelKey) Forwarded() (next CancelKey, ok bool) {
	if k.SecretKey&hopsMask == 0 {
		return k, false
	}
	k.SecretKey--
	return k, true
}

// Issued returns k as it was given out, before any forward took a hop: the
// form to look a forwarded request's session up by.
func (k CancelKey) Issued() CancelKey {
	k.SecretKey |= hopsMask
	return k
}

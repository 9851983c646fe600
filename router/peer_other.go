//go:build !linux

package router

import (
	"errors"
	"net"
)

// peerUID is implemented with SO_PEERCRED, on Linux only.
func peerUID(net.Conn) (uint32, error) {
	return 0, errors.New("peer authentication is supported on Linux only")
}

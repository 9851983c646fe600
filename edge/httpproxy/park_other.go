//go:build !linux

package httpproxy

// Connections park only on Linux (park_linux.go).

func parkingOn() bool   { return false }
func park(*h1Conn) bool { return false }
func unpark(*h1Conn)    {}

package pgmini

import (
	"encoding/binary"
	"errors"
	"io"
	"net"

	"github.com/pgswitch/pgswitch/wire"
)

// Greeting is what a client gets after its startup packet: AuthenticationOk,
// a few ParameterStatus, BackendKeyData and ReadyForQuery 'I'.
var Greeting = func() []byte {
	b := wire.AppendAuthOK(nil)
	for _, p := range [][2]string{{"server_version", "15.0"}, {"client_encoding", "UTF8"}, {"DateStyle", "ISO, MDY"},
		{"integer_datetimes", "on"}, {"standard_conforming_strings", "on"}} {
		b = wire.AppendParameterStatus(b, p[0], p[1])
	}
	b = wire.AppendBackendKeyData(b, wire.CancelKey{ProcessID: 1, SecretKey: 2})
	return wire.AppendReadyForQuery(b, 'I')
}()

// sslNo answers an SSLRequest: no TLS.
var sslNo = []byte{'N'}

// Startup reads a client's startup packet (answering SSLRequest with N)
// and greets it.
func Startup(c net.Conn) error {
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return err
		}
		n, ssl, err := startupHeader(hdr[:])
		if err != nil {
			return err
		}
		rest := make([]byte, n-8)
		if _, err := io.ReadFull(c, rest); err != nil {
			return err
		}
		if ssl {
			c.Write(sslNo)
			continue
		}
		_, err = c.Write(Greeting)
		return err
	}
}

// StartupReply is Startup for an event loop, which cannot wait for bytes:
// it looks at the startup packet at the head of p. n is the packet's length
// (0 when p does not hold all of it yet), reply what to write back (N to an
// SSLRequest, Greeting to a startup packet) and greeted whether the client
// is logged in once reply is written.
func StartupReply(p []byte) (n int, reply []byte, greeted bool, err error) {
	if len(p) < 8 {
		return 0, nil, false, nil
	}
	n, ssl, err := startupHeader(p[:8])
	if err != nil || len(p) < n {
		return 0, nil, false, err
	}
	if ssl {
		return n, sslNo, false, nil
	}
	return n, Greeting, true, nil
}

// startupHeader checks a startup packet's first 8 bytes: its length, and
// whether it is an SSLRequest.
func startupHeader(hdr []byte) (n int, ssl bool, err error) {
	n = int(binary.BigEndian.Uint32(hdr[:4]))
	if n < 8 || n > 10000 {
		return 0, false, errors.New("bad startup length")
	}
	return n, binary.BigEndian.Uint32(hdr[4:8]) == 80877103, nil
}

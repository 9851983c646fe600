package router

import (
	"bufio"
	"io"
	"net"

	"github.com/pgswitch/pgswitch/wire"
)

// clientReadBuf is a client's read buffer: big enough that a typical query
// arrives in one read, small enough that 1,000 idle clients cost 0.5 MiB.
// Larger messages are read straight into the destination by bufio.
// Rejected: a 5-byte header read into the session plus a pooled 16 KiB
// reader; it cost a second read syscall per message (measured ~8% TPS).
const clientReadBuf = 512

// clientReader reads a client's messages. Owned by the session goroutine.
type clientReader struct {
	br  *bufio.Reader
	hdr [wire.HeaderSize]byte
}

func newClientReader(nc net.Conn) clientReader {
	return clientReader{br: bufio.NewReaderSize(nc, clientReadBuf)}
}

// next reads the next message header.
func (r *clientReader) next(max int) (wire.Header, error) {
	if _, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		return wire.Header{}, err
	}
	return wire.ParseHeader(r.hdr[:], max)
}

// appendMessage appends the whole message whose header next returned.
func (r *clientReader) appendMessage(dst []byte, h wire.Header) ([]byte, error) {
	dst = append(dst, r.hdr[:]...)
	start := len(dst)
	dst = grow(dst, h.Len)
	_, err := io.ReadFull(r.br, dst[start:start+h.Len])
	return dst, err
}

// skip discards the body of the message whose header next returned.
func (r *clientReader) skip(h wire.Header) error {
	_, err := r.br.Discard(h.Len)
	return err
}

// buffered reports how many bytes of further messages are already read.
func (r *clientReader) buffered() int { return r.br.Buffered() }

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n+len(b)/2)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

package router

import (
	"bufio"
	"io"
	"net"
	"sync"

	"github.com/pgswitch/pgswitch/wire"
)

// readers lends buffered readers to sessions that are receiving; an idle
// client blocks on a 5-byte header read and holds none.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// clientReader reads a client's messages. Owned by the session goroutine.
type clientReader struct {
	nc  net.Conn
	br  *bufio.Reader // lent from readers while bytes are buffered
	hdr [wire.HeaderSize]byte
}

// next reads the next message header.
func (r *clientReader) next(max int) (wire.Header, error) {
	if r.br != nil && r.br.Buffered() == 0 {
		r.giveBack()
	}
	if r.br == nil {
		if _, err := io.ReadFull(r.nc, r.hdr[:]); err != nil {
			return wire.Header{}, err
		}
		r.br = readers.Get().(*bufio.Reader)
		r.br.Reset(r.nc)
	} else if _, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
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
func (r *clientReader) buffered() int {
	if r.br == nil {
		return 0
	}
	return r.br.Buffered()
}

func (r *clientReader) giveBack() {
	if r.br != nil {
		r.br.Reset(nil)
		readers.Put(r.br)
		r.br = nil
	}
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n+len(b)/2)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

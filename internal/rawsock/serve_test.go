package rawsock

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestServePingPong runs a request-and-answer exchange the way the pump
// does: step reads inside Serve, answers each whole request, and once a
// read has drained the socket returns ErrWouldWait without trying again.
// The other end sends each request only after the answer to the one
// before, in pieces of random sizes with pauses, so requests arrive while
// step runs, between its reads, and while Serve waits. None may be missed:
// a lost wake-up stalls the exchange until the read deadline ends Serve.
func TestServePingPong(t *testing.T) {
	c, other := tcpPair(t)
	const rounds = 2000
	done := make(chan error, 1)
	go func() {
		defer other.CloseWrite()
		var ans [4]byte
		for i := range rounds {
			req := make([]byte, 4+i%700)
			binary.BigEndian.PutUint32(req, uint32(len(req)))
			for off := 0; off < len(req); {
				n := min(len(req)-off, 1+(i*7+off)%300)
				if _, err := other.Write(req[off : off+n]); err != nil {
					done <- err
					return
				}
				off += n
				if (i+off)%5 == 0 {
					time.Sleep(20 * time.Microsecond)
				}
			}
			if _, err := io.ReadFull(other, ans[:]); err != nil {
				done <- err
				return
			}
			if got := binary.BigEndian.Uint32(ans[:]); got != uint32(i) {
				done <- errors.New("answers out of order")
				return
			}
		}
		done <- nil
	}()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 0, 4096)
	answered := 0
	err := c.Serve(func() error {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return err
		}
		for len(buf) >= 4 && len(buf) >= int(binary.BigEndian.Uint32(buf)) {
			m := int(binary.BigEndian.Uint32(buf))
			buf = buf[:copy(buf, buf[m:])]
			var ans [4]byte
			binary.BigEndian.PutUint32(ans[:], uint32(answered))
			if _, err := c.Write(ans[:]); err != nil {
				return err
			}
			answered++
			if len(buf) == 0 && c.Drained() {
				return ErrWouldWait // the next request comes after this answer
			}
		}
		return nil
	})
	if err != io.EOF || answered != rounds {
		t.Fatalf("Serve = %v after %d of %d requests; want io.EOF after all", err, answered, rounds)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Reads outside Serve work as before.
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after Serve = %d, %v; want io.EOF", n, err)
	}
}

// TestServeEnds: Serve returns step's own error, a passed read deadline,
// or the error of a socket closed while it waits.
func TestServeEnds(t *testing.T) {
	c, other := tcpPair(t)
	mine := errors.New("mine")
	other.Write([]byte("x"))
	if err := c.Serve(func() error {
		if _, err := c.Read(make([]byte, 8)); err != nil {
			return err
		}
		return mine
	}); err != mine {
		t.Fatalf("Serve = %v; want step's error", err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := c.Serve(func() error { _, err := c.Read(make([]byte, 8)); return err }); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Serve past its deadline = %v", err)
	}
	c.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.Close()
	}()
	if err := c.Serve(func() error { _, err := c.Read(make([]byte, 8)); return err }); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve of a socket closed meanwhile = %v", err)
	}
}

// TestShutdownInsideServe: Shutdown ends Serve with the end of the stream,
// whether step calls it (Close there would wait for Serve itself) or
// another goroutine does while Serve waits; Close works after.
func TestShutdownInsideServe(t *testing.T) {
	c, other := tcpPair(t)
	other.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	shut := false
	err := c.Serve(func() error {
		if _, err := c.Read(make([]byte, 8)); err != nil {
			return err
		}
		if !shut {
			shut = true
			c.Shutdown()
		}
		return nil
	})
	if err != io.EOF {
		t.Fatalf("Serve after step's Shutdown = %v; want io.EOF", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c, _ = tcpPair(t)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.Shutdown()
	}()
	if err := c.Serve(func() error { _, err := c.Read(make([]byte, 8)); return err }); err != io.EOF {
		t.Fatalf("Serve, shut down meanwhile = %v; want io.EOF", err)
	}
}

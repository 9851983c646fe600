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

// TestCloseInsideServe: Close while Serve runs does not wait for it. Step
// may close its own socket, or wait for a goroutine that closes it; either
// way Serve ends with net.ErrClosed, the peer sees the end of the stream,
// and the socket is closed once Serve returns.
func TestCloseInsideServe(t *testing.T) {
	// Step closes its own socket (a session ending its client with a FATAL).
	c, other := tcpPair(t)
	other.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	closed := false
	err := serveWithin(t, c, func() error {
		if _, err := c.Read(make([]byte, 8)); err != nil {
			return err
		}
		if !closed {
			closed = true
			c.Close()
		}
		return nil
	})
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve after step's Close = %v; want net.ErrClosed", err)
	}
	if _, err := c.Write([]byte("y")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Serve returned = %v; want net.ErrClosed (the socket closed)", err)
	}
	other.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := other.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("peer read %d, %v; want io.EOF", n, err)
	}

	// Step waits for the goroutine that closes it (a pump disconnecting
	// the client its session waits for); net.Conn's Close would wait for
	// Serve to return, and neither would go on.
	c, other = tcpPair(t)
	other.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	closedBy := make(chan error, 1)
	steps := 0
	err = serveWithin(t, c, func() error {
		steps++
		if _, err := c.Read(make([]byte, 8)); err != nil {
			return err
		}
		go func() { closedBy <- c.Close() }()
		select {
		case err := <-closedBy:
			if err != nil {
				return err
			}
		case <-time.After(10 * time.Second):
			return errors.New("Close waited for Serve")
		}
		return nil
	})
	if !errors.Is(err, net.ErrClosed) || steps != 2 {
		t.Fatalf("Serve = %v after %d steps; want net.ErrClosed after 2", err, steps)
	}
	if err := c.Serve(func() error { return nil }); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve of a closed socket = %v", err)
	}

	// Outside Serve, Close closes at once.
	c, _ = tcpPair(t)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close = %v", err)
	}
}

// serveWithin runs c.Serve(step), failing the test if it has not returned
// within 10 seconds (a deadlock).
func serveWithin(t *testing.T, c *Conn, step func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Serve(step) }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return: Close waited for it")
		return nil
	}
}

package rawsock

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection, the first
// wrapped.
func tcpPair(t testing.TB) (*Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	dialed, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	other := <-accepted
	if other == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { dialed.Close(); other.Close() })
	w, ok := Wrap(dialed).(*Conn)
	if !ok {
		t.Fatalf("Wrap(%T) did not wrap", dialed)
	}
	return w, other.(*net.TCPConn)
}

// TestBothWays sends 8 MiB of random bytes each way at once, written in
// pieces of up to 1 MiB and read in pieces of up to 3000 bytes, so that
// both ends see partial writes and wait for readiness (EAGAIN).
func TestBothWays(t *testing.T) {
	c, other := tcpPair(t)
	rng := rand.New(rand.NewSource(1))
	up := make([]byte, 8<<20)
	down := make([]byte, 8<<20)
	rng.Read(up)
	rng.Read(down)
	errs := make(chan error, 3)
	send := func(w io.Writer, data []byte, seed int64) {
		r := rand.New(rand.NewSource(seed))
		for len(data) > 0 {
			n := min(len(data), 1+r.Intn(1<<20))
			k, err := w.Write(data[:n])
			if err != nil || k != n {
				errs <- errors.Join(err, errors.New("short write"))
				return
			}
			data = data[n:]
		}
		errs <- nil
	}
	recv := func(r io.Reader, want []byte, seed int64) error {
		rng := rand.New(rand.NewSource(seed))
		got := make([]byte, 0, len(want))
		buf := make([]byte, 3000)
		for len(got) < len(want) {
			n, err := r.Read(buf[:1+rng.Intn(len(buf))])
			got = append(got, buf[:n]...)
			if err != nil {
				return err
			}
		}
		if !bytes.Equal(got, want) {
			return errors.New("bytes differ")
		}
		return nil
	}
	go send(c, up, 2)
	go send(other, down, 3)
	go func() { errs <- recv(other, up, 4) }()
	if err := recv(c, down, 5); err != nil {
		t.Fatalf("wrapped end read: %v", err)
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestEOF(t *testing.T) {
	c, other := tcpPair(t)
	other.Write([]byte("last"))
	other.Close()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "last" {
		t.Fatalf("ReadAll = %q, %v; want \"last\", nil", b, err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v", n, err)
	}
}

func TestReset(t *testing.T) {
	c, other := tcpPair(t)
	other.SetLinger(0) // close sends RST
	other.Close()
	_, err := c.Read(make([]byte, 16))
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after reset = %v; want a read *net.OpError of ECONNRESET", err)
	}
	// Writing to the reset connection fails the same way net.Conn does.
	_, err = c.Write([]byte("x"))
	if !errors.As(err, &oe) || oe.Op != "write" || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Write after reset = %v; want a write *net.OpError of EPIPE", err)
	}
}

func TestDeadline(t *testing.T) {
	c, other := tcpPair(t)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past deadline = %v", err)
	}
	c.SetReadDeadline(time.Time{})
	other.Write([]byte("y"))
	b := make([]byte, 1)
	if n, err := c.Read(b); n != 1 || err != nil || b[0] != 'y' {
		t.Fatalf("Read after clearing the deadline = %d, %v, %q", n, err, b)
	}
	// A write that cannot complete (the other end reads nothing) ends at
	// its deadline, having written part.
	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := c.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n == 0 || n == 64<<20 {
		t.Fatalf("blocked Write = %d, %v; want part written and the deadline", n, err)
	}
}

func TestCloseWakesRead(t *testing.T) {
	c, _ := tcpPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read during Close = %v; want net.ErrClosed", err)
	}
}

func TestWrapKinds(t *testing.T) {
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if Wrap(p1) != p1 {
		t.Error("a pipe was wrapped")
	}
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("unix"))
			c.Close()
		}
	}()
	uc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	w := Wrap(uc)
	defer w.Close()
	if _, ok := w.(*Conn); !ok {
		t.Fatal("a Unix socket was not wrapped")
	}
	if w.(*Conn).Unwrap() != uc {
		t.Error("Unwrap does not return the socket")
	}
	if b, err := io.ReadAll(w); err != nil || string(b) != "unix" {
		t.Fatalf("ReadAll = %q, %v", b, err)
	}
}

// TestNoAllocs: a read and a write of the forwarding path allocate nothing.
func TestNoAllocs(t *testing.T) {
	c, other := tcpPair(t)
	msg := []byte("Q\x00\x00\x00\x0dSELECT 1\x00")
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(other, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		other.Write(msg)
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per round trip; want 0", allocs)
	}
}

// BenchmarkPingPong is one client's round trip through a wrapped socket
// and through net.Conn, with the echoing end in a goroutine as a pooler's
// server side is.
func BenchmarkPingPong(b *testing.B) {
	for _, raw := range []bool{false, true} {
		name := "net"
		if raw {
			name = "raw"
		}
		b.Run(name, func(b *testing.B) {
			c, other := tcpPair(b)
			var conn net.Conn = c
			if !raw {
				conn = c.Conn
			}
			go func() {
				buf := make([]byte, 64)
				for {
					n, err := other.Read(buf)
					if err != nil {
						return
					}
					other.Write(buf[:n])
				}
			}()
			msg := make([]byte, 40)
			b.ReportAllocs()
			for b.Loop() {
				conn.Write(msg)
				io.ReadFull(conn, msg)
			}
		})
	}
}

// TestConcurrentWriters: eight goroutines write whole messages at once, as
// two pumps may when one's last answer to a client has gone out and its
// Write has not returned yet; every message arrives whole.
func TestConcurrentWriters(t *testing.T) {
	c, other := tcpPair(t)
	const writers, each, size = 8, 300, 1000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for w := range writers {
			go func() {
				msg := bytes.Repeat([]byte{byte('a' + w)}, size)
				for range each {
					if _, err := c.Write(msg); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}()
	other.SetReadDeadline(time.Now().Add(30 * time.Second)) // a lost write fails, not hangs
	buf := make([]byte, size)
	counts := map[byte]int{}
	for range writers * each {
		if _, err := io.ReadFull(other, buf); err != nil {
			t.Fatal(err)
		}
		if bytes.Count(buf, buf[:1]) != size {
			t.Fatalf("a message arrived mixed with another: %q…", buf[:40])
		}
		counts[buf[0]]++
	}
	<-done
	for w := range writers {
		if counts[byte('a'+w)] != each {
			t.Fatalf("writer %d: %d messages arrived, want %d", w, counts[byte('a'+w)], each)
		}
	}
}

// TestIdle: Idle lets both directions' state go, and the next Read and
// Write work as before.
func TestIdle(t *testing.T) {
	c, other := tcpPair(t)
	for i := range 3 {
		if _, err := c.Write([]byte{'a' + byte(i)}); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(other, b); err != nil || b[0] != 'a'+byte(i) {
			t.Fatalf("round %d: the other end read %q, %v", i, b, err)
		}
		other.Write([]byte{'z' - byte(i)})
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 'z'-byte(i) {
			t.Fatalf("round %d: read %q, %v", i, b, err)
		}
		if c.r == nil || c.w == nil {
			t.Fatal("no state after a Read and a Write")
		}
		c.Idle()
		if c.r != nil || c.w != nil {
			t.Fatal("Idle kept the state")
		}
	}
}

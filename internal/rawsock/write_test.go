package rawsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// serveUntilDone runs Serve on c in a goroutine, reading and dropping
// whatever comes, until the peer closes its side; the returned channel
// gives Serve's error.
func serveUntilDone(c *Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 512)
		done <- c.Serve(func() error {
			_, err := c.Read(buf)
			return err
		})
	}()
	return done
}

// TestWritesWhileServing: while Serve reads the socket, two goroutines
// write records of random sizes (up to 300 KiB, so that writes fill the
// socket and wait) to a peer that reads slowly in random pieces. Every
// record must arrive whole, uninterrupted by the other writer's bytes.
func TestWritesWhileServing(t *testing.T) {
	c, other := tcpPair(t)
	served := serveUntilDone(c)
	const writers, records = 2, 60
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for i := range records {
				n := 8 + rng.Intn(300<<10)
				rec := make([]byte, n)
				binary.BigEndian.PutUint32(rec, uint32(n))
				binary.BigEndian.PutUint16(rec[4:], uint16(w))
				binary.BigEndian.PutUint16(rec[6:], uint16(i))
				for j := 8; j < n; j++ {
					rec[j] = byte(w*31 + i + j)
				}
				if m, err := c.Write(rec); err != nil || m != n {
					errs <- fmt.Errorf("writer %d record %d: wrote %d of %d: %v", w, i, m, n, err)
					return
				}
			}
		}()
	}
	rng := rand.New(rand.NewSource(7))
	next := [writers]int{}
	hdr := make([]byte, 8)
	for range writers * records {
		if _, err := io.ReadFull(other, hdr); err != nil {
			t.Fatal(err)
		}
		n := int(binary.BigEndian.Uint32(hdr))
		w, i := int(binary.BigEndian.Uint16(hdr[4:])), int(binary.BigEndian.Uint16(hdr[6:]))
		if w >= writers || i != next[w] || n < 8 {
			t.Fatalf("record header %x: writer %d record %d, want record %v of its writer", hdr, w, i, next)
		}
		next[w]++
		body := make([]byte, n-8)
		for off := 0; off < len(body); {
			m := min(len(body)-off, 1+rng.Intn(20000))
			if _, err := io.ReadFull(other, body[off:off+m]); err != nil {
				t.Fatal(err)
			}
			off += m
			if rng.Intn(20) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		for j, b := range body {
			if b != byte(w*31+i+j+8) {
				t.Fatalf("writer %d record %d: byte %d is %d, want %d", w, i, j+8, b, byte(w*31+i+j+8))
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	other.CloseWrite()
	if err := <-served; err != io.EOF {
		t.Fatalf("Serve = %v, want io.EOF", err)
	}
}

// TestWriteDeadlineWhileServing: a write deadline holds while Serve reads
// the socket, even for a write the socket has room for (pool.Client.Cut
// relies on it), and writes go through again once it is cleared.
func TestWriteDeadlineWhileServing(t *testing.T) {
	c, other := tcpPair(t)
	served := serveUntilDone(c)
	if _, err := c.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	c.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := c.Write([]byte("b")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past its deadline = %v, want a deadline error", err)
	}
	c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte("c")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2)
	if _, err := io.ReadFull(other, got); err != nil || string(got) != "ac" {
		t.Fatalf("peer read %q, %v; want \"ac\"", got, err)
	}
	other.CloseWrite()
	if err := <-served; err != io.EOF {
		t.Fatalf("Serve = %v, want io.EOF", err)
	}
}

// TestNoWriteAfterServeEnds: a goroutine writes to a socket on and on
// while Serve runs, ends and the socket is closed; at once new sockets
// are opened, which take the closed one's descriptor number. None of them
// may receive a byte: a write that used Serve's descriptor after Serve let
// it go would reach one of them. Randomized rounds, fixed seed.
func TestNoWriteAfterServeEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rng := rand.New(rand.NewSource(3))
	for round := range 150 {
		c, other := tcpPair(t)
		go io.Copy(io.Discard, other)
		served := serveUntilDone(c)
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			msg := []byte("stray bytes from a closed socket's writer")
			for {
				if _, err := c.Write(msg); err != nil {
					return
				}
			}
		}()
		time.Sleep(time.Duration(rng.Intn(300)) * time.Microsecond)
		c.Close() // shuts down; Serve ends and closes it
		if err := <-served; err == nil {
			t.Fatalf("round %d: Serve returned nil after Close", round)
		}
		// Take the freed descriptor numbers while the writer may still run.
		var fresh []net.Conn
		for range 4 {
			d, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			a, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			fresh = append(fresh, d, a)
		}
		<-stopped
		for _, f := range fresh {
			f.SetReadDeadline(time.Now().Add(time.Millisecond))
			if n, _ := f.Read(make([]byte, 64)); n > 0 {
				t.Fatalf("round %d: a new socket received %d bytes written to a closed one", round, n)
			}
			f.Close()
		}
		other.Close()
	}
}

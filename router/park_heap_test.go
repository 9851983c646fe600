//go:build linux

package router

import (
	"bytes"
	"encoding/binary"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// parkedHeapBudget is what the Go heap may hold per parked session: an
// idle client must cost under 4 KiB of RSS (issue 14), of which the
// runtime's poll descriptor and the kernel's socket take their share.
// Measured at 2.4 KiB when this was written, of which about 0.5 KiB is
// the runtime's record of the goroutine the session ran on, kept for reuse.
const parkedHeapBudget = 2816

// TestParkedSessionHeap: the live heap a parked session keeps (session,
// connection, tracking, registrations), measured in-process. The clients
// are raw sockets driven by system calls, so that none of their memory is
// on the Go heap.
func TestParkedSessionHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("logs in a few hundred clients")
	}
	const clients = 300
	srv := newFakePG(t, false)
	r, addr := fakeRouter(t, 2, srv)
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}

	fds := make([]int, 0, clients+1)
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	// The first client warms what is made once: the parser, the pools.
	fd, err := rawClient(ta)
	if err != nil {
		t.Fatal(err)
	}
	fds = append(fds, fd)
	before := liveHeap()
	for range clients {
		fd, err := rawClient(ta)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	deadline := time.Now().Add(20 * time.Second)
	for r.parker.parked() < clients+1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d idle clients parked", r.parker.parked(), clients)
		}
		time.Sleep(50 * time.Millisecond)
	}
	per := (liveHeap() - before) / clients
	t.Logf("%d bytes of heap per parked session", per)
	if per > parkedHeapBudget {
		t.Fatalf("a parked session keeps %d bytes of heap, more than %d", per, parkedHeapBudget)
	}
}

func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// rawClient logs in to the router at a as user u of database db (trust),
// runs SELECT 1 and leaves the connection open, on a blocking socket.
func rawClient(a *net.TCPAddr) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	sa := &syscall.SockaddrInet4{Port: a.Port}
	copy(sa.Addr[:], a.IP.To4())
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	body := binary.BigEndian.AppendUint32(nil, 3<<16)
	for _, kv := range []string{"user", "u", "database", "db", "application_name", "idle"} {
		body = append(append(body, kv...), 0)
	}
	body = append(body, 0)
	startup := binary.BigEndian.AppendUint32(nil, uint32(4+len(body)))
	query := append([]byte{'Q'}, binary.BigEndian.AppendUint32(nil, uint32(4+len("SELECT 1")+1))...)
	query = append(append(query, "SELECT 1"...), 0)
	for _, msg := range [][]byte{append(startup, body...), query} {
		if err := rawRoundTrip(fd, msg); err != nil {
			syscall.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

// rawRoundTrip writes msg and reads until the answer ends in ReadyForQuery.
func rawRoundTrip(fd int, msg []byte) error {
	if _, err := syscall.Write(fd, msg); err != nil {
		return err
	}
	ready := []byte{'Z', 0, 0, 0, 5, 'I'}
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.HasSuffix(got, ready) {
		n, err := syscall.Read(fd, buf)
		if err != nil {
			return err
		}
		if n == 0 {
			return syscall.ECONNRESET
		}
		got = append(got, buf[:n]...)
	}
	return nil
}

// Command iomodel is a prototype, not a product: a minimal transaction
// pooler for pgbench's simple-protocol scripts, built three ways, to measure
// what the I/O model alone costs per transaction before pgswitch's own
// logic comes in:
//
//   - pump: a goroutine per client reading it, and a goroutine per server
//     connection forwarding its answers (pgswitch's model today);
//   - sync: one goroutine per client that writes the query, reads the answer
//     and writes it back itself (no hand-off between goroutines);
//   - epoll: one event loop per core, PgBouncer's model, on raw epoll with
//     level-triggered readiness and a pool of server connections per loop.
//
// Clients log in without a password (trust); servers with pgconn.
//
// What it measured (2026-12-07, 2 cores shared with PostgreSQL and pgbench
// and another engineer's tests; pgbench -S -c 16 -j 2, pool of 20; perf
// stat over 5 s; two interleaved rounds), CPU per transaction and context
// switches of the pooler per transaction:
//
//	PgBouncer 1.18                 31.3 / 30.4 µs   0.38 / 0.35
//	pump (pgswitch's model)        69.0 / 63.4 µs   2.42 / 1.33
//	sync                           44.7 / 54.7 µs   1.51 / 0.97
//	epoll, a loop per core         45.7 / 49.5 µs   1.53 / 1.91
//	epoll -raw, a loop per core    53.4 / 70.1 µs   1.56 / 2.66
//	epoll -raw -loops 1            38.3 / 33.9 µs   1.01 / 1.00
//
// The I/O model is the whole of pgswitch's 2× (pgswitch itself cost 68 µs
// in the same conditions): its own logic adds next to nothing over the
// bare pump. No Go model reached PgBouncer's CPU: one event loop came
// closest (1.1–1.2×), and a loop per core costs more than one, as each
// loop sleeps and wakes (the runtime hands a P blocked in epoll_wait to
// another thread) for half the events. See the closing note of issue 14.
//
// Later the same day, -raw for pump and sync (internal/rawsock: reads and
// writes that do not enter the runtime's system-call state, whose first
// call after the process idled woke sysmon back to 20 µs polling), two
// interleaved rounds, quieter machine:
//
//	PgBouncer 1.18                 23.0 / 28.4 µs   0.39 / 0.38
//	pump                           42.3 / 57.9 µs   0.87 / 0.94
//	pump -raw                      35.8 / 41.1 µs   0.58 / 0.72
//	sync -raw                      37.0 / 32.9 µs   0.59 / 0.50
//
// pgswitch took rawsock; it then measured 40–44 µs here.
//
// persist (persist.go, 2026-12-07 evening) is pump with each goroutine's
// reads inside one rawsock.Serve, skipping the read that would say EAGAIN
// after a read that drained the socket (-raw: the reads and writes raw, as
// measured here): 2.01 reads per transaction
// against pump -raw's 4.53 (strace -c, 8000 transactions). CPU per
// transaction and involuntary context switches, three interleaved rounds
// of pgbench -S -c 16 (-j 2, 6 s each):
//
//	PgBouncer 1.18                 29.3 / 27.2 / 28.8 µs   0.26 / 0.22 / 0.22
//	pump -raw                      39.0 / 35.7 / 35.7 µs   0.46 / 0.44 / 0.43
//	persist                        37.3 / 33.8 / 32.7 µs   0.40 / 0.36 / 0.33
//
// 2–3 µs, 5–8 %. pgswitch took it for the pump, then for its clients
// where a client that closed right behind its last message is still found
// (this prototype assumes none does; see ARCHITECTURE.md).
//
//	go run ./bench/iomodel -mode epoll -listen 127.0.0.1:6499 -server 'postgres://…'
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"runtime"
	"syscall"

	"github.com/pgswitch/pgswitch/bench/internal/pgmini"
	"github.com/pgswitch/pgswitch/internal/rawsock"
)

var (
	mode   = flag.String("mode", "pump", "pump, sync, epoll or persist")
	listen = flag.String("listen", "127.0.0.1:6499", "address clients connect to")
	server = flag.String("server", "", "server connection URL (the primary)")
	size   = flag.Int("pool", 20, "server connections")
)

func main() {
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	conns := pgmini.LoginPool(*server, *size)
	for i, c := range conns {
		conns[i] = wrap(c)
	}
	pgmini.ExitOnSignal()
	switch *mode {
	case "pump":
		servePump(ln, conns)
	case "sync":
		serveSync(ln, conns)
	case "epoll":
		serveEpoll(ln, conns)
	case "persist":
		servePersist(ln, conns)
	default:
		log.Fatalf("mode %q", *mode)
	}
}

// wrap gives pump and sync's sockets raw reads and writes (-raw), as
// pgswitch's are (internal/rawsock); epoll and persist take the descriptors
// out.
func wrap(c net.Conn) net.Conn {
	if *rawIO && *mode != "epoll" && *mode != "persist" {
		return rawsock.Wrap(c)
	}
	return c
}

// pool hands out server connections.
type pool chan net.Conn

// readMessage reads one message into buf.
func readMessage(r io.Reader, buf []byte) ([]byte, error) {
	buf = buf[:5]
	if _, err := io.ReadFull(r, buf); err != nil {
		return buf, err
	}
	n := int(binary.BigEndian.Uint32(buf[1:5])) - 4
	if n < 0 || n > 1<<24 {
		return buf, errors.New("bad length")
	}
	if cap(buf) < 5+n {
		nb := make([]byte, 5, 5+n)
		copy(nb, buf)
		buf = nb
	}
	buf = buf[:5+n]
	_, err := io.ReadFull(r, buf[5:])
	return buf, err
}

// serveSync: one goroutine per client does the whole round trip.
func serveSync(ln net.Listener, conns []net.Conn) {
	p := make(pool, len(conns))
	for _, c := range conns {
		p <- c
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c = wrap(c)
		go func() {
			defer c.Close()
			if pgmini.Startup(c) != nil {
				return
			}
			buf := make([]byte, 0, 8192)
			rbuf := make([]byte, 16384)
			for {
				var err error
				if buf, err = readMessage(c, buf); err != nil || buf[0] == 'X' {
					return
				}
				srv := <-p
				if _, err := srv.Write(buf); err != nil {
					return
				}
				var sc pgmini.Scanner
				for {
					n, err := srv.Read(rbuf)
					if err != nil {
						return
					}
					done := sc.Feed(rbuf[:n])
					c.Write(rbuf[:n])
					if done {
						break
					}
				}
				p <- srv
			}
		}()
	}
}

// servePump: a goroutine per client reads it; each server connection's
// pump goroutine forwards answers to whichever client it serves.
func servePump(ln net.Listener, conns []net.Conn) {
	type link struct {
		srv    net.Conn
		client chan net.Conn // the client to forward the next answer to
	}
	p := make(chan *link, len(conns))
	for _, c := range conns {
		l := &link{srv: c, client: make(chan net.Conn, 1)}
		p <- l
		go func() {
			rbuf := make([]byte, 16384)
			for cl := range l.client {
				var sc pgmini.Scanner
				for {
					n, err := l.srv.Read(rbuf)
					if err != nil {
						return
					}
					done := sc.Feed(rbuf[:n])
					cl.Write(rbuf[:n])
					if done {
						break
					}
				}
				p <- l
			}
		}()
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c = wrap(c)
		go func() {
			defer c.Close()
			if pgmini.Startup(c) != nil {
				return
			}
			buf := make([]byte, 0, 8192)
			for {
				var err error
				if buf, err = readMessage(c, buf); err != nil || buf[0] == 'X' {
					return
				}
				l := <-p
				l.client <- c
				if _, err := l.srv.Write(buf); err != nil {
					return
				}
			}
		}()
	}
}

// serveEpoll: runtime.NumCPU event loops; the listener's connections are
// dealt to them in turn after their startup (done on a goroutine, as logins
// are rare), and each loop has its share of the server connections.
func serveEpoll(ln net.Listener, conns []net.Conn) {
	n := runtime.NumCPU()
	if *loopsN > 0 {
		n = *loopsN
	}
	loops := make([]*loop, n)
	for i := range loops {
		l, err := newLoop()
		if err != nil {
			log.Fatal(err)
		}
		loops[i] = l
	}
	for i, c := range conns {
		fd, err := rawFD(c)
		if err != nil {
			log.Fatal(err)
		}
		loops[i%n].addServer(fd)
	}
	for _, l := range loops {
		go l.run()
	}
	next := 0
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		l := loops[next%n]
		next++
		go func() {
			if pgmini.Startup(c) != nil {
				c.Close()
				return
			}
			fd, err := rawFD(c)
			if err != nil {
				return
			}
			l.addClient(fd)
		}()
	}
}

// rawFD takes the descriptor out of c (a duplicate, non-blocking) and
// closes c.
func rawFD(c net.Conn) (int, error) {
	f, err := c.(*net.TCPConn).File()
	c.Close()
	if err != nil {
		return 0, err
	}
	fd, err := syscall.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return 0, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		return 0, err
	}
	return fd, nil
}

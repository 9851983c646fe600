package main

import (
	"encoding/binary"
	"net"
	"syscall"

	"github.com/pgswitch/pgswitch/bench/internal/pgmini"
)

// servePersist is pump's model with each goroutine's reads inside one
// long syscall.RawConn.Read: the callback reads, handles what it read, and
// after a short read (the socket was drained) returns false to wait for
// readiness without first trying a read that says EAGAIN. The runtime
// resets a descriptor's readiness only when a Read starts, so an edge that
// arrives between two tries of the same Read is kept, and none is lost.
//
// A prototype's shortcut: a read that drains the socket does not report an
// end of stream that arrived with its data. pgbench sends Terminate before
// it closes; a client that closes right behind a query would leave its
// goroutine waiting here for good.
func servePersist(ln net.Listener, conns []net.Conn) {
	type link struct {
		srv    net.Conn
		fd     uintptr
		client chan uintptr // the client descriptor to forward the next answer to
	}
	p := make(chan *link, len(conns))
	for _, c := range conns {
		rc, err := c.(syscall.Conn).SyscallConn()
		if err != nil {
			panic(err)
		}
		l := &link{srv: c, client: make(chan uintptr, 1)}
		rc.Control(func(fd uintptr) { l.fd = fd })
		p <- l
		go func() {
			rbuf := make([]byte, 16384)
			cl, ok := <-l.client
			if !ok {
				return
			}
			var sc pgmini.Scanner
			rc.Read(func(fd uintptr) bool {
				for {
					n, err := sysRead(int(fd), rbuf)
					switch {
					case err == syscall.EAGAIN:
						return false
					case err != nil || n == 0:
						return true
					}
					done := sc.Feed(rbuf[:n])
					writeAll(int(cl), rbuf[:n])
					if done {
						sc = pgmini.Scanner{}
						p <- l
						if cl, ok = <-l.client; !ok {
							return true
						}
						return false // the answer comes after the query: wait for it
					}
					if n < len(rbuf) {
						return false
					}
				}
			})
		}()
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if pgmini.Startup(c) != nil {
				return
			}
			rc, err := c.(syscall.Conn).SyscallConn()
			if err != nil {
				return
			}
			var cfd uintptr
			rc.Control(func(fd uintptr) { cfd = fd })
			buf := make([]byte, 8192)
			have := 0
			rc.Read(func(fd uintptr) bool {
				for {
					n, err := sysRead(int(fd), buf[have:])
					switch {
					case err == syscall.EAGAIN:
						return false
					case err != nil || n == 0:
						return true
					}
					short := n < len(buf)-have
					have += n
					for have >= 5 {
						m := 1 + int(binary.BigEndian.Uint32(buf[1:5]))
						if m > len(buf) || have < m {
							break
						}
						if buf[0] == 'X' {
							return true
						}
						l := <-p
						l.client <- cfd
						writeAll(int(l.fd), buf[:m])
						copy(buf, buf[m:have])
						have -= m
					}
					if short {
						return false
					}
				}
			})
		}()
	}
}

// Command evlib is a prototype, not a product: bench/iomodel's minimal
// transaction pooler for pgbench's simple-protocol scripts, built on two
// event-loop network libraries made for this, to measure what each costs
// per transaction side by side with iomodel's modes and PgBouncer before
// adopting either:
//
//   - gnet: github.com/panjf2000/gnet/v2's event loops (one per CPU, or
//     -loops N) read and write clients and server connections alike, with a
//     share of the pool per loop, as iomodel's epoll mode does by hand;
//   - netpoll: github.com/cloudwego/netpoll's EventLoop runs a client's
//     OnRequest on a goroutine when its query arrives; that goroutine writes
//     the query to a server connection of the pool and reads the answer back
//     itself, as Kitex (netpoll's main user) reads its outbound connections,
//     iomodel's sync mode on netpoll's poller.
//
// gnet.go and netpoll.go tell where each one's events run and what a
// transaction hands over. It is a module of its own so that pgswitch's
// module does not take the libraries as dependencies.
//
// Clients log in without a password (trust); servers with pgconn, whose
// descriptors the libraries then take over (bench/internal/pgmini). A
// server goes back to the pool at any ReadyForQuery; netpoll waits for an
// answer after Q and S only, so it forwards simple queries and extended
// ones up to Sync, not COPY FROM STDIN. A client that leaves while its
// server answers takes that server connection with it: it is closed, and a
// new one logged in in its place. A server that dies is replaced too, and
// its client closed (netpoll finds it dead when it next takes it).
//
// What it measured: the figures are to come (CPU per transaction and
// context switches of the pooler per transaction, beside iomodel's modes
// and PgBouncer, as bench/iomodel reports them).
//
//	cd bench/evlib && go run . -mode gnet -listen 127.0.0.1:6499 -server 'postgres://…' -pool 20 [-loops N]
//	cd bench/evlib && go run . -mode netpoll -listen 127.0.0.1:6499 -server 'postgres://…' -pool 20 [-loops N] [-gopool=false]
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/pgswitch/pgswitch/bench/internal/pgmini"
)

var (
	mode   = flag.String("mode", "gnet", "gnet or netpoll")
	listen = flag.String("listen", "127.0.0.1:6499", "address clients connect to")
	server = flag.String("server", "", "server connection URL (the primary)")
	size   = flag.Int("pool", 20, "server connections")
	loopsN = flag.Int("loops", 0, "event loops (gnet: 0 is one per CPU; netpoll: pollers, 0 is its default of one per 20 CPUs)")
	gopool = flag.Bool("gopool", true, "netpoll: run OnRequest on netpoll's goroutine pool (false: a new goroutine each time)")
)

func main() {
	flag.Parse()
	conns := make([]net.Conn, *size)
	for i := range conns {
		c, err := pgmini.Login(context.Background(), *server)
		if err != nil {
			log.Fatal(err)
		}
		conns[i] = c
	}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		<-ch
		os.Exit(0)
	}()
	var err error
	switch *mode {
	case "gnet":
		err = serveGnet(conns)
	case "netpoll":
		err = serveNetpoll(conns)
	default:
		log.Fatalf("mode %q", *mode)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// login logs a server connection in to replace one that was dropped; the
// pool is one connection short if it fails.
func login() (net.Conn, bool) {
	c, err := pgmini.Login(context.Background(), *server)
	if err != nil {
		log.Printf("server connection not replaced: %v", err)
		return nil, false
	}
	return c, true
}

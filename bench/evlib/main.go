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
// What it measured (2026-12-07, 2 cores shared with PostgreSQL and
// pgbench; pgbench -S -j 2, pool of 20; perf stat of the pooler over 5 s;
// two interleaved rounds), CPU and context switches of the pooler per
// transaction, and TPS:
//
//	-c 16                          CPU/txn         cs/txn        TPS
//	PgBouncer 1.18                 33.1 / 26.2 µs  0.41 / 0.34   9.7k / 12.9k
//	iomodel pump -raw              37.0 / 42.3 µs  0.52 / 0.52   11.6k / 9.7k
//	iomodel epoll -raw -loops 1    30.2 / 34.8 µs  0.59 / 1.07   11.5k / 11.7k
//	gnet -loops 1                  34.4 / 37.2 µs  0.87 / 1.19   11.4k / 10.9k
//	gnet -loops 2                  34.5 / 35.1 µs  0.84 / 0.66   12.4k / 12.7k
//	netpoll                        43.9 / 43.7 µs  0.61 / 0.61   10.4k / 11.0k
//	netpoll -gopool=false          43.0 / 44.4 µs  0.67 / 1.51   10.6k / 11.8k
//
//	-c 1 (direct: 4944 / 4932 TPS) CPU/txn         cs/txn        added latency
//	PgBouncer 1.18                 73.0 / 63.8 µs  2.01 / 1.99   +90 / +54 µs
//	iomodel pump -raw             126.5 / 115.3 µs 4.19 / 4.08   +198 / +164 µs
//	iomodel epoll -raw -loops 1    88.2 / 76.9 µs  3.06 / 2.77   +88 / +62 µs
//	gnet -loops 2                  99.1 / 99.1 µs  3.79 / 4.04   +100 / +83 µs
//	netpoll                       138.1 / 98.6 µs  5.35 / 4.33   +142 / +142 µs
//
// A second run beside pgswitch itself (route: primary, one server):
//
//	-c 16: PgBouncer 25.4 / 29.3 µs, pgswitch 51.1 / 52.3, epoll -loops 1
//	30.7 / 32.9, gnet -loops 2 41.9 / 42.9;
//	-c 1:  PgBouncer 61.3 / 65.0 µs, pgswitch 83.1 / 78.4, epoll -loops 1
//	84.2 / 89.2, gnet -loops 2 100.5 / 105.5.
//
// So gnet is the hand-written event loop at best, not better, and costs
// more at one client than pgswitch's goroutines (the extra epoll_wait and
// Gosched per wake-up: 4 context switches a transaction where PgBouncer
// and pgswitch take 2). netpoll costs more than the goroutine pump it
// would replace: every transaction is two hand-offs from its poller. The
// decision: pgswitch does not adopt either. gnet's best case would take
// 15–20 % off the forwarding at 16 clients and add some at one, in
// exchange for turning the router into callbacks (no blocking login,
// auth_query, session mode or COPY on a loop) with a pool split per loop.
// Of pgswitch's gap to PgBouncer here, 9–14 µs a transaction is its own
// work over the bare pump (51 µs against pump -raw's 37–42), more than
// either library would save.
//
//	cd bench/evlib && go run . -mode gnet -listen 127.0.0.1:6499 -server 'postgres://…' -pool 20 [-loops N]
//	cd bench/evlib && go run . -mode netpoll -listen 127.0.0.1:6499 -server 'postgres://…' -pool 20 [-loops N] [-gopool=false]
package main

import (
	"context"
	"flag"
	"log"
	"net"

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
	conns := pgmini.LoginPool(*server, *size)
	pgmini.ExitOnSignal()
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

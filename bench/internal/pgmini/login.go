package pgmini

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Login opens a server connection to url with pgconn and hijacks it: the
// net.Conn it returns is logged in and idle, its ReadyForQuery read.
func Login(ctx context.Context, url string) (net.Conn, error) {
	pc, err := pgconn.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	hj, err := pc.Hijack()
	if err != nil {
		return nil, fmt.Errorf("hijack: %w", err)
	}
	return hj.Conn, nil
}

// LoginPool logs n server connections in, for a prototype's pool; it stops
// the program if one fails, as a prototype cannot run short.
func LoginPool(url string, n int) []net.Conn {
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := Login(context.Background(), url)
		if err != nil {
			log.Fatal(err)
		}
		conns[i] = c
	}
	return conns
}

// ExitOnSignal ends the program at SIGINT or SIGTERM, as the benchmark
// scripts stop a prototype, without waiting for its connections.
func ExitOnSignal() {
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		<-ch
		os.Exit(0)
	}()
}

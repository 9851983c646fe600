package pgmini

import (
	"context"
	"fmt"
	"net"

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

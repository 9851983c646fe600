package pool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/pgswitch/pgswitch/internal/rawsock"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/wire"
)

// Target says how to reach and log in to one server for one (database, user).
type Target struct {
	Host     string
	Port     int
	Database string
	User     string
	Password string
	// TLS is how the server is verified and shown pgswitch's certificate
	// (libpq's sslmode, sslrootcert, sslcert, sslkey).
	TLS wire.ServerTLS
	// PassThrough, when set, logs in instead of Password: with what the
	// user's clients proved (a user known only by its verifier).
	PassThrough *wire.PassThrough
	// ConnectTimeout bounds the connection and its authentication.
	ConnectTimeout time.Duration
	// Answers makes, for each new connection, what decides its answers
	// (nil: everything is forwarded).
	Answers func() Answers
}

// readBufSize is a server connection's read buffer: large enough to batch
// many small rows per read, small enough for hundreds of server connections.
const readBufSize = 32 << 10

// connect dials and authenticates with pgconn (SCRAM, md5, cleartext, TLS as
// the server asks) and then takes over the raw connection.
func (p *Pool) connect(ctx context.Context) (*Conn, error) {
	t := p.currentTarget()
	if t.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.ConnectTimeout)
		defer cancel()
	}
	// Keyword/value form with the password set afterwards, so no quoting of
	// secrets is ever needed and they never appear in a string.
	dsn := fmt.Sprintf("host=%s port=%d dbname=%s user=%s",
		wire.QuoteConnValue(t.Host), t.Port, wire.QuoteConnValue(t.Database), wire.QuoteConnValue(t.User)) + t.TLS.ConnParams()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", p.key, err)
	}
	t.TLS.Configure(cfg, t.Host)
	cfg.Password = t.Password
	cfg.RuntimeParams = map[string]string{}
	if pt := t.PassThrough; pt != nil {
		cfg.AfterNetConnect = func(_ context.Context, _ *pgconn.Config, nc net.Conn) (net.Conn, error) {
			return &passThroughConn{Conn: nc, pt: pt, user: t.User}, nil
		}
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", p.key, err)
	}
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(context.Background())
		return nil, fmt.Errorf("connect %s: %w", p.key, err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, fmt.Errorf("connect %s: %w", p.key, err)
	}
	hj.Conn = unwrapPassThrough(hj.Conn)
	if tc, ok := hj.Conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAlive(true)
	}
	hj.Conn = rawsock.Wrap(hj.Conn)
	var answers Answers = passAll{}
	if t.Answers != nil {
		answers = t.Answers()
	}
	c := &Conn{
		answers: answers,
		pool:    p,
		nc:      hj.Conn,
		br:      bufio.NewReaderSize(hj.Conn, readBufSize),
		pid:     hj.PID,
		secret:  hj.SecretKey,
		created: time.Now(),
		born:    monotime(),
		done:    make(chan struct{}),
		status:  hj.TxStatus,
		params:  hj.ParameterStatuses,
	}
	if c.status == 0 {
		c.status = 'I'
	}
	c.raw, _ = hj.Conn.(*rawsock.Conn)
	go c.pump()
	return c, nil
}

// Cancel asks the server to cancel whatever the connection is running, on a
// new connection as the protocol wants.
func (c *Conn) Cancel(ctx context.Context) error {
	msg, err := wire.AppendCancelRequest(nil, c.pid, c.secret)
	if err != nil {
		return fmt.Errorf("cancel on %s: %w", c.Addr(), err)
	}
	t := c.pool.currentTarget()
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(t.Host, strconv.Itoa(t.Port)))
	if err != nil {
		return fmt.Errorf("cancel on %s: %w", c.Addr(), err)
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	if _, err := nc.Write(msg); err != nil {
		return fmt.Errorf("cancel on %s: %w", c.Addr(), err)
	}
	// The server closes the connection once it has signalled the backend:
	// only then is the cancel's outcome settled.
	var b [1]byte
	if _, err := nc.Read(b[:]); !errors.Is(err, io.EOF) {
		return fmt.Errorf("cancel on %s: not confirmed: %w", c.Addr(), err)
	}
	return nil
}

func (p *Pool) currentTarget() Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// Command app is the example application of the docker-compose sandwich: it
// listens on loopback only (pgswitch-edge is its front door), answers
// /health with the state of its database connection, and on / records a
// visit (a write, which pgswitch sends to the primary) and counts the
// visits (a read, which pgswitch may send to the replica).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	if err := run(); err != nil {
		slog.Error("app stopped", "err", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	listen := envOr("LISTEN", "127.0.0.1:8080")
	// DATABASE_URL points at pgswitch, as if it were PostgreSQL. pgswitch
	// pools server connections, so one client connection is enough here.
	db := &database{url: os.Getenv("DATABASE_URL")}
	if _, err := pgx.ParseConfig(db.url); err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	defer db.close()
	if err := db.migrate(ctx); err != nil {
		return err
	}

	srv := &http.Server{Addr: listen, Handler: newHandler(db), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	slog.Info("app listening", "addr", listen)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// newHandler serves /health and /.
func newHandler(db *database) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		err := db.do(ctx, func(c *pgx.Conn) error {
			var one int
			return c.QueryRow(ctx, "SELECT 1").Scan(&one)
		})
		if err != nil {
			http.Error(w, "database unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		var out struct {
			Visit       int64  `json:"visit"`
			Visits      int64  `json:"visits"`
			ReadOn      string `json:"read_served_by"`
			ForwardedBy string `json:"x_forwarded_for"`
		}
		var replica bool
		err := db.do(ctx, func(c *pgx.Conn) error {
			if err := c.QueryRow(ctx, "INSERT INTO visits DEFAULT VALUES RETURNING id").Scan(&out.Visit); err != nil {
				return err
			}
			return c.QueryRow(ctx, "SELECT count(*), pg_is_in_recovery() FROM visits").Scan(&out.Visits, &replica)
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		out.ReadOn = map[bool]string{true: "replica", false: "primary"}[replica]
		out.ForwardedBy = r.Header.Get("X-Forwarded-For")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	return mux
}

// database is one connection to pgswitch, opened on first use and again
// after an error.
type database struct {
	url  string
	mu   sync.Mutex
	conn *pgx.Conn
}

func (d *database) do(ctx context.Context, f func(*pgx.Conn) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil || d.conn.IsClosed() {
		c, err := pgx.Connect(ctx, d.url)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		d.conn = c
	}
	err := f(d.conn)
	if err != nil {
		// Start afresh next time rather than reuse a connection in an
		// unknown state.
		d.conn.Close(context.Background())
		d.conn = nil
	}
	return err
}

// migrate creates the application's table, as an application does once
// when it starts, retrying while pgswitch or PostgreSQL are still starting.
func (d *database) migrate(ctx context.Context) error {
	for {
		err := d.do(ctx, func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, schema)
			return err
		})
		if err == nil {
			return nil
		}
		slog.Warn("migration failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("migrate: %w", err)
		case <-time.After(time.Second):
		}
	}
}

const schema = "CREATE TABLE IF NOT EXISTS visits (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"

func (d *database) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close(context.Background())
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

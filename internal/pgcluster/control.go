package pgcluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// controlTimeout bounds the pg_ctl calls whose signatures take no context.
const controlTimeout = 60 * time.Second

// portAttempts: a port picked free can be taken by another test package
// before the server binds it.
const portAttempts = 3

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startFresh picks a port, writes it (and the server's name) into
// postgresql.auto.conf, where it overrides what a replica copied from the
// primary, and starts the server; a lost race for the port is retried.
func (c *Cluster) startFresh(ctx context.Context, s *Server, standby bool) error {
	var err error
	for range portAttempts {
		var port int
		if port, err = freePort(); err != nil {
			return fmt.Errorf("cluster: %s: pick port: %w", s.Name, err)
		}
		lines := fmt.Sprintf("port = %d\ncluster_name = %s\n", port, quoteLiteral(s.Name))
		if err = c.owner.appendFile(filepath.Join(s.DataDir, "postgresql.auto.conf"), lines); err != nil {
			return fmt.Errorf("cluster: %s: postgresql.auto.conf: %w", s.Name, err)
		}
		s.Port = port
		offset := fileSize(s.LogFile)
		err = c.start(ctx, s, standby)
		if err == nil || !strings.Contains(readFrom(s.LogFile, offset), "Address already in use") {
			return err
		}
	}
	return err
}

// StartServer starts a stopped server (pg_ctl start -w) and waits until it
// accepts connections. A replica then reconnects to the primary on its own;
// WaitStreaming waits for that.
func (c *Cluster) StartServer(s *Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	c.mu.Lock()
	standby := s.standby
	c.mu.Unlock()
	return c.start(ctx, s, standby)
}

func (c *Cluster) start(ctx context.Context, s *Server, standby bool) error {
	if _, err := c.owner.run(ctx, c.BaseDir, c.tool("pg_ctl"), "start",
		"-D", s.DataDir, "-l", s.LogFile, "-w", "-t", timeoutSeconds(ctx),
	); err != nil {
		return fmt.Errorf("cluster: %s: %w%s", s.Name, err, logTail(s.LogFile))
	}
	c.setState(s, true, standby)
	if err := c.waitAccepting(ctx, s); err != nil {
		return fmt.Errorf("cluster: %s: %w%s", s.Name, err, logTail(s.LogFile))
	}
	return nil
}

// StopServer stops a server with pg_ctl stop -m mode (immediate, fast or smart).
func (c *Cluster) StopServer(s *Server, mode string) error {
	switch mode {
	case "immediate", "fast", "smart":
	default:
		return fmt.Errorf("cluster: %s: stop mode %q: want immediate, fast or smart", s.Name, mode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	if _, err := c.owner.run(ctx, c.BaseDir, c.tool("pg_ctl"), "stop",
		"-D", s.DataDir, "-m", mode, "-w", "-t", timeoutSeconds(ctx),
	); err != nil {
		return fmt.Errorf("cluster: %s: %w", s.Name, err)
	}
	c.mu.Lock()
	s.running = false
	c.mu.Unlock()
	return nil
}

// RestartServer stops s with the given mode and starts it again.
func (c *Cluster) RestartServer(s *Server, mode string) error {
	if err := c.StopServer(s, mode); err != nil {
		return err
	}
	return c.StartServer(s)
}

// Promote turns a replica into a primary (pg_ctl promote -w). The cluster's
// Primary and Replicas fields stay as they are; WaitReplicated stops waiting
// for s.
func (c *Cluster) Promote(s *Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	if _, err := c.owner.run(ctx, c.BaseDir, c.tool("pg_ctl"), "promote",
		"-D", s.DataDir, "-w", "-t", timeoutSeconds(ctx),
	); err != nil {
		return fmt.Errorf("cluster: %s: %w", s.Name, err)
	}
	c.mu.Lock()
	s.standby = false
	c.mu.Unlock()
	return nil
}

// adminConnect logs in as the bootstrap superuser over the trusted Unix socket,
// which works whatever tests did to the SCRAM user.
func (c *Cluster) adminConnect(ctx context.Context, s *Server, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.Host = c.SocketDir
	cfg.Port = uint16(s.Port)
	cfg.User = "postgres"
	cfg.Database = db
	cfg.Password = ""
	cfg.TLSConfig = nil
	cfg.Fallbacks = nil
	cfg.RuntimeParams = map[string]string{"application_name": "pgswitch-cluster"}
	return pgx.ConnectConfig(ctx, cfg)
}

// waitAccepting polls until s answers a query. pg_ctl -w already waited for
// the postmaster to report ready; this also catches a hot standby that is not
// yet consistent.
func (c *Cluster) waitAccepting(ctx context.Context, s *Server) error {
	return poll(ctx, "accept connections", func(ctx context.Context) (bool, error) {
		conn, err := c.adminConnect(ctx, s, "postgres")
		if err != nil {
			return false, err
		}
		defer conn.Close(context.Background())
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			return false, err
		}
		return true, nil
	})
}

// timeoutSeconds turns what is left of ctx into pg_ctl's -t argument.
func timeoutSeconds(ctx context.Context) string {
	d, ok := ctx.Deadline()
	if !ok {
		return strconv.Itoa(int(controlTimeout / time.Second))
	}
	return strconv.Itoa(max(1, int(time.Until(d)/time.Second)))
}

func fileSize(path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return info.Size()
}

func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	n, _ := f.ReadAt(b, offset)
	return string(b[:n])
}

// logTail is the end of a server log, for errors: pg_ctl only says "could not
// start server", the log says why.
func logTail(path string) string {
	size := fileSize(path)
	text := strings.TrimSpace(readFrom(path, max(0, size-2048)))
	if text == "" {
		return ""
	}
	return "\n--- " + path + " (tail) ---\n" + text
}

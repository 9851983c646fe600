package pgcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// maxSocketPath leaves room under the 104–108 byte sun_path limit for the
// "/.s.PGSQL.65535.lock" PostgreSQL appends.
const maxSocketPath = 80

// Start creates and starts a primary and opts.Replicas streaming replicas.
// If any step fails, whatever was started is stopped again and removed.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	binDir, err := Available()
	if err != nil {
		return nil, err
	}
	o, err := currentOwner()
	if err != nil {
		return nil, err
	}
	opts = withDefaults(opts)

	c := &Cluster{
		User:     opts.User,
		Password: opts.Password,
		Database: opts.DatabaseName,
		BinDir:   binDir,
		owner:    o,
		replUser: "replicator",
	}
	if c.Password == "" {
		c.Password = randomSecret()
	}
	c.replPassword = randomSecret()

	if err := c.makeDirs(opts.BaseDir); err != nil {
		_ = c.removeFiles() // the makeDirs error says more
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	if opts.Log != nil {
		c.tail = startTail(opts.Log)
	}

	c.Primary = c.newServer("primary")
	if err := c.initPrimary(ctx, opts); err != nil {
		return nil, err
	}
	if err := c.startFresh(ctx, c.Primary, false); err != nil {
		return nil, err
	}
	if err := c.bootstrap(ctx); err != nil {
		return nil, err
	}

	for i := range opts.Replicas {
		c.Replicas = append(c.Replicas, c.newServer(fmt.Sprintf("replica%d", i+1)))
	}
	// Replicas are independent of each other; building them side by side
	// roughly halves Start.
	errs := make([]error, len(c.Replicas))
	var wg sync.WaitGroup
	for i, r := range c.Replicas {
		wg.Go(func() { errs[i] = c.startReplica(ctx, r) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func withDefaults(opts Options) Options {
	switch {
	case opts.Replicas == 0:
		opts.Replicas = 2
	case opts.Replicas < 0:
		opts.Replicas = 0
	}
	if opts.User == "" {
		opts.User = "pgswitch"
	}
	if opts.DatabaseName == "" {
		opts.DatabaseName = "app"
	}
	return opts
}

func randomSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails on Linux, see crypto/rand
	return hex.EncodeToString(b)
}

// makeDirs prepares BaseDir and a short socket directory, both owned by the
// account the servers run as.
func (c *Cluster) makeDirs(base string) error {
	if base == "" {
		dir, err := os.MkdirTemp("", "pgswitch-cluster-")
		if err != nil {
			return fmt.Errorf("cluster: base dir: %w", err)
		}
		c.BaseDir, c.removeBase = dir, true
	} else {
		abs, err := filepath.Abs(base)
		if err != nil {
			return fmt.Errorf("cluster: base dir %s: %w", base, err)
		}
		// Stop removes what Start made; in a directory that already held
		// something, it could not tell ours from the caller's.
		entries, err := os.ReadDir(abs)
		switch {
		case errors.Is(err, os.ErrNotExist):
			c.removeBase = true
		case err != nil:
			return fmt.Errorf("cluster: base dir: %w", err)
		case len(entries) > 0:
			return fmt.Errorf("cluster: base dir %s: not empty", abs)
		}
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return fmt.Errorf("cluster: base dir: %w", err)
		}
		c.BaseDir = abs
	}
	if err := c.owner.chown(c.BaseDir); err != nil {
		return fmt.Errorf("cluster: base dir %s: %w", c.BaseDir, err)
	}

	c.SocketDir = filepath.Join(c.BaseDir, "run")
	if len(c.SocketDir) > maxSocketPath {
		// A long BaseDir would overflow sun_path; the sockets go to a short
		// temporary directory instead, which Stop removes too.
		dir, err := os.MkdirTemp("", "pgsw-")
		if err != nil {
			return fmt.Errorf("cluster: socket dir: %w", err)
		}
		c.SocketDir = dir
	} else if err := os.Mkdir(c.SocketDir, 0o700); err != nil {
		return fmt.Errorf("cluster: socket dir: %w", err)
	}
	c.created = append(c.created, c.SocketDir)
	if err := c.owner.chown(c.SocketDir); err != nil {
		return fmt.Errorf("cluster: socket dir %s: %w", c.SocketDir, err)
	}
	return nil
}

func (c *Cluster) newServer(name string) *Server {
	s := &Server{
		Name:    name,
		Host:    "127.0.0.1",
		DataDir: filepath.Join(c.BaseDir, name),
		LogFile: filepath.Join(c.BaseDir, name+".log"),
	}
	c.mu.Lock()
	c.created = append(c.created, s.DataDir, s.LogFile)
	c.mu.Unlock()
	if c.tail != nil {
		c.tail.add(s.Name, s.LogFile)
	}
	return s
}

func (c *Cluster) tool(name string) string { return filepath.Join(c.BinDir, name) }

func (c *Cluster) initPrimary(ctx context.Context, opts Options) error {
	p := c.Primary
	if _, err := c.owner.run(ctx, c.BaseDir, c.tool("initdb"),
		"-D", p.DataDir, "-U", "postgres",
		"--auth-local=trust", "--auth-host=scram-sha-256",
		"--encoding=UTF8", "--locale=C",
		"--no-sync", "--no-instructions",
	); err != nil {
		return fmt.Errorf("cluster: primary: %w", err)
	}

	// Only the bootstrap superuser may skip passwords, and only on the socket;
	// over TCP everybody proves a SCRAM password, replication included,
	// but members of pgswitch_md5 (a group tests create), who may prove
	// an md5 one where their password is stored so.
	hba := strings.Join(append(append([]string{"# written by pgswitch internal/pgcluster"}, opts.HBA...),
		"local all         all                 trust",
		"local replication all                 trust",
		"host  all         +pgswitch_md5  127.0.0.1/32  md5",
		"host  all         +pgswitch_md5  ::1/128       md5",
		"host  all         all  127.0.0.1/32   scram-sha-256",
		"host  all         all  ::1/128        scram-sha-256",
		"host  replication all  127.0.0.1/32   scram-sha-256",
		"host  replication all  ::1/128        scram-sha-256",
		"",
	), "\n")
	if err := os.WriteFile(filepath.Join(p.DataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return fmt.Errorf("cluster: primary: pg_hba.conf: %w", err)
	}

	// Test data is disposable, so durability is traded for speed: no fsync.
	// Commits are synchronous all the same, as PostgreSQL's default (with
	// fsync off they cost a write, not a flush): read-your-writes waits for
	// replicas to replay a commit, which an asynchronous one delays by up to
	// wal_writer_delay.
	conf := []string{
		"",
		"# written by pgswitch internal/pgcluster",
		"listen_addresses = '127.0.0.1'",
		"unix_socket_directories = " + quoteLiteral(c.SocketDir),
		"password_encryption = 'scram-sha-256'",
		"wal_level = replica",
		"max_wal_senders = 10",
		"max_replication_slots = 10",
		"wal_keep_size = '256MB'",
		"hot_standby = on",
		"hot_standby_feedback = on",
		"max_connections = 200",
		"fsync = off",
		"full_page_writes = off",
		"shared_buffers = '32MB'",
		"logging_collector = off",
		"log_line_prefix = '%m [%p] %q%u@%d '",
		"wal_receiver_status_interval = '1s'",
	}
	if opts.TLS != nil {
		tlsConf, err := c.writeTLS(opts.TLS)
		if err != nil {
			return fmt.Errorf("cluster: primary: %w", err)
		}
		conf = append(conf, tlsConf...)
	}
	conf = append(conf, opts.ExtraConf...)
	if err := c.owner.appendFile(filepath.Join(p.DataDir, "postgresql.conf"), strings.Join(conf, "\n")+"\n"); err != nil {
		return fmt.Errorf("cluster: primary: postgresql.conf: %w", err)
	}
	return c.owner.chown(p.DataDir)
}

// bootstrap creates the SCRAM superuser, its database and the replication role
// over the trusted Unix socket.
func (c *Cluster) bootstrap(ctx context.Context) error {
	conn, err := c.adminConnect(ctx, c.Primary, "postgres")
	if err != nil {
		return fmt.Errorf("cluster: primary: bootstrap: %w", err)
	}
	defer conn.Close(context.Background())
	stmts := []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN SUPERUSER PASSWORD %s",
			pgx.Identifier{c.User}.Sanitize(), quoteLiteral(c.Password)),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s",
			pgx.Identifier{c.Database}.Sanitize(), pgx.Identifier{c.User}.Sanitize()),
		fmt.Sprintf("CREATE ROLE %s LOGIN REPLICATION PASSWORD %s",
			pgx.Identifier{c.replUser}.Sanitize(), quoteLiteral(c.replPassword)),
	}
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("cluster: primary: bootstrap: %s: %w", strings.SplitN(q, " PASSWORD", 2)[0], err)
		}
	}
	return nil
}

// quoteLiteral makes a SQL (and postgresql.conf) string literal; DDL such as
// CREATE ROLE … PASSWORD takes no bind parameters.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// writeTLS writes t's files into the primary's data directory, where
// pg_basebackup copies them for the replicas, and returns the
// postgresql.conf lines that use them (relative to each data directory).
func (c *Cluster) writeTLS(t *TLS) ([]string, error) {
	files := []struct {
		name, key string
		data      []byte
	}{{"server.crt", "ssl_cert_file", t.Cert}, {"server.key", "ssl_key_file", t.Key}, {"root.crt", "ssl_ca_file", t.CA}}
	conf := []string{"ssl = on"}
	for _, f := range files {
		if len(f.data) == 0 {
			continue
		}
		// PostgreSQL refuses a key that others may read.
		if err := os.WriteFile(filepath.Join(c.Primary.DataDir, f.name), f.data, 0o600); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		conf = append(conf, f.key+" = "+quoteLiteral(f.name))
	}
	return conf, nil
}

package pgcluster

import (
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
)

// Options shape a cluster; the zero value gives a primary and two replicas.
type Options struct {
	Replicas int    // default 2; 0 is taken as the default, use -1 for none
	BaseDir  string // default: os.MkdirTemp("", "pgswitch-cluster-")
	// User and Password name a SCRAM-SHA-256 login created on the primary
	// (default "pgswitch" and a random password). It is SUPERUSER so tests can do
	// anything, and it owns DatabaseName.
	User, Password string
	DatabaseName   string    // default "app", created on the primary
	Log            io.Writer // where server logs go besides the log files; may be nil
	ExtraConf      []string  // extra postgresql.conf lines, replicas inherit them
}

// Server is one PostgreSQL server of the cluster.
type Server struct {
	Name    string // "primary", "replica1", "replica2"
	Host    string // "127.0.0.1"
	Port    int
	DataDir string
	LogFile string

	// guarded by Cluster.mu
	running bool
	standby bool // follows the primary; false for the primary and after Promote
}

// DSN is a URL connection string for this server with sslmode=disable.
func (s *Server) DSN(user, password, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		Host:     net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

// Cluster is a running primary with its streaming replicas. Its methods may be
// called from parallel tests.
type Cluster struct {
	Primary  *Server
	Replicas []*Server
	// User, Password and Database are the SCRAM superuser and its database.
	User, Password, Database string
	BinDir                   string
	BaseDir                  string
	// SocketDir holds the servers' Unix sockets; the bootstrap superuser
	// "postgres" logs in there without a password.
	SocketDir string

	owner        owner
	replUser     string
	replPassword string
	removeBase   bool     // we created BaseDir, so Stop removes all of it
	created      []string // what Stop removes when BaseDir was given to us
	tail         *tailer

	mu      sync.Mutex
	stopped bool
}

// Servers lists the primary first, then the replicas.
func (c *Cluster) Servers() []*Server {
	return append([]*Server{c.Primary}, c.Replicas...)
}

// DSN is s.DSN with the cluster's own user, password and database.
func (c *Cluster) DSN(s *Server) string {
	return s.DSN(c.User, c.Password, c.Database)
}

// Running reports whether s was started and not stopped since.
func (c *Cluster) Running(s *Server) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return s.running
}

func (c *Cluster) setState(s *Server, running, standby bool) {
	c.mu.Lock()
	s.running, s.standby = running, standby
	c.mu.Unlock()
}

package config

import "time"

// Config is a whole, validated configuration. Load returns it with every
// default filled in, so callers never check for zero values.
type Config struct {
	// Listen is the client-facing address, default "127.0.0.1:6432".
	Listen string `yaml:"listen"`
	// PoolMode is the default for every user: session or transaction (default).
	PoolMode PoolMode `yaml:"pool_mode"`
	// AuthType is how clients authenticate unless their user says otherwise:
	// scram-sha-256 (default), md5 or trust.
	AuthType AuthType `yaml:"auth_type"`
	// TLS, when set, is offered to clients that send SSLRequest.
	TLS *TLS `yaml:"tls"`
	// ServerTLS says how pgswitch connects to servers: disable (default),
	// prefer, require, verify-ca, verify-full (libpq sslmode values).
	ServerTLSMode string `yaml:"server_tls_mode"`

	Pool     PoolSettings `yaml:"pool"`
	Timeouts Timeouts     `yaml:"timeouts"`
	Limits   Limits       `yaml:"limits"`
	Routing  Routing      `yaml:"routing"`
	Health   Health       `yaml:"health"`
	Admin    Admin        `yaml:"admin"`

	// MetricsListen is the optional HTTP address for /metrics, /healthz, /readyz.
	MetricsListen string `yaml:"metrics_listen"`

	// Databases are keyed by the name clients connect to.
	Databases map[string]*Database `yaml:"databases"`
	// Users are keyed by user name.
	Users map[string]*User `yaml:"users"`
}

// PoolMode says when a server connection goes back to its pool.
type PoolMode string

const (
	PoolModeSession     PoolMode = "session"
	PoolModeTransaction PoolMode = "transaction"
)

// AuthType is a client authentication method.
type AuthType string

const (
	AuthSCRAM AuthType = "scram-sha-256"
	AuthMD5   AuthType = "md5"
	AuthTrust AuthType = "trust"
)

// Route says where a database's traffic may go.
type Route string

const (
	RouteAuto    Route = "auto"
	RoutePrimary Route = "primary"
	RouteReplica Route = "replica"
)

// Role is a server's role: a hint in the configuration, the truth from health checks.
type Role string

const (
	RoleUnknown Role = ""
	RolePrimary Role = "primary"
	RoleReplica Role = "replica"
)

// TLS holds the certificate offered to clients.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// PoolSettings are defaults for every (database, user, server) pool.
type PoolSettings struct {
	// Size is the most server connections one pool holds (default 20).
	Size int `yaml:"size"`
	// MinIdle idle connections are kept open per pool (default 0).
	MinIdle int `yaml:"min_idle"`
	// MaxClientConn bounds client connections to pgswitch (default 10000).
	MaxClientConn int `yaml:"max_client_conn"`
	// MaxStartupConn bounds the connections still sending their startup
	// packet (default 1000): beyond it, new connections wait in the listen
	// backlog, so that half-open connections cannot take every file
	// descriptor. They count against max_client_conn once their startup
	// packet is in.
	MaxStartupConn int `yaml:"max_startup_conn"`
	// ResetQuery is sent when a session-mode client leaves (default "DISCARD ALL").
	ResetQuery string `yaml:"reset_query"`
	// MaxPreparedStatements kept per server connection (default 200).
	MaxPreparedStatements int `yaml:"max_prepared_statements"`
}

// Timeouts; zero means "no limit" only where documented.
type Timeouts struct {
	ClientLogin    time.Duration `yaml:"client_login"`    // default 15s
	QueryWait      time.Duration `yaml:"query_wait"`      // default 30s; wait for a server connection
	ServerConnect  time.Duration `yaml:"server_connect"`  // default 5s
	ServerIdle     time.Duration `yaml:"server_idle"`     // default 10m; idle server conns closed after
	ServerLifetime time.Duration `yaml:"server_lifetime"` // default 1h
	ClientIdle     time.Duration `yaml:"client_idle"`     // default 0 (none); outside a transaction
	// IdleTransaction disconnects a client idle inside a transaction.
	IdleTransaction time.Duration `yaml:"idle_transaction"` // default 0 (none)
	PrimaryWait     time.Duration `yaml:"primary_wait"`     // default 30s; writes wait this long for a primary
	Shutdown        time.Duration `yaml:"shutdown"`         // default 30s
	Pause           time.Duration `yaml:"pause"`            // default 60s; PAUSE gives up after
	// UpgradeDrain is how long a process that handed its listeners to a
	// new binary (SIGUSR2, UPGRADE) keeps serving its clients before it
	// shuts down as on SIGTERM. Default 10m; 0: until the last one leaves.
	UpgradeDrain time.Duration `yaml:"upgrade_drain"`
}

// Limits on what clients may send.
type Limits struct {
	// MaxMessageSize bounds one protocol message from a client (default 64 MiB).
	MaxMessageSize int `yaml:"max_message_size"`
	// MaxClientStatements bounds the prepared statements (protocol and
	// SQL) pgswitch keeps for one client (default 10000), and
	// MaxClientStatementBytes the bytes they hold (default 16 MiB).
	MaxClientStatements     int `yaml:"max_client_statements"`
	MaxClientStatementBytes int `yaml:"max_client_statement_bytes"`
	// MaxConcurrentAuth bounds how many client logins compute their
	// authentication (SCRAM or md5 checks) at once; more wait their turn,
	// which comes within microseconds. Waiting for a client's answer holds
	// no turn. Default: half of GOMAXPROCS, at least 1, so that a login
	// flood leaves the other CPUs to the clients already in.
	MaxConcurrentAuth int `yaml:"max_concurrent_auth"`
}

// Routing settings for the read/write split.
type Routing struct {
	// LoadBalance: round_robin (default), least_connections, random.
	LoadBalance string `yaml:"load_balance"`
	// MaxReplicaLagBytes excludes replicas behind the primary by more (0: no limit).
	MaxReplicaLagBytes int64 `yaml:"max_replica_lag_bytes"`
	// MaxReplicaLag excludes replicas whose replay is older than this (0: no limit).
	MaxReplicaLag time.Duration `yaml:"max_replica_lag"`
	// WriteFunctions are extra function names that make a query a write.
	WriteFunctions []string `yaml:"write_functions"`
	// CacheSize bounds the classification cache (entries, default 10000).
	CacheSize int `yaml:"cache_size"`
	// VolatileRefresh is how often volatile functions are reloaded (default 60s).
	VolatileRefresh time.Duration `yaml:"volatile_refresh"`
	// Consistency is what reads see of writes made through pgswitch:
	// causal (default: every write that completed before the read began, by
	// any client of the database), session (the client's own), eventual.
	Consistency Consistency `yaml:"consistency"`
	// CausalWait is how long a read waits for a replica to replay what it
	// must see before it goes to the primary instead (default 20ms).
	CausalWait time.Duration `yaml:"causal_wait"`
	// Rules route or refuse the units of work they match, before the
	// database's route and the classification (rules.go).
	Rules []*Rule `yaml:"rules"`
}

// Consistency is routing.consistency.
type Consistency string

const (
	ConsistencyCausal   Consistency = "causal"
	ConsistencySession  Consistency = "session"
	ConsistencyEventual Consistency = "eventual"
)

// Health check settings, HAProxy style; every server may override them.
type Health struct {
	Inter     time.Duration `yaml:"inter"`     // default 1s
	DownInter time.Duration `yaml:"downinter"` // default = inter
	Fall      int           `yaml:"fall"`      // default 3
	Rise      int           `yaml:"rise"`      // default 2
	Timeout   time.Duration `yaml:"timeout"`   // default 2s; connect + query
	// User and Password used by health checks; default: the first configured
	// user. Load stores Password SASLprep-prepared, as ServerPasswordValue.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

// Admin console settings.
type Admin struct {
	// Users who may run every admin command.
	Users []string `yaml:"admin_users"`
	// StatsUsers may only run SHOW commands.
	StatsUsers []string `yaml:"stats_users"`
}

// Database is one name clients connect to.
type Database struct {
	// Name is the map key (filled by Load).
	Name string `yaml:"-"`
	// DBName is the database name on the servers (default: the key).
	DBName string `yaml:"dbname"`
	// Route: auto (default), primary or replica.
	Route Route `yaml:"route"`
	// PoolMode overrides the global and user pool mode when set.
	PoolMode PoolMode `yaml:"pool_mode"`
	// PoolSize overrides pool.size for this database when > 0.
	PoolSize int `yaml:"pool_size"`
	// Servers in configuration order; at least one.
	Servers []*Server `yaml:"servers"`
}

// Server is one PostgreSQL server of a database.
type Server struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"` // default 5432
	// Name and Group are what routing.rules send reads to (optional).
	Name  string `yaml:"name"`
	Group string `yaml:"group"`
	// Role is a hint until the first health check.
	Role Role `yaml:"role"`
	// MaxConn bounds connections to this server across all pools (0: no limit).
	MaxConn int `yaml:"maxconn"`
	// Backup servers take traffic only when no non-backup server of their role is fit.
	Backup bool `yaml:"backup"`
	// Weight for load balancing among replicas (default 1).
	Weight int `yaml:"weight"`
	// Per-server health overrides; zero values mean "use health defaults".
	Inter     time.Duration `yaml:"inter"`
	DownInter time.Duration `yaml:"downinter"`
	Fall      int           `yaml:"fall"`
	Rise      int           `yaml:"rise"`

	addr string // host:port, cached by Load
}

// NewServer returns a server at host:port, for code that builds
// configurations itself (Load fills in the same).
func NewServer(host string, port int) *Server {
	return &Server{Host: host, Port: port, Weight: 1, addr: joinHostPort(host, port)}
}

// Addr returns host:port.
func (s *Server) Addr() string {
	if s.addr != "" {
		return s.addr // set by Load: routing asks for it on every unit
	}
	return joinHostPort(s.Host, s.Port)
}

// User is one user clients log in as; the same credentials are used for servers.
type User struct {
	// Name is the map key (filled by Load).
	Name string `yaml:"-"`
	// Password is plain text, a ${ENV} reference, or a verifier
	// ("SCRAM-SHA-256$…" or "md5…"). A verifier authenticates clients only.
	Password string `yaml:"password"`
	// ServerPassword is used to log in to servers when Password is a verifier.
	ServerPassword string `yaml:"server_password"`
	// Auth overrides auth_type for this user (trust only when said here or globally).
	Auth AuthType `yaml:"auth"`
	// PoolMode overrides the global pool mode when set.
	PoolMode PoolMode `yaml:"pool_mode"`
	// PoolSize overrides pool.size for this user when > 0.
	PoolSize int `yaml:"pool_size"`
}

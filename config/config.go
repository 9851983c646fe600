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
	// scram-sha-256 (default), md5, password (cleartext; PgBouncer's
	// "plain" is read as it) or trust.
	AuthType AuthType `yaml:"auth_type"`
	// AllowCleartextWithoutTLS lets the password method ask for a cleartext
	// password on a connection without TLS; by default such clients are
	// refused before they send it.
	AllowCleartextWithoutTLS bool `yaml:"allow_cleartext_without_tls"`
	// AuthUser, when set, names the configured user pgswitch logs in to a
	// server as to look up, with AuthQuery, the password verifier of a
	// user the configuration does not list (PgBouncer's auth_user).
	AuthUser string `yaml:"auth_user"`
	// AuthQuery returns (name, password verifier) for the user given as $1
	// (default: PgBouncer's classic "SELECT usename, passwd FROM pg_shadow
	// WHERE usename=$1").
	AuthQuery string `yaml:"auth_query"`
	// AuthDBName names the database (a key of Databases) whose servers run
	// AuthQuery, in its dbname; default: the one the client asked for.
	AuthDBName string `yaml:"auth_dbname"`
	// AuthCacheTime is how long a verifier AuthQuery returned is used
	// before it is looked up again (default 60s).
	AuthCacheTime time.Duration `yaml:"auth_cache_time"`
	// TLS, when set, is offered to clients that send SSLRequest over TCP.
	TLS *TLS `yaml:"tls"`
	// ClientTLSMode is what pgswitch asks of TCP clients, PgBouncer's
	// client_tls_sslmode: disable, allow, prefer (the default with tls set),
	// require, verify-ca, verify-full. Unix socket clients never use TLS.
	ClientTLSMode string `yaml:"client_tls_mode"`
	// ServerTLSMode says how pgswitch connects to servers: disable (default),
	// allow, prefer, require, verify-ca, verify-full (libpq sslmode values).
	ServerTLSMode string `yaml:"server_tls_mode"`
	// ServerTLS holds the files and the name server certificates are
	// checked with, and the certificate pgswitch shows servers.
	ServerTLS ServerTLS `yaml:"server_tls"`

	// UnixSocketDir, when set, is where pgswitch also listens on a Unix
	// socket named .s.PGSQL.<port of listen>, as PgBouncer's unix_socket_dir.
	UnixSocketDir string `yaml:"unix_socket_dir"`
	// UnixSocketMode is the socket file's mode, in octal (default "0777").
	UnixSocketMode string `yaml:"unix_socket_mode"`
	// UnixSocketOwner and UnixSocketGroup, when set, own the socket file:
	// a name or a numeric ID.
	UnixSocketOwner string `yaml:"unix_socket_owner"`
	UnixSocketGroup string `yaml:"unix_socket_group"`
	// PeerMap lets OS users log in with peer authentication as roles other
	// than their own name: OS user name → the roles it may use.
	PeerMap map[string][]string `yaml:"peer_map"`
	// Workers is how many threads run pgswitch's code at once (GOMAXPROCS;
	// PgDog's and Odyssey's workers). 0, the default: adapted to the load
	// between one and the CPUs pgswitch may use (internal/threads), or
	// fixed by the GOMAXPROCS environment variable.
	Workers int `yaml:"workers"`

	Pool     PoolSettings `yaml:"pool"`
	Timeouts Timeouts     `yaml:"timeouts"`
	Limits   Limits       `yaml:"limits"`
	Routing  Routing      `yaml:"routing"`
	Health   Health       `yaml:"health"`
	Admin    Admin        `yaml:"admin"`

	// MetricsListen is the optional HTTP address for /metrics, /healthz, /readyz.
	MetricsListen string `yaml:"metrics_listen"`

	// PeerID names this instance among pgswitch instances run as one
	// (1..16383, PgBouncer's peer_id): the cancel keys it gives out carry
	// it. 0 (default): no peering. It may be "${NAME}", an environment
	// variable holding the number, so that instances can share one file.
	PeerID int `yaml:"peer_id" env:"whole"`
	// Peers are the other instances' addresses by peer id (host:port, or
	// the path of a unix socket): a CancelRequest whose key carries
	// another instance's id is forwarded there (PgBouncer's [peers]).
	// This instance's own id may be listed; it is not forwarded to.
	Peers map[int]string `yaml:"peers"`

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
	// AuthCert takes the user from the client's verified TLS certificate:
	// its common name must be the user name, as PostgreSQL's cert method.
	AuthCert AuthType = "cert"
	// AuthPeer takes the user from the OS account at the other end of the
	// Unix socket (SO_PEERCRED), as PostgreSQL's peer method.
	AuthPeer AuthType = "peer"
	// AuthPassword asks for the password in cleartext (PostgreSQL's
	// "password" method, PgBouncer's "plain").
	AuthPassword AuthType = "password"
)

// DefaultAuthQuery is auth_query's default.
const DefaultAuthQuery = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1"

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
	// CAFile holds the certificates that sign client certificates
	// (PostgreSQL's ssl_ca_file). With it, clients are asked for a
	// certificate, which must verify if given.
	CAFile string `yaml:"ca_file"`
}

// ServerTLS holds what server connections are verified and identified with,
// as libpq's sslrootcert, sslcert and sslkey; ServerName replaces the
// server's host as the name verify-full checks and TLS SNI sends.
type ServerTLS struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
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
	// ServerPassword is used to log in to servers when Password is a
	// verifier. Without it, such a user logs in to servers with what its
	// clients prove (pass-through: the SCRAM ClientKey, or the md5 hash).
	ServerPassword string `yaml:"server_password"`
	// Auth overrides auth_type for this user (trust only when said here or globally).
	Auth AuthType `yaml:"auth"`
	// PoolMode overrides the global pool mode when set.
	PoolMode PoolMode `yaml:"pool_mode"`
	// PoolSize overrides pool.size for this user when > 0.
	PoolSize int `yaml:"pool_size"`
}

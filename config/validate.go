package config

import (
	"fmt"
	"maps"
	"net"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgswitch/pgswitch/wire/saslprep"
)

// setDefaults fills in what the file leaves out; r says which keys it
// sets, for defaults that 0 does not stand for.
func (c *Config) setDefaults(r *report) {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Listen, "127.0.0.1:6432")
	if c.PoolMode == "" {
		c.PoolMode = PoolModeTransaction
	}
	if c.AuthType == "" {
		c.AuthType = AuthSCRAM
	}
	def(&c.ServerTLSMode, "disable")
	defInt(&c.Pool.Size, 20)
	defInt(&c.Pool.MaxClientConn, 10000)
	defInt(&c.Pool.MaxStartupConn, 1000)
	def(&c.Pool.ResetQuery, "DISCARD ALL")
	defInt(&c.Pool.MaxPreparedStatements, 200)
	t := &c.Timeouts
	defDur(&t.ClientLogin, 15*time.Second)
	defDur(&t.QueryWait, 30*time.Second)
	defDur(&t.ServerConnect, 5*time.Second)
	defDur(&t.ServerIdle, 10*time.Minute)
	defDur(&t.ServerLifetime, time.Hour)
	defDur(&t.PrimaryWait, 30*time.Second)
	defDur(&t.Shutdown, 30*time.Second)
	defDur(&t.Pause, 60*time.Second)
	if !r.set("timeouts.upgrade_drain") { // 0 means no limit
		t.UpgradeDrain = 10 * time.Minute
	}
	defInt(&c.Limits.MaxMessageSize, 64<<20)
	defInt(&c.Limits.MaxClientStatements, 10000)
	defInt(&c.Limits.MaxClientStatementBytes, 16<<20)
	defInt(&c.Limits.MaxConcurrentAuth, max(1, runtime.GOMAXPROCS(0)/2))
	def(&c.Routing.LoadBalance, "round_robin")
	defInt(&c.Routing.CacheSize, 10000)
	defDur(&c.Routing.VolatileRefresh, time.Minute)
	if c.Routing.Consistency == "" {
		c.Routing.Consistency = ConsistencyCausal
	}
	defDur(&c.Routing.CausalWait, 20*time.Millisecond)
	h := &c.Health
	defDur(&h.Inter, time.Second)
	// As HAProxy: without a downinter of its own, a server checks at its own
	// inter while down, unless health.downinter says otherwise.
	globalDownInter := h.DownInter != 0
	defDur(&h.DownInter, h.Inter)
	defInt(&h.Fall, 3)
	defInt(&h.Rise, 2)
	defDur(&h.Timeout, 2*time.Second)
	if h.User == "" && len(c.Users) > 0 {
		h.User = slices.Sorted(maps.Keys(c.Users))[0]
	}
	if h.Password == "" && c.Users[h.User] != nil {
		h.Password = c.Users[h.User].ServerPasswordValue()
	} else {
		h.Password = serverPassword(h.Password)
	}
	for name, db := range c.Databases {
		if db == nil {
			continue
		}
		db.Name = name
		def(&db.DBName, name)
		if db.Route == "" {
			db.Route = RouteAuto
		}
		for _, s := range db.Servers {
			if s == nil {
				continue
			}
			defInt(&s.Port, 5432)
			s.addr = joinHostPort(s.Host, s.Port)
			defInt(&s.Weight, 1)
			defDur(&s.Inter, h.Inter)
			if globalDownInter || s.Inter <= 0 {
				defDur(&s.DownInter, h.DownInter)
			} else {
				defDur(&s.DownInter, s.Inter)
			}
			defInt(&s.Fall, h.Fall)
			defInt(&s.Rise, h.Rise)
		}
	}
	for name, u := range c.Users {
		if u != nil {
			u.Name = name
		}
	}
}

// reservedDatabases are served by pgswitch's admin console.
var reservedDatabases = []string{"pgswitch", "pgbouncer"}

// validate reports what is wrong with the decoded, completed configuration.
// A value one key takes over from another (a server's fall from
// health.fall, health.downinter from health.inter) is checked where it is
// written, once.
func (c *Config) validate(r *report) {
	bad := r.bad
	addr := func(key, v string) {
		if v == "" {
			return
		}
		if _, port, err := net.SplitHostPort(v); err != nil {
			bad(key, "must be host:port, got %q", v)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad(key, "invalid port in %q", v)
		}
	}
	oneOf := func(key, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			bad(key, "must be one of %s, got %q", strings.Join(quoteAll(allowed), ", "), v)
		}
	}
	nonNeg := func(key string, v int) {
		if v < 0 {
			bad(key, "must not be negative, got %d", v)
		}
	}
	nonNegDur := func(key string, v time.Duration) {
		if v < 0 {
			bad(key, "must not be negative, got %s", v)
		}
	}

	addr("listen", c.Listen)
	addr("metrics_listen", c.MetricsListen)
	oneOf("pool_mode", string(c.PoolMode), "session", "transaction")
	oneOf("auth_type", string(c.AuthType), "scram-sha-256", "md5", "trust")
	oneOf("server_tls_mode", c.ServerTLSMode, "disable", "allow", "prefer", "require", "verify-ca", "verify-full")
	if c.TLS != nil {
		if c.TLS.CertFile == "" {
			bad("tls.cert_file", "is required when tls is set")
		} else if _, err := os.Stat(c.TLS.CertFile); err != nil {
			bad("tls.cert_file", "%v", err)
		}
		if c.TLS.KeyFile == "" {
			bad("tls.key_file", "is required when tls is set")
		} else if _, err := os.Stat(c.TLS.KeyFile); err != nil {
			bad("tls.key_file", "%v", err)
		}
	}
	if c.Pool.Size < 1 {
		bad("pool.size", "must be at least 1, got %d", c.Pool.Size)
	}
	nonNeg("pool.min_idle", c.Pool.MinIdle)
	if c.Pool.Size >= 1 && r.ok("pool.size") && c.Pool.MinIdle > c.Pool.Size {
		bad("pool.min_idle", "must not exceed pool.size (%d), got %d", c.Pool.Size, c.Pool.MinIdle)
	}
	nonNeg("pool.max_client_conn", c.Pool.MaxClientConn)
	nonNeg("pool.max_startup_conn", c.Pool.MaxStartupConn)
	nonNeg("pool.max_prepared_statements", c.Pool.MaxPreparedStatements)
	nonNeg("limits.max_client_statements", c.Limits.MaxClientStatements)
	nonNeg("limits.max_client_statement_bytes", c.Limits.MaxClientStatementBytes)
	for key, d := range map[string]time.Duration{
		"timeouts.client_login": c.Timeouts.ClientLogin, "timeouts.query_wait": c.Timeouts.QueryWait,
		"timeouts.server_connect": c.Timeouts.ServerConnect, "timeouts.server_idle": c.Timeouts.ServerIdle,
		"timeouts.server_lifetime": c.Timeouts.ServerLifetime, "timeouts.client_idle": c.Timeouts.ClientIdle,
		"timeouts.idle_transaction": c.Timeouts.IdleTransaction,
		"timeouts.primary_wait":     c.Timeouts.PrimaryWait, "timeouts.shutdown": c.Timeouts.Shutdown,
		"timeouts.pause": c.Timeouts.Pause, "timeouts.upgrade_drain": c.Timeouts.UpgradeDrain, "routing.max_replica_lag": c.Routing.MaxReplicaLag,
		"routing.volatile_refresh": c.Routing.VolatileRefresh, "routing.causal_wait": c.Routing.CausalWait,
		"health.inter": c.Health.Inter, "health.timeout": c.Health.Timeout,
	} {
		nonNegDur(key, d)
	}
	if r.set("health.downinter") {
		nonNegDur("health.downinter", c.Health.DownInter)
	}
	if c.Limits.MaxMessageSize < 1024 {
		bad("limits.max_message_size", "must be at least 1024 bytes, got %d", c.Limits.MaxMessageSize)
	}
	if c.Limits.MaxConcurrentAuth < 1 {
		bad("limits.max_concurrent_auth", "must be at least 1, got %d", c.Limits.MaxConcurrentAuth)
	}
	oneOf("routing.load_balance", c.Routing.LoadBalance, "round_robin", "least_connections", "random")
	oneOf("routing.consistency", string(c.Routing.Consistency), string(ConsistencyCausal), string(ConsistencySession), string(ConsistencyEventual))
	if c.Routing.MaxReplicaLagBytes < 0 {
		bad("routing.max_replica_lag_bytes", "must not be negative, got %d", c.Routing.MaxReplicaLagBytes)
	}
	nonNeg("routing.cache_size", c.Routing.CacheSize)
	c.validateRules(bad)
	if _, known := c.Users[c.Health.User]; c.Health.User != "" && !known && c.Health.Password == "" {
		bad("health.user", "%q is not a configured user: give health.password too", c.Health.User)
	}
	if c.Health.Fall < 1 {
		bad("health.fall", "must be at least 1, got %d", c.Health.Fall)
	}
	if c.Health.Rise < 1 {
		bad("health.rise", "must be at least 1, got %d", c.Health.Rise)
	}

	if len(c.Databases) == 0 {
		bad("databases", "at least one database is required")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Databases)) {
		db := c.Databases[name]
		key := "databases." + name
		if db == nil {
			bad(key, "is empty")
			continue
		}
		if slices.Contains(reservedDatabases, name) {
			bad(key, "the name %q is reserved for the admin console", name)
		}
		oneOf(key+".route", string(db.Route), "auto", "primary", "replica")
		if db.PoolMode != "" {
			oneOf(key+".pool_mode", string(db.PoolMode), "session", "transaction")
		}
		nonNeg(key+".pool_size", db.PoolSize)
		if len(db.Servers) == 0 {
			bad(key+".servers", "at least one server is required")
		}
		for i, s := range db.Servers {
			sk := fmt.Sprintf("%s.servers[%d]", key, i)
			if s == nil {
				bad(sk, "is empty")
				continue
			}
			if s.Host == "" {
				bad(sk+".host", "is required")
			}
			if s.Port < 1 || s.Port > 65535 {
				bad(sk+".port", "must be between 1 and 65535, got %d", s.Port)
			}
			if s.Role != RoleUnknown {
				oneOf(sk+".role", string(s.Role), "primary", "replica")
			}
			nonNeg(sk+".maxconn", s.MaxConn)
			if s.Weight < 1 {
				bad(sk+".weight", "must be at least 1, got %d", s.Weight)
			}
			// Unset, they are health's, checked there.
			if s.Fall < 1 && r.set(sk+".fall") {
				bad(sk+".fall", "must be at least 1, got %d", s.Fall)
			}
			if s.Rise < 1 && r.set(sk+".rise") {
				bad(sk+".rise", "must be at least 1, got %d", s.Rise)
			}
			if r.set(sk + ".inter") {
				nonNegDur(sk+".inter", s.Inter)
			}
			if r.set(sk + ".downinter") {
				nonNegDur(sk+".downinter", s.DownInter)
			}
		}
	}

	if len(c.Users) == 0 {
		bad("users", "at least one user is required")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Users)) {
		u := c.Users[name]
		key := "users." + name
		if u == nil {
			bad(key, "is empty")
			continue
		}
		if u.Auth != "" {
			oneOf(key+".auth", string(u.Auth), "scram-sha-256", "md5", "trust")
		}
		if u.PoolMode != "" {
			oneOf(key+".pool_mode", string(u.PoolMode), "session", "transaction")
		}
		nonNeg(key+".pool_size", u.PoolSize)
		auth := c.AuthFor(u)
		if auth != AuthTrust && u.Password == "" {
			bad(key+".password", "is required unless auth is trust")
		}
		if u.PasswordKind() != PasswordPlain && u.ServerPassword == "" {
			bad(key+".server_password", "is required when password is a verifier: servers need the clear password")
		}
	}
	for _, a := range c.Admin.Users {
		if c.Users[a] == nil {
			bad("admin.admin_users", "%q is not a configured user", a)
		}
	}
	for _, a := range c.Admin.StatsUsers {
		if c.Users[a] == nil {
			bad("admin.stats_users", "%q is not a configured user", a)
		}
	}
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strconv.Quote(v)
	}
	return out
}

// PasswordKind says what a configured password is.
type PasswordKind uint8

const (
	PasswordPlain PasswordKind = iota
	PasswordSCRAM
	PasswordMD5
)

var md5Verifier = regexp.MustCompile(`^md5[0-9a-f]{32}$`)

// PasswordKind tells a plain password from a SCRAM or md5 verifier.
func (u *User) PasswordKind() PasswordKind {
	switch {
	case strings.HasPrefix(u.Password, "SCRAM-SHA-256$"):
		return PasswordSCRAM
	case md5Verifier.MatchString(u.Password):
		return PasswordMD5
	}
	return PasswordPlain
}

// ServerPasswordValue is the password pgswitch logs in to servers with,
// SASLprep-prepared as libpq prepares it for SCRAM (see serverPassword).
func (u *User) ServerPasswordValue() string {
	if u.ServerPassword != "" {
		return serverPassword(u.ServerPassword)
	}
	return serverPassword(u.Password)
}

// serverPassword returns the form of password p that pgswitch hands to
// pgconn for a server login. A PostgreSQL server derives SCRAM keys from
// the password's SASLprep form (U+2168 "Ⅸ" is "IX"), and pgconn prepares
// it with PRECIS OpaqueString instead, which keeps such characters; given
// the SASLprep form, which OpaqueString leaves alone, pgconn proves what
// the server expects. The cost: an md5 or cleartext login to a role whose
// password is stored as an md5 hash gets the prepared form too, which
// differs from the one hashed only for passwords that SASLprep changes.
func serverPassword(p string) string { return saslprep.Password(p) }

// PoolModeFor is the pool mode of db for u: the database's setting wins
// over the user's, which wins over the global one.
func (c *Config) PoolModeFor(db *Database, u *User) PoolMode {
	if db != nil && db.PoolMode != "" {
		return db.PoolMode
	}
	if u != nil && u.PoolMode != "" {
		return u.PoolMode
	}
	return c.PoolMode
}

// PoolSizeFor is the pool size of db for u: the user's setting wins over the
// database's, which wins over pool.size.
func (c *Config) PoolSizeFor(db *Database, u *User) int {
	if u != nil && u.PoolSize > 0 {
		return u.PoolSize
	}
	if db != nil && db.PoolSize > 0 {
		return db.PoolSize
	}
	return c.Pool.Size
}

// AuthFor is how u authenticates.
func (c *Config) AuthFor(u *User) AuthType {
	if u != nil && u.Auth != "" {
		return u.Auth
	}
	return c.AuthType
}

// Redacted returns a deep copy with every secret replaced, for display.
func (c *Config) Redacted() *Config {
	out := *c
	if c.TLS != nil {
		t := *c.TLS
		out.TLS = &t
	}
	out.Routing.WriteFunctions = slices.Clone(c.Routing.WriteFunctions)
	out.Admin.Users = slices.Clone(c.Admin.Users)
	out.Admin.StatsUsers = slices.Clone(c.Admin.StatsUsers)
	if out.Health.Password != "" {
		out.Health.Password = redacted
	}
	out.Databases = make(map[string]*Database, len(c.Databases))
	for k, db := range c.Databases {
		d := *db
		d.Servers = make([]*Server, len(db.Servers))
		for i, s := range db.Servers {
			sc := *s
			d.Servers[i] = &sc
		}
		out.Databases[k] = &d
	}
	out.Users = make(map[string]*User, len(c.Users))
	for k, u := range c.Users {
		uc := *u
		if uc.Password != "" {
			uc.Password = redacted
		}
		if uc.ServerPassword != "" {
			uc.ServerPassword = redacted
		}
		out.Users[k] = &uc
	}
	return &out
}

const redacted = "********"

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

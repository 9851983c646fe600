package config

import (
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgswitch/pgswitch/internal/threads"
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
	c.AuthType = c.AuthType.normal()
	def(&c.AuthQuery, DefaultAuthQuery)
	defDur(&c.AuthCacheTime, time.Minute)
	def(&c.ServerTLSMode, "disable")
	if c.TLS != nil {
		def(&c.ClientTLSMode, "prefer")
	} else {
		def(&c.ClientTLSMode, "disable")
	}
	def(&c.UnixSocketMode, "0777")
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
	n := threads.StartProcs // not GOMAXPROCS now: workers 0 may run fewer while the load is light
	if c.Workers > 0 {
		n = c.Workers
	}
	defInt(&c.Limits.MaxConcurrentAuth, max(1, n/2))
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
	if h.User == "" {
		// The first user by name that does not log in by pass-through.
		for _, name := range slices.Sorted(maps.Keys(c.Users)) {
			if u := c.Users[name]; u != nil && !u.PassThrough() {
				h.User = name
				break
			}
		}
	}
	if h.Password == "" && c.Users[h.User] != nil && !c.Users[h.User].PassThrough() {
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
			u.Auth = u.Auth.normal()
		}
	}
}

// normal reads PgBouncer's name for the cleartext method as PostgreSQL's.
func (a AuthType) normal() AuthType {
	if a == "plain" {
		return AuthPassword
	}
	return a
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
	c.validatePeers(r)
	oneOf("pool_mode", string(c.PoolMode), "session", "transaction")
	oneOf("auth_type", string(c.AuthType), authTypes...)
	c.validateTLS(bad, oneOf)
	c.validateUnixSocket(bad)
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
	if c.Workers < 0 {
		bad("workers", "must be 0 (the CPUs) or more, got %d", c.Workers)
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
	} else if known && c.Health.Password == "" && c.Users[c.Health.User].PassThrough() {
		bad("health.password", "is required: user %q has only a verifier, no password to log in with", c.Health.User)
	} else if c.Health.User == "" && slices.ContainsFunc(slices.Collect(maps.Values(c.Users)), func(u *User) bool { return u != nil }) {
		bad("health.user", "is required: no configured user has a password to log in with (only verifiers)")
	}
	c.validateAuthQuery(r)
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
			oneOf(key+".auth", string(u.Auth), authTypes...)
		}
		if u.PoolMode != "" {
			oneOf(key+".pool_mode", string(u.PoolMode), "session", "transaction")
		}
		nonNeg(key+".pool_size", u.PoolSize)
		auth := c.AuthFor(u)
		if !auth.Passwordless() && u.Password == "" {
			bad(key+".password", "is required unless auth is trust, cert or peer")
		}
	}
	c.validateAuthNeeds(bad)
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

// MaxPeerID is the largest peer_id: the 14 bits a cancel key has for it
// (wire.MaxPeerID, which router checks is the same).
const MaxPeerID = 1<<14 - 1

// validatePeers checks peer_id and peers.
func (c *Config) validatePeers(r *report) {
	if c.PeerID < 0 || c.PeerID > MaxPeerID {
		r.bad("peer_id", "must be within 0..%d, got %d", MaxPeerID, c.PeerID)
	}
	if len(c.Peers) > 0 && c.PeerID == 0 && r.ok("peer_id") {
		r.bad("peers", "needs peer_id: without it cancel keys name no instance, so none is forwarded")
	}
	for _, id := range slices.Sorted(maps.Keys(c.Peers)) {
		key := "peers." + strconv.Itoa(id)
		if id < 1 || id > MaxPeerID {
			r.bad(key, "a peer id must be within 1..%d, got %d", MaxPeerID, id)
		}
		a := c.Peers[id]
		if strings.HasPrefix(a, "/") {
			continue // a unix socket
		}
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" {
			r.bad(key, "must be host:port or the path of a unix socket, got %q", a)
		} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			r.bad(key, "invalid port in %q", a)
		}
	}
}

// validateAuthQuery checks auth_user, auth_query, auth_dbname and
// auth_cache_time.
func (c *Config) validateAuthQuery(r *report) {
	bad := r.bad
	if c.AuthCacheTime < 0 {
		bad("auth_cache_time", "must not be negative, got %s", c.AuthCacheTime)
	}
	if c.AuthUser == "" {
		if r.set("auth_dbname") {
			bad("auth_dbname", "is used only with auth_user")
		}
		return
	}
	if u := c.Users[c.AuthUser]; u == nil {
		bad("auth_user", "%q is not a configured user", c.AuthUser)
	} else if u.PassThrough() {
		bad("auth_user", "user %q has only a verifier: give it server_password, which auth_query logs in with", c.AuthUser)
	}
	if strings.TrimSpace(c.AuthQuery) == "" {
		bad("auth_query", "must not be empty")
	}
	if c.AuthDBName != "" && c.Databases[c.AuthDBName] == nil {
		bad("auth_dbname", "%q is not a configured database", c.AuthDBName)
	}
}

// PassThrough reports whether u has only a verifier, no password to log in
// to servers with (no server_password): its server logins pass through
// what its clients prove.
func (u *User) PassThrough() bool {
	return u.ServerPassword == "" && u.Password != "" && u.PasswordKind() != PasswordPlain
}

// Redacted returns a deep copy with every secret replaced, for display.
func (c *Config) Redacted() *Config {
	out := *c
	if c.TLS != nil {
		t := *c.TLS
		out.TLS = &t
	}
	out.PeerMap = maps.Clone(c.PeerMap)
	out.Routing.WriteFunctions = slices.Clone(c.Routing.WriteFunctions)
	out.Peers = maps.Clone(c.Peers)
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

package router

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/wire"
)

// AdminHandler serves the admin console: the virtual databases "pgswitch"
// and "pgbouncer". The router authenticates the client, checks that it is an
// admin or stats user and sends the login messages; the handler then owns
// the connection until ServeAdmin returns.
type AdminHandler interface {
	ServeAdmin(c *AdminClient)
}

// AdminClient is one logged-in client of the admin console.
type AdminClient struct {
	Conn     net.Conn
	User     string
	Database string // the name it connected to: "pgswitch" or "pgbouncer"
	// Admin users may run every command; the others (stats_users) only SHOW.
	Admin bool
	// Ctx ends when the router closes; the handler then returns.
	Ctx context.Context
	// LetGo is closed when a process that handed its listeners to a new
	// one (a binary upgrade) has no other client left: the router then
	// ends the client's next read, and the handler tells it ErrRetired.
	LetGo <-chan struct{}
}

// ErrRetired ends the admin console connections of a process that handed
// its listeners over, once its other clients have left: connecting again
// reaches the process that serves now.
var ErrRetired = wire.Fatalf(wire.CodeAdminShutdown, "this pgswitch process has handed its listeners to a new one and is exiting").
	WithHint("Connect again to reach the process that serves now.")

// adminDatabases are the names the admin console answers to
// (config.validate reserves them).
var adminDatabases = []string{"pgswitch", "pgbouncer"}

// IsAdminDatabase reports whether clients connecting to name reach the admin console.
func IsAdminDatabase(name string) bool { return slices.Contains(adminDatabases, name) }

// adminReserve is how many clients of the admin console may connect beyond
// pool.max_client_conn, so that an operator can still look and act when
// pgswitch is full. PgBouncer keeps none; PostgreSQL keeps
// superuser_reserved_connections (3) for the same reason.
const adminReserve = 3

// consoleUser reports whether a client asks for the admin console as one
// of its users (admin.admin_users or admin.stats_users), who may take a
// place of adminReserve; its password is checked after.
func (r *Router) consoleUser(cfg *config.Config, startup *wire.Startup) bool {
	if !IsAdminDatabase(startup.Params["database"]) {
		return false
	}
	r.admin.mu.Lock()
	h := r.admin.handler
	r.admin.mu.Unlock()
	user := startup.Params["user"]
	return h != nil && (slices.Contains(cfg.Admin.Users, user) || slices.Contains(cfg.Admin.StatsUsers, user))
}

// adminState is what the admin console changes in the router.
type adminState struct {
	mu       sync.Mutex
	handler  AdminHandler
	disabled map[string]bool        // DISABLE: new clients of these databases are refused
	counters map[string]*dbCounters // by database name (stats.go)
	started  time.Time

	// The console's connections, and whether they are let go (retire.go).
	conns map[net.Conn]struct{}
	letGo chan struct{} // closed by letConsoleGo
	gone  bool          // letGo is closed
}

// SetAdmin installs the admin console; without one the reserved database
// names are unknown databases.
func (r *Router) SetAdmin(h AdminHandler) {
	r.admin.mu.Lock()
	r.admin.handler = h
	r.admin.mu.Unlock()
}

// serveReserved serves a client that needs no session: one of the admin
// console, or one of a disabled database, which is refused. It reports
// whether it did. deadline is the login's.
func (r *Router) serveReserved(conn net.Conn, st *state, startup *wire.Startup, from *origin, deadline time.Time) bool {
	dbName := startup.Params["database"]
	r.admin.mu.Lock()
	h := r.admin.handler
	disabled := r.admin.disabled[dbName]
	r.admin.mu.Unlock()
	if disabled {
		refuse(conn, wire.Fatalf(wire.CodeCannotConnectNow, "database %q is disabled", dbName).
			WithHint("An administrator ran DISABLE; ENABLE lets clients in again."), deadline)
		return true
	}
	if h == nil || !IsAdminDatabase(dbName) {
		return false
	}
	c, err := r.adminLogin(conn, st, startup, from)
	if err != nil {
		e := refuse(conn, err, deadline)
		r.log.Info("admin console login failed", "addr", conn.RemoteAddr().String(),
			"user", startup.Params["user"], "code", e.Code, "err", e.Message, "cause", causeOf(e))
		return true
	}
	conn.SetDeadline(time.Time{})
	stop := context.AfterFunc(r.ctx, func() { conn.Close() })
	defer stop()
	c.LetGo = r.consoleOpened(conn)
	defer r.consoleClosed(conn)
	h.ServeAdmin(c)
	return true
}

// consoleOpened counts conn among the console's connections and returns
// the channel closed when they are let go; one opened after that has its
// read ended at once.
func (r *Router) consoleOpened(conn net.Conn) <-chan struct{} {
	r.admin.mu.Lock()
	defer r.admin.mu.Unlock()
	r.admin.conns[conn] = struct{}{}
	if r.admin.gone {
		conn.SetReadDeadline(time.Unix(1, 0))
	}
	return r.admin.letGo
}

func (r *Router) consoleClosed(conn net.Conn) {
	r.admin.mu.Lock()
	delete(r.admin.conns, conn)
	r.admin.mu.Unlock()
}

// adminLogin authenticates an admin console client like any other and
// checks that it may use the console.
func (r *Router) adminLogin(conn net.Conn, st *state, startup *wire.Startup, from *origin) (*AdminClient, error) {
	cfg := st.cfg
	userName := startup.Params["user"]
	u := cfg.Users[userName]
	if _, err := r.authenticate(conn, cfg, userName, u, st.secrets[userName], from); err != nil {
		return nil, err
	}
	admin := slices.Contains(cfg.Admin.Users, userName)
	if !admin && !slices.Contains(cfg.Admin.StatsUsers, userName) {
		return nil, wire.Fatalf(wire.CodeInsufficientPrivilege,
			"permission denied for the admin console: %q is in neither admin.admin_users nor admin.stats_users", userName)
	}
	buf := wire.AppendAuthOK(nil)
	for _, p := range [][2]string{
		{"application_name", startup.Params["application_name"]},
		{"client_encoding", "UTF8"},
		{"DateStyle", "ISO, MDY"},
		{"integer_datetimes", "on"},
		{"server_encoding", "UTF8"},
		{"server_version", "16.0 (pgswitch)"},
		{"standard_conforming_strings", "on"},
		{"TimeZone", "UTC"},
	} {
		buf = wire.AppendParameterStatus(buf, p[0], p[1])
	}
	buf = wire.AppendBackendKeyData(buf, wire.NewPeerCancelKey(r.state.Load().cfg.PeerID))
	buf = wire.AppendReadyForQuery(buf, 'I')
	if _, err := conn.Write(buf); err != nil {
		return nil, err
	}
	return &AdminClient{Conn: conn, User: userName, Database: startup.Params["database"], Admin: admin, Ctx: r.ctx}, nil
}

// Config returns the configuration in force.
func (r *Router) Config() *config.Config { return r.state.Load().cfg }

// Disable refuses new clients of database db (existing ones stay).
func (r *Router) Disable(db string) error {
	if err := r.knownDatabase(db); err != nil {
		return err
	}
	r.admin.mu.Lock()
	if r.admin.disabled == nil {
		r.admin.disabled = map[string]bool{}
	}
	r.admin.disabled[db] = true
	r.admin.mu.Unlock()
	return nil
}

// Enable lets clients of db in again after Disable.
func (r *Router) Enable(db string) error {
	if err := r.knownDatabase(db); err != nil {
		return err
	}
	r.admin.mu.Lock()
	delete(r.admin.disabled, db)
	r.admin.mu.Unlock()
	return nil
}

func (r *Router) knownDatabase(db string) error {
	if r.Config().Databases[db] == nil {
		return wire.Errorf(wire.CodeInvalidCatalogName, "database %q does not exist", db)
	}
	return nil
}

package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/health"
	"github.com/pgswitch/pgswitch/wire"
)

// maxLookups bounds the auth_query lookups running at once, so that a
// flood of logins as unknown users costs the servers at most this many
// connections.
const maxLookups = 4

// userLookup finds, with auth_query, the password of users the
// configuration does not list (PgBouncer's auth_user), and keeps what it
// found for auth_cache_time. Logins of one user wait for one lookup. A
// user not found is looked up again at its next login, so that a role
// created on the server logs in at once.
type userLookup struct {
	now   func() time.Time
	query func(ctx context.Context, cfg *config.Config, db *config.Database, user string) (password string, found bool, err error)
	slots chan struct{} // one per lookup running

	mu    sync.Mutex
	found map[lookupKey]*lookedUp
	idle  map[string]idleConn // auth_user's connection per server and database, while unused
	done  bool                // closed: no connection is kept
}

// idleConn is a connection kept for the next lookup, and since when.
type idleConn struct {
	conn  *pgx.Conn
	since time.Time
}

type lookupKey struct{ db, user string }

// lookedUp is one lookup: in flight until ready is closed.
type lookedUp struct {
	ready    chan struct{}
	password string      // as auth_query returned it: a verifier, or a password
	secret   wire.Secret // password, parsed once
	found    bool
	err      error
	expires  time.Time
}

func newUserLookup(query func(context.Context, *config.Config, *config.Database, string) (string, bool, error)) *userLookup {
	return &userLookup{
		now:   time.Now,
		query: query,
		slots: make(chan struct{}, maxLookups),
		found: map[lookupKey]*lookedUp{},
		idle:  map[string]idleConn{},
	}
}

// lookup returns user's password as the servers of db know it, from the
// cache while it is fresh: e.password and e.secret when e.found.
func (l *userLookup) lookup(ctx context.Context, cfg *config.Config, db *config.Database, user string) (*lookedUp, error) {
	key := lookupKey{db.Name, user}
	l.mu.Lock()
	e := l.found[key]
	if e != nil {
		select {
		case <-e.ready:
			if !l.now().Before(e.expires) {
				e = nil // stale: look again
			}
		default: // in flight: wait for it
		}
	}
	if e != nil {
		l.mu.Unlock()
		select {
		case <-e.ready:
			return e, e.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	e = &lookedUp{ready: make(chan struct{})}
	l.found[key] = e
	l.mu.Unlock()

	select {
	case l.slots <- struct{}{}:
		e.password, e.found, e.err = l.query(ctx, cfg, db, user)
		<-l.slots
	case <-ctx.Done():
		e.err = ctx.Err()
	}
	if e.found && e.err == nil {
		if e.secret, e.err = wire.ParseSecret(e.password, user); e.err != nil {
			e.err = fmt.Errorf("%w returned an unusable password: %w", errAuthQuery, e.err)
		}
	}
	e.expires = l.now().Add(cfg.AuthCacheTime)
	l.mu.Lock()
	if (e.err != nil || !e.found) && l.found[key] == e {
		delete(l.found, key) // only what was found is kept
	}
	l.mu.Unlock()
	close(e.ready)
	return e, e.err
}

// close closes the connections kept for lookups; none is kept after.
func (l *userLookup) close() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
	l.forget()
}

// forget drops what lookups found and the connections kept for them, for
// a new configuration (another auth_user or auth_query) to take effect
// at once. Lookups in flight end as they began.
func (l *userLookup) forget() {
	l.mu.Lock()
	idle := l.idle
	l.idle = map[string]idleConn{}
	for k, e := range l.found {
		select {
		case <-e.ready:
			delete(l.found, k)
		default:
		}
	}
	l.mu.Unlock()
	for _, c := range idle {
		c.conn.Close(context.Background())
	}
}

// take returns the connection kept for key, if any, unless it has been
// idle for maxIdle (then it is closed).
func (l *userLookup) take(key string, maxIdle time.Duration) *pgx.Conn {
	l.mu.Lock()
	c, ok := l.idle[key]
	delete(l.idle, key)
	l.mu.Unlock()
	if !ok {
		return nil
	}
	if maxIdle > 0 && l.now().Sub(c.since) >= maxIdle {
		c.conn.Close(context.Background())
		return nil
	}
	return c.conn
}

// put keeps c for key's next lookup, or closes it if one is kept already.
func (l *userLookup) put(key string, c *pgx.Conn) {
	l.mu.Lock()
	if _, kept := l.idle[key]; !l.done && !kept {
		l.idle[key] = idleConn{conn: c, since: l.now()}
		c = nil
	}
	l.mu.Unlock()
	if c != nil {
		c.Close(context.Background())
	}
}

// errAuthQuery is wrapped by what goes wrong with auth_query itself.
var errAuthQuery = errors.New("auth_query")

// runAuthQuery runs auth_query for user on a server of db (its primary
// when one is up), logged in as auth_user, and returns the password
// column of the first row. No row, or a NULL password, is not found.
func (r *Router) runAuthQuery(ctx context.Context, cfg *config.Config, db *config.Database, user string) (string, bool, error) {
	srv := primaryOf(db, r.topology())
	if srv == nil {
		for _, s := range db.Servers {
			if r.topology().Get(s.Addr()).Usable() {
				srv = s
				break
			}
		}
	}
	if srv == nil {
		return "", false, fmt.Errorf("%w: no server of database %q is up", errAuthQuery, db.Name)
	}
	key := cfg.AuthUser + "@" + srv.Addr() + "/" + db.DBName
	for attempt := 0; ; attempt++ {
		c := r.lookups.take(key, cfg.Timeouts.ServerIdle)
		reused := c != nil
		if c == nil {
			// health.Connect logs in as health.user: here, auth_user.
			as := *cfg
			as.Health.User = cfg.AuthUser
			as.Health.Password = cfg.Users[cfg.AuthUser].ServerPasswordValue()
			as.Health.Timeout = cfg.Timeouts.ServerConnect
			var err error
			if c, err = health.Connect(ctx, &as, srv, db.DBName, "pgswitch auth_query"); err != nil {
				return "", false, fmt.Errorf("%w: log in to %s as %q: %w", errAuthQuery, srv.Addr(), cfg.AuthUser, err)
			}
		}
		res := c.PgConn().ExecParams(ctx, cfg.AuthQuery, [][]byte{[]byte(user)}, nil, nil, nil).Read()
		if res.Err != nil {
			broken := c.PgConn().IsClosed() || !isServerError(res.Err)
			c.Close(context.Background())
			if reused && attempt == 0 && broken {
				continue // the kept connection went stale: once more, anew
			}
			return "", false, fmt.Errorf("%w on %s: %w", errAuthQuery, srv.Addr(), res.Err)
		}
		r.lookups.put(key, c)
		if len(res.Rows) == 0 {
			return "", false, nil
		}
		if n := len(res.Rows[0]); n != 2 {
			return "", false, fmt.Errorf("%w must return 2 columns (user name, password), it returned %d", errAuthQuery, n)
		}
		if res.Rows[0][1] == nil {
			return "", false, nil
		}
		return string(res.Rows[0][1]), true, nil
	}
}

// dynamicUser returns the user named name as auth_query finds it on the
// servers of the database dbName (or of auth_dbname), with its secret; a
// nil user when it is not found. A failed lookup is an error the client
// is told, before any password exchange: it says nothing of the user.
func (r *Router) dynamicUser(cfg *config.Config, dbName, name string) (*config.User, wire.Secret, error) {
	if cfg.AuthDBName != "" {
		dbName = cfg.AuthDBName
	}
	db := cfg.Databases[dbName]
	if db == nil {
		r.log.Info("auth_query not run", "user", name, "detail", fmt.Sprintf("database %q does not exist", dbName))
		return nil, wire.Secret{}, nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, cfg.Timeouts.ClientLogin)
	defer cancel()
	e, err := r.lookups.lookup(ctx, cfg, db, name)
	if err != nil {
		r.log.Warn("auth_query failed", "user", name, "database", db.Name, "err", err)
		return nil, wire.Secret{}, wire.Fatalf(wire.CodeConnectionFailure, "could not look up the password of user %q", name).WithCause(err)
	}
	if !e.found {
		r.log.Info("auth_query found no password", "user", name, "database", db.Name)
		return nil, wire.Secret{}, nil
	}
	return &config.User{Name: name, Password: e.password}, e.secret, nil
}

// isServerError reports whether err is an error the server sent, rather
// than a broken connection.
func isServerError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}

package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/track"
	"github.com/pgswitch/pgswitch/wire"
)

// serveConn runs one client connection from its first byte to its end. It
// holds one of r.startup's slots, taken by Serve, until the client's
// startup packet is read.
func (r *Router) serveConn(nc net.Conn) {
	parked := false // the session went on without this goroutine, which must not end it
	defer func() {
		if !parked {
			nc.Close()
		}
	}()
	st := r.state.Load()
	cfg := st.cfg
	var deadline time.Time // of the login
	if cfg.Timeouts.ClientLogin > 0 {
		deadline = time.Now().Add(cfg.Timeouts.ClientLogin)
		nc.SetDeadline(deadline)
	}
	// Until the session is registered (Close kicks it then), shutdown ends
	// the login at once rather than after client_login.
	stopLogin := context.AfterFunc(r.ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stopLogin()
	conn, startup, err := wire.Negotiate(nc, st.clientTLS(nc))
	r.startup.release()
	if conn == nil {
		conn = nc
	}
	if err != nil {
		refuse(conn, err, deadline)
		r.log.Debug("client startup refused", "addr", nc.RemoteAddr().String(), "err", err)
		return
	}
	defer func() {
		if !parked {
			conn.Close()
		}
	}()
	if startup.Cancel != nil {
		r.cancel(*startup.Cancel)
		return
	}
	if !r.admit(r.consoleUser(cfg, startup)) {
		refuse(conn, wire.Fatalf(wire.CodeTooManyConnections, "no more connections allowed (max_client_conn %d)", cfg.Pool.MaxClientConn), deadline)
		return
	}
	defer func() {
		if !parked {
			r.leave()
		}
	}()
	from := newOrigin(nc, conn)
	if r.serveReserved(conn, st, startup, from, deadline) {
		return
	}
	conn = r.countBytes(conn, startup.Params["database"])

	s, err := r.login(conn, st, startup, from)
	if err != nil {
		e := refuse(conn, err, deadline)
		r.log.Info("client login failed", "addr", nc.RemoteAddr().String(),
			"user", startup.Params["user"], "database", startup.Params["database"], "code", e.Code, "err", e.Message,
			"detail", e.Detail, "cause", causeOf(e))
		return
	}
	if !stopLogin() {
		r.unregister(s)
		return // shutdown began during the login
	}
	conn.SetDeadline(time.Time{})
	if s.kicked.Load() != nil {
		// Kicked while logging in: the kick's deadline was just undone.
		conn.SetReadDeadline(time.Unix(1, 0))
	}
	s.finish = func() {
		r.unregister(s)
		r.leave()
		conn.Close()
		nc.Close()
	}
	if s.serve() {
		parked = true // the goroutine that resumes it ends it: s.finish
		return
	}
	r.unregister(s)
}

// refuseWriteTimeout bounds the write of the FATAL that ends a login,
// which may come when the login's deadline has passed.
const refuseWriteTimeout = time.Second

// refuse sends err, FATAL, to a client whose login failed, and returns what
// it sent. A read or write that failed because timeouts.client_login passed
// becomes the error PostgreSQL raises when authentication_timeout passes
// (57014): PostgreSQL itself closes the connection without sending it,
// pgswitch tells the client why.
func refuse(conn net.Conn, err error, deadline time.Time) *wire.Error {
	e := wire.AsError(err)
	if !deadline.IsZero() && !time.Now().Before(deadline) && errors.Is(err, os.ErrDeadlineExceeded) {
		e = wire.Fatalf(wire.CodeQueryCanceled, "canceling authentication due to timeout").
			WithDetail("The login did not complete within timeouts.client_login.").WithCause(err)
	}
	conn.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	wire.WriteFatal(conn, e)
	return e
}

// admit counts a new client against pool.max_client_conn, or reports
// false if pgswitch is full. A client of the admin console (console) may
// also take one of adminReserve more places.
func (r *Router) admit(console bool) bool {
	max := r.state.Load().cfg.Pool.MaxClientConn
	if console && max > 0 {
		max += adminReserve
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if max > 0 && r.clients >= max {
		return false
	}
	r.clients++
	return true
}

func (r *Router) leave() {
	r.mu.Lock()
	r.clients--
	r.mu.Unlock()
}

// login checks who the client is, authenticates it and sends the server's
// parameters, ending with the first ReadyForQuery.
func (r *Router) login(conn net.Conn, st *state, startup *wire.Startup, from *origin) (*Session, error) {
	cfg := st.cfg
	userName := startup.Params["user"]
	dbName := startup.Params["database"]
	u, secret := cfg.Users[userName], st.secrets[userName]
	if u == nil && cfg.AuthUser != "" && from.checkTransport(cfg, userName) == nil {
		var err error
		if u, secret, err = r.dynamicUser(cfg, dbName, userName); err != nil {
			return nil, err
		}
	}
	key, err := r.authenticate(conn, cfg, userName, u, secret, from)
	if err != nil {
		return nil, err
	}
	if u != nil && u.PassThrough() {
		r.passThrough(u).Learn(secret, key)
	}
	db := cfg.Databases[dbName]
	if db == nil {
		// As PostgreSQL: the database is looked up once the client is
		// authenticated, and told so.
		return nil, authenticatedButRefused(conn, wire.Fatalf(wire.CodeInvalidCatalogName, "database %q does not exist", dbName))
	}

	s := newSession(r, conn, cfg, db, u, startup.Params)
	if !r.register(s) {
		return nil, wire.Fatalf(wire.CodeAdminShutdown, "pgswitch is shutting down")
	}
	params, err := s.serverParams(startup.Params)
	if err != nil {
		r.unregister(s)
		return nil, err
	}
	buf := wire.AppendAuthOK(nil)
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		buf = wire.AppendParameterStatus(buf, name, params[name])
	}
	buf = wire.AppendBackendKeyData(buf, s.key)
	buf = wire.AppendReadyForQuery(buf, 'I')
	if err := s.client.Write(buf); err != nil {
		r.unregister(s)
		return nil, err
	}
	return s, nil
}

// authenticate runs the client's authentication exchange on conn for the
// user it named, u being that user's configuration (nil: none). Its
// computations take turns of loginTurns (limits.max_concurrent_auth);
// waiting for the client holds none.
//
// As PostgreSQL does, a client learns that a role does not exist only
// where no password is asked (trust, cert, peer: 28000). Otherwise the
// exchange runs against a mock secret and ends as a wrong password does,
// 28P01, and only pgswitch's log says why.
//
// Before any method, client_tls_mode decides whether a TCP client may
// log in over its transport at all, as pg_hba.conf's hostssl and
// clientcert do.
//
// It returns the ClientKey the client proved, if any: what logs pgswitch
// in to servers for a user known only by its verifier.
func (r *Router) authenticate(conn net.Conn, cfg *config.Config, name string, u *config.User, secret wire.Secret, from *origin) (wire.ClientKey, error) {
	if err := from.checkTransport(cfg, name); err != nil {
		return wire.ClientKey{}, err
	}
	method := cfg.AuthFor(u)
	switch method {
	case config.AuthCert:
		if err := from.authenticateCert(name); err != nil {
			return wire.ClientKey{}, err
		}
	case config.AuthPeer:
		if err := from.authenticatePeer(cfg, name); err != nil {
			return wire.ClientKey{}, err
		}
	}
	if method.Passwordless() {
		if u == nil {
			return wire.ClientKey{}, authenticatedButRefused(conn, wire.Fatalf(wire.CodeInvalidAuthorizationSpecification, "role %q does not exist", name))
		}
		return wire.ClientKey{}, nil
	}
	if method == config.AuthPassword && !cfg.AllowCleartextWithoutTLS && !clientTLS(conn) && (from == nil || !from.unix) {
		// Refused before the client sends its password in the clear
		// over the network (a Unix socket never leaves the machine).
		return wire.ClientKey{}, wire.Fatalf(wire.CodeInvalidAuthorizationSpecification, "cleartext password authentication requires TLS").
			WithHint("Connect with sslmode=require, or set allow_cleartext_without_tls in pgswitch's configuration.")
	}
	ctx, cancel := context.WithTimeout(r.ctx, cfg.Timeouts.ClientLogin)
	defer cancel()
	tc := &turnConn{Conn: conn, turns: &loginTurns, ctx: ctx, limit: cfg.Limits.MaxConcurrentAuth}
	var key wire.ClientKey
	var err error
	switch {
	case method == config.AuthPassword:
		key, err = wire.AuthenticatePassword(tc, name, secret)
	case method == config.AuthMD5 && (u == nil || secret.CanMD5()):
		// An unknown user gets the exchange the known ones get. (PostgreSQL
		// picks by password_encryption, the kind most of its roles have.)
		err = wire.AuthenticateMD5(tc, name, secret)
	default:
		// As PostgreSQL does: md5 asked, but only a SCRAM verifier known.
		key, err = wire.AuthenticateSCRAMKey(tc, name, secret)
	}
	tc.release()
	switch {
	case tc.err == nil:
	case r.ctx.Err() != nil:
		return wire.ClientKey{}, wire.Fatalf(wire.CodeAdminShutdown, "pgswitch is shutting down")
	default:
		return wire.ClientKey{}, wire.Fatalf(wire.CodeTooManyConnections, "too many logins in progress (limits.max_concurrent_auth %d)", tc.limit).WithCause(tc.err)
	}
	if u == nil && wire.AsError(err).Code == wire.CodeInvalidPassword {
		r.log.Info("client authentication failed", "addr", conn.RemoteAddr().String(), "user", name,
			"detail", fmt.Sprintf("role %q does not exist", name))
	}
	return key, err
}

// clientTLS reports whether the client's connection is encrypted.
func clientTLS(conn net.Conn) bool {
	if c, ok := conn.(*clientConn); ok {
		conn = c.Conn
	}
	_, ok := conn.(*tls.Conn)
	return ok
}

// authenticatedButRefused tells the client it is authenticated, then
// returns e to end its login, as PostgreSQL does when the role (under
// trust) or the database it named does not exist.
func authenticatedButRefused(conn net.Conn, e *wire.Error) error {
	if _, err := conn.Write(wire.AppendAuthOK(nil)); err != nil {
		return wire.Fatalf(wire.CodeConnectionFailure, "could not send authentication response").WithCause(err)
	}
	return e
}

// serverParams returns the ParameterStatus values a client is told at login:
// those of a real server of its database, with the client's own startup
// settings as the server would report them. Any server will do, the
// primary first, so that clients can still log in to read while the
// primary is down; a database whose pools never connected connects once to
// learn them. Startup settings are checked on a server first, so that an
// unknown parameter or a bad value fails the login as PostgreSQL's would.
func (s *Session) serverParams(startup map[string]string) (map[string]string, error) {
	servers := s.db.Servers
	if p := primaryOf(s.db, s.r.topology()); p != nil {
		servers = append([]*config.Server{p}, servers...)
	}
	check := s.startupToCheck()
	var params map[string]string
	if !check {
		for _, srv := range servers {
			if params = s.poolFor(srv).Params(); params != nil {
				break
			}
		}
	}
	var values map[string]string
	var firstErr *wire.Error
	for _, srv := range servers {
		if params != nil {
			break
		}
		if !s.r.topology().Get(srv.Addr()).Usable() {
			continue
		}
		p := s.poolFor(srv)
		c, err := p.Acquire(s.r.ctx, s.cfg.Timeouts.QueryWait)
		if err != nil {
			if firstErr == nil {
				firstErr = pool.AcquireError(p.Key(), s.cfg.Timeouts.QueryWait, err).WithSeverity(wire.SeverityFatal)
			}
			continue
		}
		params = c.Params()
		if !check {
			c.Release()
			break
		}
		var e *wire.Error
		if values, e = s.checkStartup(c); e != nil {
			return nil, e
		}
	}
	if params == nil {
		if firstErr == nil {
			firstErr = wire.Fatalf(wire.CodeCannotConnectNow, "no server of database %q is up", s.db.Name)
		}
		return nil, firstErr
	}
	out := make(map[string]string, len(params)+1)
	for k, v := range params {
		out[k] = v
	}
	out["application_name"] = s.names.app
	// What the client asked for at startup is in force once its first unit
	// runs (the settings are replayed); report it as the server would.
	for k := range out {
		name := strings.ToLower(k)
		if v, ok := values[name]; ok {
			out[k] = v
		} else if v := startupValue(startup, name); v != "" && s.state.Startup(name) != "" {
			out[k] = v
		}
	}
	return out, nil
}

// startupToCheck reports whether the client gave startup settings a
// server must vouch for: any but application_name, which takes any value.
func (s *Session) startupToCheck() bool {
	for name := range s.state.Settings() {
		if name != "application_name" {
			return true
		}
	}
	return false
}

// checkStartup applies the client's startup settings on c, which it then
// releases, and returns each setting's value as the server reports it
// (DateStyle "iso" is "ISO, MDY"). If the server refuses one, the login
// fails with the server's error, as a direct login would.
func (s *Session) checkStartup(c *pool.Conn) (map[string]string, *wire.Error) {
	q, effects := s.state.StartupFix([]track.Effect{{Kind: classify.KindReset, Name: "all"}})
	reply := make(chan track.Reply, 1)
	t := c.Answers().(*track.Server)
	c.Link(s.client, false)
	t.Link(s.state)
	err := c.Claim(s.client, 'Q')
	if err == nil {
		t.Push(track.Request{Type: 'Q', Edit: track.Capture, Replay: true, Effects: effects, Reply: reply})
		err = c.Write(wire.AppendQuery(nil, q))
	}
	c.Unhold()
	var r track.Reply
	if err == nil {
		select {
		case r = <-reply:
		case <-c.Done():
			err = errors.New("server connection lost")
		}
	}
	if err != nil {
		return nil, wire.Fatalf(wire.CodeConnectionFailure, "server connection to %s lost while applying startup settings", c.Addr()).WithCause(err)
	}
	if r.Err != nil {
		var er pgproto3.ErrorResponse
		if er.Decode(r.Err[wire.HeaderSize:]) != nil {
			return nil, wire.Fatalf(wire.CodeInternalError, "startup settings refused")
		}
		return nil, &wire.Error{Severity: wire.SeverityFatal, Code: er.Code, Message: er.Message, Detail: er.Detail, Hint: er.Hint}
	}
	values := map[string]string{}
	for i, row := range r.Rows {
		if i < len(effects) && len(row) == 1 {
			values[effects[i].Name] = row[0]
		}
	}
	return values, nil
}

// causeOf is the logged-only cause of e, "" without one.
func causeOf(e *wire.Error) string {
	if c := e.Unwrap(); c != nil {
		return c.Error()
	}
	return ""
}

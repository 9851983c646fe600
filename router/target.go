package router

import (
	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/health"
	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/track"
)

// poolFor returns the pool of the session's database and user on srv,
// looked up once per session and server. A database has a few servers: a
// scan of them costs less than a map lookup, on every unit.
func (s *Session) poolFor(srv *config.Server) *pool.Pool {
	b := s.active()
	for _, x := range b.pools {
		if x.srv == srv {
			return x.p
		}
	}
	p := s.lookupPool(srv)
	b.pools = append(b.pools, poolOf{srv, p})
	return p
}

// poolOf is a server's pool, as a session looked it up.
type poolOf struct {
	srv *config.Server
	p   *pool.Pool
}

func (s *Session) lookupPool(srv *config.Server) *pool.Pool {
	cfg := s.cfg
	key := pool.Key{Database: s.db.Name, User: s.user.Name, Server: srv.Addr()}
	target := pool.Target{
		Host:           srv.Host,
		Port:           srv.Port,
		Database:       s.db.DBName,
		User:           s.user.Name,
		Password:       s.user.ServerPasswordValue(),
		TLS:            health.ServerTLS(cfg),
		ConnectTimeout: cfg.Timeouts.ServerConnect,
		Answers:        s.answersFor(),
	}
	if s.user.PassThrough() {
		target.Password = ""
		target.PassThrough = s.r.passThrough(s.user)
	}
	settings := pool.Settings{
		Size:        cfg.PoolSizeFor(s.db, s.user),
		MinIdle:     cfg.Pool.MinIdle,
		IdleTimeout: cfg.Timeouts.ServerIdle,
		Lifetime:    cfg.Timeouts.ServerLifetime,
	}
	return s.r.pools.Get(key, target, settings)
}

// answersFor returns what makes the record of each new server connection
// of the session's database and user.
func (s *Session) answersFor() func() pool.Answers {
	db, user := s.dbs, s.user.Name
	return func() pool.Answers { return track.NewServer(db, user) }
}

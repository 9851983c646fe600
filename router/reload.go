package router

import (
	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/wire"
)

// Reload makes cfg the configuration in force: new sessions use it at once,
// existing ones from their next unit of work (so an added replica gets reads
// without clients reconnecting). Pools of removed databases, users and
// servers are drained: no new work, in-flight work finishes. A cfg that
// cannot be applied leaves the running configuration as it was.
func (r *Router) Reload(cfg *config.Config) error {
	if err := r.Apply(cfg); err != nil {
		return err
	}
	r.lookups.forget()
	for _, p := range r.pools.Pools() {
		k := p.Key()
		db, u := cfg.Databases[k.Database], cfg.Users[k.User]
		if u == nil && cfg.AuthUser != "" {
			u = &config.User{Name: k.User} // auth_query's: its pool stays
		}
		if db == nil || u == nil || !hasServer(db, k.Server) {
			r.pools.Remove(k)
			continue
		}
		p.SetSettings(poolSettings(cfg, db, u))
	}
	r.log.Info("configuration reloaded", "databases", len(cfg.Databases), "users", len(cfg.Users))
	return nil
}

func hasServer(db *config.Database, addr string) bool {
	for _, srv := range db.Servers {
		if srv.Addr() == addr {
			return true
		}
	}
	return false
}

func poolSettings(cfg *config.Config, db *config.Database, u *config.User) pool.Settings {
	return pool.Settings{
		Size:        cfg.PoolSizeFor(db, u),
		MinIdle:     cfg.Pool.MinIdle,
		IdleTimeout: cfg.Timeouts.ServerIdle,
		Lifetime:    cfg.Timeouts.ServerLifetime,
	}
}

// beginUnit runs before a unit of work that needs a server connection. A
// session whose configuration was reloaded since takes the new one here,
// between units, when it holds no server connection.
func (s *Session) beginUnit() error {
	cfg := s.r.state.Load().cfg
	if cfg == s.cfg {
		return nil
	}
	db := cfg.Databases[s.db.Name]
	u := cfg.Users[s.user.Name]
	if u == nil && cfg.AuthUser != "" && s.cfg.Users[s.user.Name] == nil {
		u = s.user // found by auth_query, as it still may be
	}
	if db == nil || u == nil {
		e := wire.Fatalf(wire.CodeAdminShutdown, "database %q or user %q was removed from the configuration", s.db.Name, s.user.Name)
		s.client.SendError(e)
		return errAnswered
	}
	s.cfg, s.db, s.user = cfg, db, u
	s.dbs = s.r.database(db.Name)
	if s.busy != nil {
		s.busy.pools = nil // the new configuration's servers
	}
	return nil
}

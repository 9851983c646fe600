// routing.rules in a session: which rule matches a unit, and where the
// rule sends it.

package router

import (
	"net"
	"net/netip"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/rules"
	"github.com/pgswitch/pgswitch/wire"
)

// applyRules matches routing.rules against the unit that starts at the
// message being sent, classified as res. A rejecting rule fails the unit
// here, wherever it would have run; a routing rule is kept in s.rule for
// decide. A hint in the query's comment overrides routing rules, never a
// rejecting one; a session-mode client keeps its server, so only rejecting
// rules apply to it.
func (s *Session) applyRules(res classify.Result) error {
	s.rule = nil
	set := s.r.state.Load().rules
	if set.Empty() {
		return nil
	}
	act := set.Match(s.ruleClient(), s.unitStmts)
	switch {
	case act == nil:
		return nil
	case act.Kind == rules.Reject:
		return wire.Errorf(act.Code, "%s", act.Message)
	case res.Hint != classify.HintNone || s.mode == config.PoolModeSession:
		return nil
	}
	s.rule = act
	return nil
}

// ruleClient is what rules know of the client.
func (s *Session) ruleClient() rules.Client {
	c := rules.Client{Database: s.db.Name, User: s.user.Name, ApplicationName: s.names.app}
	if a, ok := s.conn.RemoteAddr().(*net.TCPAddr); ok {
		c.Addr, _ = netip.AddrFromSlice(a.IP)
	}
	return c
}

// unitStmts yields the statements of the unit that starts at the message
// being sent, with their texts, for the rules that look at them.
func (s *Session) unitStmts(yield func(rules.Stmt) bool) {
	s.unitStatements(false, func(text string, res classify.Result, known bool) bool {
		return !known || yield(rules.Stmt{Text: text, Shape: res.Shape})
	})
}

// decideRule routes a unit as the matching rule says. A unit that writes
// goes to the primary whatever the rule: a standby would refuse it. When
// none of a rule's servers is fit, the unit is routed as with no rule.
func (s *Session) decideRule(res classify.Result, caughtUp func(*config.Server) bool) decision {
	act := s.rule
	v := s.view()
	primary := v.primary
	why := act.Why()
	if act.Kind == rules.ToPrimary {
		return decision{server: primary, why: why}
	}
	if res.Route == classify.Write {
		d := decide(res, s.db, v, s.dbs.lb, s.loadFn, s.scratch(), caughtUp)
		d.why = why + " is for reads; " + d.why
		return d
	}
	if primary == nil {
		caughtUp = nil // stale reads beat none
	}
	only := s.ruleServers()
	srv, fit := pickReplica(v, s.dbs.lb, s.loadFn, s.scratch(), only, caughtUp)
	switch {
	case srv != nil:
		return decision{server: srv, read: true, why: why}
	case fit:
		return decision{server: primary, read: true, why: why + "; no replica of the rule's has replayed the writes it must see, so the primary", behind: true}
	case only == nil:
		return decision{server: primary, read: true, why: why, then: thenNoReplica}
	case primary != nil && only.Has(primary):
		return decision{server: primary, read: true, why: why}
	}
	d := decide(res, s.db, v, s.dbs.lb, s.loadFn, s.scratch(), caughtUp)
	d.why = why + ": none of its servers is fit; " + d.why
	return d
}

// ruleServers is the rule's choice of servers for the unit being routed,
// nil when any fit replica will do.
func (s *Session) ruleServers() *rules.Action {
	if s.rule != nil && s.rule.Kind == rules.ToServers {
		return s.rule
	}
	return nil
}

// ruleMoves reports whether the unit's rule wants it off the replica the
// units still in flight run on.
func (s *Session) ruleMoves(res classify.Result) bool {
	switch {
	case s.rule == nil:
		return false
	case s.rule.Kind == rules.ToPrimary:
		return true
	case s.rule.Kind == rules.ToServers && res.Route == classify.Read:
		for _, srv := range s.db.Servers {
			if srv.Addr() == s.cur.Addr() {
				return !s.rule.Has(srv)
			}
		}
	}
	return false
}

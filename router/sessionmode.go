// The session-mode session: the client has one server connection for good
// and its messages pass unchanged. pgswitch applies the startup settings
// once, and sets startup values again after the client resets them (the
// server alone would return to its defaults).

package router

import (
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/track"
	"github.com/pgswitch/pgswitch/wire"
)

// handleSession sends one client message in session mode.
func (s *Session) handleSession(m span) error {
	msg := s.msg(m)
	if s.cur == nil {
		if err := s.lease(classify.Result{}, ""); err != nil {
			s.failLocal(m.typ, err)
			return nil
		}
	}
	switch m.typ {
	case 'Q':
		text := cstring(msg[wire.HeaderSize:])
		res := s.classifyText(text)
		effects := track.Effects(res, text)
		if err := s.emit(track.Request{Type: 'Q', Effects: effects}, msg); err != nil {
			return err
		}
		s.noteResets(effects)
		if res.Kind.Any(classify.KindCopyFrom) {
			s.copyIn = true // nothing may come between the COPY and its data
			return nil
		}
		return s.sendAfter()
	case 'P':
		name, text, _ := parseBody(msg)
		if res := s.classifyText(text); track.HasEffects(res) {
			s.sessionStmt(string(name), portalInfo{res: res, text: text})
		} else {
			s.sessionStmt(string(name), portalInfo{})
		}
	case 'B':
		portal, name, _ := bindNames(msg)
		s.setPortal(portal, s.sessionStmts[string(name)])
	case 'E':
		portal, _ := splitCString(msg[wire.HeaderSize:])
		p := s.portalOf(portal)
		effects := track.Effects(p.res, p.text)
		if err := s.emit(track.Request{Type: 'E', Effects: effects}, msg); err != nil {
			return err
		}
		s.noteResets(effects)
		return nil
	case 'S':
		if err := s.emit(track.Request{Type: 'S'}, msg); err != nil {
			return err
		}
		return s.sendAfter()
	case 'c', 'f':
		if err := s.emit(track.Request{Type: m.typ}, msg); err != nil || !s.copyIn {
			return err
		}
		s.copyIn = false
		return s.sendAfter()
	}
	return s.emit(track.Request{Type: m.typ}, msg)
}

// sessionStmt notes what the client's statement name runs, for the effects
// of its Execute; "" is the unnamed one.
func (s *Session) sessionStmt(name string, p portalInfo) {
	if p.text != "" {
		p.text = string([]byte(p.text)) // outlives the batch
	}
	if s.sessionStmts == nil {
		s.sessionStmts = map[string]portalInfo{}
	}
	if p.text == "" {
		delete(s.sessionStmts, name)
		return
	}
	s.sessionStmts[name] = p
}

// noteResets notes startup values the client's statements reset.
func (s *Session) noteResets(effects []track.Effect) {
	if effects != nil && s.state.ResetsStartup(effects) {
		s.after.resets = append(s.after.resets, effects...)
	}
}

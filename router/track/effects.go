package track

import (
	"strings"

	"github.com/pgswitch/pgswitch/router/classify"
)

// Effect is what one statement does to session state once the server has
// completed it.
type Effect struct {
	Kind  classify.Kind
	Route classify.Route
	Name  string // as classify.Stmt.Name
	// SQL is the statement's own text: a SET is replayed with it on other
	// server connections, a PREPARE prepared again with it.
	SQL string
}

// effectKinds are the kinds whose statements change what the server or the
// client carry, or end a transaction.
const effectKinds = classify.KindSet | classify.KindReset | classify.KindRole | classify.KindDiscardAll |
	classify.KindPrepare | classify.KindDeallocate | classify.KindSavepoint | classify.KindRelease |
	classify.KindRollbackTo | classify.KindCommit | classify.KindRollback | classify.KindDDL

// HasEffects reports whether statements of res change what servers or
// clients carry, or end a transaction.
func HasEffects(res classify.Result) bool { return res.Kind&effectKinds != 0 }

// Effects returns the effects of the statements of text, classified as
// res; nil when none matters, which is the common case and allocates
// nothing. Every statement gets an entry, so that the server's n-th
// CommandComplete is the n-th effect.
func Effects(res classify.Result, text string) []Effect {
	if res.Kind&effectKinds == 0 || len(res.Stmts) == 0 {
		return nil
	}
	texts := []string{text}
	if len(res.Stmts) > 1 {
		texts = classify.Split(text)
	}
	out := make([]Effect, len(res.Stmts))
	for i, st := range res.Stmts {
		out[i] = Effect{Kind: st.Kind, Route: st.Route, Name: st.Name}
		if st.Kind&(classify.KindSet|classify.KindPrepare) != 0 && len(texts) == len(res.Stmts) {
			// A copy: text may be a view of a buffer that is reused.
			out[i].SQL = strings.Clone(strings.TrimRight(strings.TrimSpace(texts[i]), "; \t\r\n"))
		}
	}
	return out
}

// NeedsCapture reports whether statements of res may change session
// settings in ways only the server can tell, so that pgswitch must read
// them back after the unit.
func NeedsCapture(res classify.Result) bool {
	return res.Kind.Any(classify.KindSetUnknown)
}

// Pins returns why a unit of res ties its client to the server connection
// for good, "" when it does not: state that cannot be replayed elsewhere.
func Pins(res classify.Result) string {
	switch k := res.Kind; {
	case k.Any(classify.KindListen):
		return "LISTEN"
	case k.Any(classify.KindAdvisoryLock):
		return "session advisory lock"
	case k.Any(classify.KindTemp):
		return "temporary object"
	case k.Any(classify.KindDeclareWithHold):
		return "cursor WITH HOLD"
	case k.Any(classify.KindRole) && k.Any(classify.KindSet):
		return "SET ROLE or SESSION AUTHORIZATION"
	}
	return ""
}

// ResetsStartup reports whether effects reset a parameter the client gave
// at startup: the server resets it to its own default, so pgswitch sets the
// startup value again right after (StartupFix).
func (c *Client) ResetsStartup(effects []Effect) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.startup) == 0 {
		return false
	}
	for _, e := range effects {
		if e.Kind.Any(classify.KindDiscardAll) || e.Kind.Any(classify.KindReset) && (e.Name == "all" || c.startup[e.Name] != "") {
			return true
		}
	}
	return false
}

// StartupFix returns the statements that set again the startup values
// effects reset, with their (replay) effects; "" when there are none.
func (c *Client) StartupFix(effects []Effect) (string, []Effect) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for _, e := range effects {
		switch {
		case e.Kind.Any(classify.KindDiscardAll), e.Kind.Any(classify.KindReset) && e.Name == "all":
			names = sortedKeys(c.startup)
		case e.Kind.Any(classify.KindReset) && c.startup[e.Name] != "":
			names = append(names, e.Name)
		}
	}
	return replay(names, c.startup)
}

func replay(names []string, stmts map[string]string) (string, []Effect) {
	if len(names) == 0 {
		return "", nil
	}
	var b strings.Builder
	eff := make([]Effect, 0, len(names))
	for _, name := range names {
		b.WriteString(stmts[name])
		b.WriteByte(';')
		eff = append(eff, Effect{Kind: classify.KindSet, Name: name, SQL: stmts[name]})
	}
	return b.String(), eff
}

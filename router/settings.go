// Session settings under transaction pooling: each unit runs on a server
// connection brought to the client's settings and SQL-level statements
// first; what the client changes is recorded from what the server confirms.

package router

import (
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/track"
	"github.com/pgswitch/pgswitch/wire"
)

// afterSync is what pgswitch sends after the client's next Query or Sync:
// a read-back of the settings when the unit may have changed them in ways
// only the server knows, and the startup values of parameters it reset.
type afterSync struct {
	capture bool
	resets  []track.Effect
}

// syncUnit brings cur to the client's state before a unit: statements
// beyond the per-connection bound are closed, settings and SQL-level
// statements replayed where cur's differ, and answers pgswitch owes from
// before the lease are queued in their turn.
func (s *Session) syncUnit() error {
	if names := s.curT.Evict(s.cfg.Pool.MaxPreparedStatements); len(names) > 0 {
		for _, name := range names {
			if err := s.emit(track.Request{Type: 'C', Edit: track.Swallow}, wire.AppendClose(nil, 'S', name)); err != nil {
				return err
			}
		}
		if err := s.emit(track.Request{Type: 'S', Edit: track.Swallow}, syncMsg); err != nil {
			return err
		}
	}
	if q, effects := s.curT.Sync(s.state); q != "" {
		if err := s.emit(track.Request{Type: 'Q', Edit: track.Swallow, Replay: true, Effects: effects}, wire.AppendQuery(nil, q)); err != nil {
			return err
		}
	}
	if len(s.b.local) > 0 {
		owed := append([]byte(nil), s.b.local...)
		s.b.local = s.b.local[:0]
		return s.emit(track.Request{Type: 'C', Edit: track.Substitute, Subst: owed}, closeNone)
	}
	return nil
}

// noteAfter notes what a statement of the client (classified as res, with
// effects) needs pgswitch to send after the unit.
func (s *Session) noteAfter(res classify.Result, effects []track.Effect) {
	if track.NeedsCapture(res) {
		s.after.capture = true
	}
	if effects != nil && s.state.ResetsStartup(effects) {
		s.after.resets = append(s.after.resets, effects...)
	}
}

// noteRun notes statements the client runs on cur (stmts, classified as a
// whole as res): whether they may write, and whether its transaction is open
// after them.
func (s *Session) noteRun(res classify.Result) {
	if res.Route == classify.Write && !s.curRead {
		s.wrote = true
	}
	for _, st := range res.Stmts {
		switch {
		case st.Kind.Any(classify.KindBegin):
			s.txnOpen = true
		case st.Kind.Any(classify.KindCommit | classify.KindRollback):
			s.txnOpen = false
		}
	}
}

// sendAfter sends what noteAfter noted, after the client's Query or Sync:
// first, after a write that ended its transaction, the read of the WAL
// position reads must reach to see it (routing.consistency), which the
// client's answer waits for.
func (s *Session) sendAfter() error {
	if s.wrote && !s.txnOpen && s.readYourWrites() {
		s.wrote = false
		if err := s.emit(track.Request{Type: 'Q', Edit: track.Capture, Mark: true}, markMsg); err != nil {
			return err
		}
	}
	if len(s.after.resets) > 0 {
		q, effects := s.state.StartupFix(s.after.resets)
		s.after.resets = s.after.resets[:0]
		if q != "" {
			if err := s.emit(track.Request{Type: 'Q', Edit: track.Swallow, Replay: true, Effects: effects}, wire.AppendQuery(nil, q)); err != nil {
				return err
			}
		}
	}
	if s.after.capture {
		s.after.capture = false
		return s.emit(track.Request{Type: 'Q', Edit: track.Capture}, captureMsg)
	}
	return nil
}

var (
	captureMsg = wire.AppendQuery(nil, track.CaptureQuery)
	markMsg    = wire.AppendQuery(nil, track.MarkQuery)
)

// sharedSets hands out one map per distinct set of startup settings: the
// clients of one application ask for the same ones (application_name, a
// DateStyle), and every idle client holds its set. The maps are read only:
// a client's changes go to a copy (track.Client).
type sharedSets struct {
	mu   sync.Mutex
	sets map[string]map[string]string // by setsKey
}

// maxSharedSets bounds the distinct sets kept; more are not shared.
const maxSharedSets = 1024

// share returns a map equal to sets, shared with earlier clients when one
// was.
func (t *sharedSets) share(sets map[string]string) map[string]string {
	if len(sets) == 0 {
		return nil
	}
	key := setsKey(sets)
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.sets[key]; ok {
		return old
	}
	if t.sets == nil {
		t.sets = map[string]map[string]string{}
	}
	if len(t.sets) < maxSharedSets {
		t.sets[key] = sets
	}
	return sets
}

func setsKey(sets map[string]string) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		b.WriteString(name)
		b.WriteByte(0)
		b.WriteString(sets[name])
		b.WriteByte(0)
	}
	return b.String()
}

// startupSets returns the settings a client asked for at login, as
// statements that set them: parameters other than the ones the protocol
// itself uses, and -c name=value in options. An explicit parameter wins
// over the same one in options, as in PostgreSQL.
func startupSets(startup map[string]string) map[string]string {
	sets := map[string]string{}
	add := func(name, value string) {
		name = strings.ToLower(name)
		sets[name] = track.SetConfig(name, value)
	}
	for name, value := range startupOptions(startup["options"]) {
		add(name, value)
	}
	for k, v := range startup {
		switch k {
		case "user", "database", "options", "replication":
			continue
		case "client_encoding":
			if strings.EqualFold(strings.ReplaceAll(v, "-", ""), "UTF8") {
				delete(sets, "client_encoding") // what server connections use already
				continue
			}
		case "application_name":
			if v == "" {
				continue
			}
		}
		if strings.HasPrefix(k, "_pq_.") {
			continue // protocol options, not settings
		}
		add(k, v)
	}
	return sets
}

// startupOptions returns the -c name=value (and --name=value) settings of
// a startup options string.
func startupOptions(options string) map[string]string {
	out := map[string]string{}
	f := strings.Fields(options)
	for i := 0; i < len(f); i++ {
		opt := f[i]
		switch {
		case opt == "-c" && i+1 < len(f):
			i++
			opt = f[i]
		case strings.HasPrefix(opt, "-c"):
			opt = opt[2:]
		case strings.HasPrefix(opt, "--"):
			opt = opt[2:]
		default:
			continue
		}
		if name, value, ok := strings.Cut(opt, "="); ok {
			out[strings.ToLower(strings.ReplaceAll(name, "-", "_"))] = value
		}
	}
	return out
}

// startupValue returns the value a client gave parameter name (lower case)
// at startup, directly or in options ("" if none); the direct one wins.
func startupValue(startup map[string]string, name string) string {
	for k, v := range startup {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return startupOptions(startup["options"])[name]
}

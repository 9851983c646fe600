package pool

import (
	"net"
	"time"
)

// ConnState is what a server connection is doing, in PgBouncer's words.
type ConnState string

const (
	ConnActive ConnState = "active" // linked to a client
	ConnIdle   ConnState = "idle"   // in the pool, ready
	ConnTested ConnState = "tested" // running ROLLBACK or the reset query
	ConnNew    ConnState = "new"    // neither: just dialed, or closing
)

// ConnInfo describes one server connection for the admin console.
type ConnInfo struct {
	Key         Key
	PID         uint32
	State       ConnState
	Created     time.Time
	LocalAddr   net.Addr
	Client      *Client // linked client, nil when none
	CloseNeeded bool    // RECONNECT marked it
	Served      uint64  // units of work served
	Prepared    int     // statements pgswitch keeps prepared on it
}

// Conns describes every open connection of the pool.
func (p *Pool) Conns() []ConnInfo {
	type entry struct {
		c           *Conn
		idle, stale bool
	}
	p.mu.Lock()
	list := make([]entry, 0, len(p.conns))
	for c := range p.conns {
		_, stale := p.stale[c]
		list = append(list, entry{c, c.inIdle, stale})
	}
	p.mu.Unlock()
	out := make([]ConnInfo, 0, len(list))
	for _, e := range list {
		c := e.c
		c.mu.Lock()
		ci := ConnInfo{Key: p.key, PID: c.pid, Created: c.created, LocalAddr: c.nc.LocalAddr(),
			Client: c.client, CloseNeeded: e.stale, Served: c.served}
		switch {
		case c.client != nil:
			ci.State = ConnActive
		case e.idle:
			ci.State = ConnIdle
		case c.cleaning:
			ci.State = ConnTested
		default:
			ci.State = ConnNew
		}
		c.mu.Unlock()
		if st, ok := c.answers.(interface{ Statements() int }); ok {
			ci.Prepared = st.Statements()
		}
		out = append(out, ci)
	}
	return out
}

// MaxWait is how long the oldest waiter has been waiting (0 when none).
func (p *Pool) MaxWait() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.waiters) == 0 {
		return 0
	}
	return time.Duration(monotime() - p.waiters[0].since)
}

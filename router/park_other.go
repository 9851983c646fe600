//go:build !linux

package router

// Parking needs epoll; elsewhere every client keeps its goroutine.

const (
	parkBusy = iota
	parkWaiting
	parkRequested
	parkParked
	parkLingering
)

type parker struct {
	r *Router
}

func newParker(r *Router) *parker        { return &parker{r: r} }
func (p *parker) run()                   {}
func (p *parker) park(s *Session) bool   { return false }
func (p *parker) unpark(s *Session) bool { return false }
func (p *parker) generation() uint64     { return 0 }
func (p *parker) parked() int            { return 0 }
func (p *parker) scans() bool            { return false }

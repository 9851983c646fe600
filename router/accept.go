package router

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Accept errors that pass: the process is out of file descriptors or
// memory for a moment, or a client gave up before it was accepted. The
// connection waits in the listen backlog until accept succeeds.
var temporaryAcceptErrors = []error{
	syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ENOBUFS, syscall.ENOMEM,
}

// Accept retries back off from acceptBackoffMin, doubling, up to
// acceptBackoffMax, as net/http's server does; failures are logged at most
// once per acceptLogEvery.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	acceptLogEvery   = time.Second
)

// isTemporaryAccept reports whether accept may succeed if tried again.
func isTemporaryAccept(err error) bool {
	for _, t := range temporaryAcceptErrors {
		if errors.Is(err, t) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// acceptor accepts connections from one listener for Serve, retrying the
// failures that pass. Owned by Serve's goroutine.
type acceptor struct {
	ln   net.Listener
	log  *slog.Logger
	done <-chan struct{} // closed when the router closes: stop waiting

	delay    time.Duration // the next back-off; 0 after a success
	lastLog  time.Time     // when a failure was last logged
	unlogged int           // failures since then, not logged
}

// accept returns the next connection. A temporary failure (see
// temporaryAcceptErrors) is retried after a back-off, and logged at most
// once a second with the number of failures since the last line; any other
// error, or the router closing, ends it.
func (a *acceptor) accept() (net.Conn, error) {
	for {
		nc, err := a.ln.Accept()
		if err == nil {
			a.delay = 0
			return nc, nil
		}
		if !isTemporaryAccept(err) {
			return nil, err
		}
		a.delay = min(max(2*a.delay, acceptBackoffMin), acceptBackoffMax)
		a.unlogged++
		if now := time.Now(); now.Sub(a.lastLog) >= acceptLogEvery {
			a.log.Error("accepting clients failed; retrying", "addr", a.ln.Addr().String(),
				"err", err, "failures", a.unlogged, "retry_in", a.delay)
			a.lastLog, a.unlogged = now, 0
		}
		t := time.NewTimer(a.delay)
		select {
		case <-t.C:
		case <-a.done:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// startupSlots counts the connections still in their startup phase:
// accepted, but their startup packet (and TLS handshake) not read yet.
// Serve takes a slot before it accepts, so that beyond pool.max_startup_conn
// connections wait in the kernel's listen backlog, holding no descriptor.
type startupSlots struct {
	mu    sync.Mutex
	n     int
	freed chan struct{} // closed (and dropped) when a slot frees; nil if no one waits
}

// acquire takes a slot once fewer than max() are taken; it reports false if
// done closes first. max is read again each time a slot frees, so a reload
// applies to the next wait.
func (s *startupSlots) acquire(max func() int, done <-chan struct{}) bool {
	for {
		s.mu.Lock()
		if m := max(); m <= 0 || s.n < m {
			s.n++
			s.mu.Unlock()
			return true
		}
		if s.freed == nil {
			s.freed = make(chan struct{})
		}
		freed := s.freed
		s.mu.Unlock()
		select {
		case <-freed:
		case <-done:
			return false
		}
	}
}

// release gives back a slot taken by acquire.
func (s *startupSlots) release() {
	s.mu.Lock()
	s.n--
	if s.freed != nil {
		close(s.freed)
		s.freed = nil
	}
	s.mu.Unlock()
}

// count returns how many connections are in their startup phase.
func (s *startupSlots) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

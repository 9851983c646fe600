package router

import (
	"errors"
	"log/slog"
	"net"
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

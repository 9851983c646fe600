package upgrade

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgswitch/pgswitch/wire"
)

// ErrUnsupported: this platform cannot hand sockets to another process.
var ErrUnsupported = errors.New("binary upgrade is not supported on this platform")

// Options say what Start hands over and to whom.
type Options struct {
	// Listeners are handed over: the new process serves them at once.
	Listeners []Listener
	// Cancel is called, from one goroutine, with each cancel key the new
	// process received and did not know: it may be one of this process's
	// clients'.
	Cancel func(wire.CancelKey)
	// Timeout bounds how long the new process may take to serve; past it,
	// it is killed and the upgrade fails.
	Timeout time.Duration
	// Inherited is what this process took over in an upgrade of its own,
	// if any: the new process gets its relays to the older processes too.
	Inherited *Inherited
	// Path and Args start the new process; by default the binary this
	// process was started as, with its arguments (os.Args[1:]).
	Path string
	Args []string
}

// Successor is the process an upgrade started, once it serves.
type Successor struct {
	PID int

	relay *net.UnixConn // cancel keys from it
	done  chan struct{} // closed when the relay has stopped
}

// Start starts the new process, hands it the listeners and waits until it
// serves them. It fails, and the new process is gone, if the process exits
// first (a configuration it refuses, a binary that does not start) or does
// not serve within opts.Timeout. The caller then stops accepting on its own
// listeners: both processes accept from the same sockets until it does, so
// no connection waiting in a listen backlog is lost.
func Start(opts Options) (*Successor, error) {
	path := opts.Path
	if path == "" {
		p, err := executable()
		if err != nil {
			return nil, fmt.Errorf("find the binary: %w", err)
		}
		path = p
	}
	args := opts.Args
	if args == nil {
		args = os.Args[1:]
	}
	var fds []int // handed to the new process, closed here once it has them
	defer func() {
		for _, fd := range fds {
			closeFD(fd)
		}
	}()
	pass := func(c syscall.Conn) (int, error) {
		fd, err := dupFD(c)
		if err != nil {
			return 0, err
		}
		fds = append(fds, fd)
		return 2 + len(fds), nil // its number in the new process
	}
	h := &handover{Parent: os.Getpid(), Listeners: map[string]int{}}
	for _, ln := range opts.Listeners {
		c, ok := ln.Listener.(syscall.Conn)
		if !ok {
			return nil, fmt.Errorf("listener %s: a %T cannot be handed over", ln.Key, ln.Listener)
		}
		n, err := pass(c)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", ln.Key, err)
		}
		h.Listeners[ln.Key] = n
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("ready pipe: %w", err)
	}
	defer readyR.Close()
	h.Ready, err = pass(readyW)
	readyW.Close() // the new process has the only write end: EOF on readyR means it is gone
	if err != nil {
		return nil, fmt.Errorf("ready pipe: %w", err)
	}
	relay, theirs, err := relayPair()
	if err != nil {
		return nil, fmt.Errorf("cancel relay: %w", err)
	}
	fds = append(fds, theirs)
	h.Cancels = append(h.Cancels, 2+len(fds))
	for _, c := range opts.Inherited.relayConns() {
		if n, err := pass(c); err == nil {
			h.Cancels = append(h.Cancels, n)
		}
	}
	env, err := h.encode()
	if err != nil {
		relay.Close()
		return nil, err
	}

	proc, err := spawn(path, append([]string{path}, args...), append(withoutEnv(os.Environ(), envName), envName+"="+env), fds)
	if err != nil {
		relay.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	for _, fd := range fds {
		closeFD(fd)
	}
	fds = nil
	exited := make(chan error, 1)
	go func() { // ends when the new process does, maybe after this one
		st, err := proc.Wait()
		if err == nil && !st.Success() {
			err = errors.New(st.String())
		}
		exited <- err
	}()

	pid, err := awaitReady(readyR, exited, opts.Timeout)
	if err != nil {
		proc.Kill()
		relay.Close()
		return nil, fmt.Errorf("new process %d (%s): %w", proc.Pid, path, err)
	}
	s := &Successor{PID: pid, relay: relay, done: make(chan struct{})}
	go s.relayCancels(opts.Cancel)
	return s, nil
}

// awaitReady reads the new process's PID from the ready pipe.
func awaitReady(r *os.File, exited <-chan error, timeout time.Duration) (int, error) {
	type result struct {
		pid int
		err error
	}
	got := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if err != nil {
			got <- result{err: err}
			return
		}
		pid, err := strconv.Atoi(strings.TrimSpace(line))
		got <- result{pid, err}
	}()
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	select {
	case res := <-got:
		if res.err == nil {
			return res.pid, nil
		}
		// The pipe closed without a PID: the process exited, or is exiting.
		select {
		case err := <-exited:
			return 0, exitError(err)
		case <-time.After(5 * time.Second):
			return 0, fmt.Errorf("it closed its ready pipe without serving: %v", res.err)
		}
	case err := <-exited:
		return 0, exitError(err)
	case <-timer:
		r.SetReadDeadline(time.Unix(1, 0)) // ends the read above
		return 0, fmt.Errorf("not serving after %s; killed", timeout)
	}
}

func exitError(err error) error {
	if err == nil {
		return errors.New("it exited before serving")
	}
	return fmt.Errorf("it exited before serving: %w", err)
}

// relayCancels passes on the cancel keys the new process sends until Close.
func (s *Successor) relayCancels(cancel func(wire.CancelKey)) {
	defer close(s.done)
	buf := make([]byte, 64)
	for {
		n, err := s.relay.Read(buf)
		if err != nil {
			return // closed here, or the new process and all its copies are gone
		}
		if k, ok := decodeCancel(buf[:n]); ok && cancel != nil {
			cancel(k)
		}
	}
}

// Close stops relaying cancel keys and waits until the relay has stopped.
func (s *Successor) Close() {
	s.relay.Close()
	<-s.done
}

// startedAs is this binary as it was started, made absolute: the path
// given (os.Args[0]), symlinks kept, so that a link switched to a new
// release, or a file replaced in place, starts the new binary.
var startedAs = func() string {
	arg := os.Args[0]
	if !strings.ContainsRune(arg, filepath.Separator) {
		p, err := exec.LookPath(arg)
		if err != nil {
			return ""
		}
		arg = p
	}
	p, err := filepath.Abs(arg)
	if err != nil {
		return ""
	}
	return p
}()

// executable returns the binary to start: the path this one was started
// as, if it still names a file, else the file this process runs (which,
// if it was replaced, is the replacement).
func executable() (string, error) {
	if startedAs != "" {
		if fi, err := os.Stat(startedAs); err == nil && fi.Mode().IsRegular() {
			return startedAs, nil
		}
	}
	return os.Executable()
}

// withoutEnv returns env without the variable name.
func withoutEnv(env []string, name string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

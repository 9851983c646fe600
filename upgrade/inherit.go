package upgrade

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"

	"github.com/pgswitch/pgswitch/wire"
)

// Inherited is what a process started by an upgrade took over from the
// process that started it. A nil *Inherited stands for a process started
// anew: it listens anew and has no one to tell.
type Inherited struct {
	// Parent is the PID of the old process.
	Parent int

	mu        sync.Mutex
	listeners map[string]net.Listener // by Key; those not taken yet
	ready     *os.File                // nil once Ready wrote to it

	relayMu sync.Mutex
	relays  []*net.UnixConn // to the old process and the older ones still running
}

// Take reads the handover from the environment, if an upgrade started this
// process, and removes it from the environment so that no later child sees
// it. It returns nil, nil for a process started anew.
func Take() (*Inherited, error) {
	v, ok := os.LookupEnv(envName)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(envName)
	h, err := decodeHandover(v)
	if err != nil {
		return nil, err
	}
	in := &Inherited{Parent: h.Parent, listeners: map[string]net.Listener{}}
	in.ready = inheritedFile(h.Ready, "upgrade-ready")
	var errs []error
	for key, fd := range h.Listeners {
		ln, err := fileListener(fd, key)
		if err != nil {
			errs = append(errs, fmt.Errorf("inherited listener %s: %w", key, err))
			continue
		}
		in.listeners[key] = ln
	}
	for _, fd := range h.Cancels {
		f := inheritedFile(fd, "upgrade-cancel")
		c, err := net.FileConn(f)
		f.Close()
		if uc, ok := c.(*net.UnixConn); err == nil && ok {
			in.relays = append(in.relays, uc)
		} else if err == nil {
			c.Close()
			errs = append(errs, fmt.Errorf("inherited cancel relay: a %T, not a unix socket", c))
		} else {
			errs = append(errs, fmt.Errorf("inherited cancel relay: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		in.Close()
		return nil, err
	}
	return in, nil
}

// inheritedFile wraps an inherited descriptor, closed on exec from now on.
func inheritedFile(fd int, name string) *os.File {
	closeOnExec(fd)
	return os.NewFile(uintptr(fd), name)
}

func fileListener(fd int, key string) (net.Listener, error) {
	f := inheritedFile(fd, key)
	defer f.Close() // FileListener made a descriptor of its own
	return net.FileListener(f)
}

// Listen returns the inherited listener named key (see Key), and true; or
// a new one on network and address when none was inherited under that
// name. An inherited unix socket's file is removed when the listener closes,
// as a new one's would be.
func (in *Inherited) Listen(key, network, address string) (net.Listener, bool, error) {
	return in.ListenWith(key, func() (net.Listener, error) { return net.Listen(network, address) })
}

// ListenWith is Listen with listen opening the socket when it was not
// handed over (a Unix socket: its stale file is checked, its mode set).
func (in *Inherited) ListenWith(key string, listen func() (net.Listener, error)) (net.Listener, bool, error) {
	if in != nil {
		in.mu.Lock()
		ln := in.listeners[key]
		delete(in.listeners, key)
		in.mu.Unlock()
		if ln != nil {
			if u, ok := ln.(Unlinker); ok {
				u.SetUnlinkOnClose(true)
			}
			return ln, true, nil
		}
	}
	ln, err := listen()
	return ln, false, err
}

// Ready tells the old process that this one serves its listeners: the old
// one then stops accepting. The inherited listeners this process did not
// take (its configuration no longer names them) are closed first, so that
// once the old process closes its own they stop accepting.
func (in *Inherited) Ready() error {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	for key, ln := range in.listeners {
		if u, ok := ln.(Unlinker); ok {
			u.SetUnlinkOnClose(false) // the old process created the file; it removes it
		}
		ln.Close()
		delete(in.listeners, key)
	}
	ready := in.ready
	in.ready = nil
	in.mu.Unlock()
	if ready == nil {
		return nil
	}
	defer ready.Close()
	_, err := ready.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	return err
}

// ForwardCancel passes a cancel key this process does not know to the old
// processes still running (the one it took over from and those that one
// took over from), whose clients it may belong to; each one cancels only
// its own client's query and relays nothing further. A process that has
// exited is forgotten. Nothing happens in a process started anew.
func (in *Inherited) ForwardCancel(k wire.CancelKey) {
	if in == nil {
		return
	}
	msg := encodeCancel(k)
	in.relayMu.Lock()
	defer in.relayMu.Unlock()
	live := in.relays[:0]
	for _, c := range in.relays {
		if _, err := c.Write(msg); err != nil {
			c.Close() // it has exited
			continue
		}
		live = append(live, c)
	}
	clear(in.relays[len(live):])
	in.relays = live
}

// relayConns returns the relays to the older processes still running, for
// a process this one starts in turn.
func (in *Inherited) relayConns() []*net.UnixConn {
	if in == nil {
		return nil
	}
	in.relayMu.Lock()
	defer in.relayMu.Unlock()
	return slices.Clone(in.relays)
}

// Close releases what was inherited and not used.
func (in *Inherited) Close() {
	if in == nil {
		return
	}
	in.mu.Lock()
	for key, ln := range in.listeners {
		ln.Close()
		delete(in.listeners, key)
	}
	if in.ready != nil {
		in.ready.Close()
		in.ready = nil
	}
	in.mu.Unlock()
	in.relayMu.Lock()
	for _, c := range in.relays {
		c.Close()
	}
	in.relays = nil
	in.relayMu.Unlock()
}

// cancelSize is a relayed cancel key: process ID and secret, big-endian,
// as in a CancelRequest.
const cancelSize = 8

func encodeCancel(k wire.CancelKey) []byte {
	b := make([]byte, cancelSize)
	binary.BigEndian.PutUint32(b, k.ProcessID)
	binary.BigEndian.PutUint32(b[4:], k.SecretKey)
	return b
}

func decodeCancel(b []byte) (wire.CancelKey, bool) {
	if len(b) != cancelSize {
		return wire.CancelKey{}, false
	}
	return wire.CancelKey{ProcessID: binary.BigEndian.Uint32(b), SecretKey: binary.BigEndian.Uint32(b[4:])}, true
}

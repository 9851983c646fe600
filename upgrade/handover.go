package upgrade

import (
	"encoding/json"
	"fmt"
	"net"
)

// envName carries the handover from the old process to the new one: which
// inherited descriptor is which (handover, as JSON).
const envName = "PGSWITCH_UPGRADE"

// handover is what the old process passes in envName. Descriptors are
// numbers in the new process (3 and up: exec.Cmd.ExtraFiles).
type handover struct {
	Parent    int            `json:"parent"`    // the old process's PID
	Ready     int            `json:"ready"`     // a pipe: the new process writes its PID and a newline once it serves
	Cancels   []int          `json:"cancels"`   // datagram sockets to the old process and those still older: cancel keys the new process does not know
	Listeners map[string]int `json:"listeners"` // by Key
}

// Key names a listener across an upgrade: its configuration key and the
// address configured there ("listen", "127.0.0.1:6432"), not the address
// bound, so that port 0 and host names match, and a listener whose address
// the new configuration changed is not reused.
func Key(setting, address string) string { return setting + "=" + address }

// Listener is a listening socket to hand over, named by Key.
type Listener struct {
	Key string
	net.Listener
}

// SetUnlinkOnClose passes on to a unix socket's listener (Unlinker), so
// that whoever holds the Listener can keep the file for the successor.
func (l Listener) SetUnlinkOnClose(unlink bool) {
	if u, ok := l.Listener.(Unlinker); ok {
		u.SetUnlinkOnClose(unlink)
	}
}

// Unlinker is a listener on a unix socket file: closing it removes the file
// unless told not to (net.UnixListener). The old process must not remove
// the file its successor serves.
type Unlinker interface {
	SetUnlinkOnClose(bool)
}

func (h *handover) encode() (string, error) {
	b, err := json.Marshal(h)
	return string(b), err
}

func decodeHandover(s string) (*handover, error) {
	var h handover
	if err := json.Unmarshal([]byte(s), &h); err != nil {
		return nil, fmt.Errorf("%s: %w", envName, err)
	}
	if h.Parent <= 0 || h.Ready < 3 || len(h.Cancels) == 0 {
		return nil, fmt.Errorf("%s: incomplete: %s", envName, s)
	}
	for _, fd := range h.Cancels {
		if fd < 3 {
			return nil, fmt.Errorf("%s: cancel relay: descriptor %d", envName, fd)
		}
	}
	for key, fd := range h.Listeners {
		if fd < 3 {
			return nil, fmt.Errorf("%s: listener %s: descriptor %d", envName, key, fd)
		}
	}
	return &h, nil
}

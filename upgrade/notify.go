package upgrade

import (
	"net"
	"os"
)

// Notify tells the service manager state, as systemd's sd_notify does,
// when it listens (NOTIFY_SOCKET is set): "READY=1" once pgswitch
// serves, and "MAINPID=n" from a process started by an upgrade, so that
// systemd follows the new process (the unit needs NotifyAccess=all).
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"}) // "@…": the abstract namespace
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

//go:build unix

package upgrade

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// relayPair returns the two ends of the cancel relay: a datagram socket
// pair, so that one cancel key is one message. Both ends are closed on
// exec; exec.Cmd's ExtraFiles gives the new process its end.
func relayPair() (ours *net.UnixConn, theirs *os.File, err error) {
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fds[0]), "upgrade-cancel")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		syscall.Close(fds[1])
		return nil, nil, fmt.Errorf("socketpair gave a %T", c)
	}
	return uc, os.NewFile(uintptr(fds[1]), "upgrade-cancel"), nil
}

func closeOnExec(fd int) { syscall.CloseOnExec(fd) }

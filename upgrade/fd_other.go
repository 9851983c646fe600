//go:build !unix

package upgrade

import (
	"net"
	"os"
	"syscall"
)

func dupFD(syscall.Conn) (int, error)                              { return -1, ErrUnsupported }
func closeFD(int)                                                  {}
func relayPair() (*net.UnixConn, int, error)                       { return nil, -1, ErrUnsupported }
func closeOnExec(int)                                              {}
func spawn(string, []string, []string, []int) (*os.Process, error) { return nil, ErrUnsupported }

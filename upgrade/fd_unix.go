//go:build unix

package upgrade

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// The new process is started with syscall.ForkExec and raw descriptors,
// not os/exec: os/exec takes each extra file's descriptor with
// (*os.File).Fd, which puts it in blocking mode, and a listening socket's
// mode is shared by every process and descriptor that has it. A goroutine
// of the old process would then block in accept(2), and closing the
// listener would wait for it.

// dupFD returns a descriptor of c's, closed on exec, without changing its
// mode.
func dupFD(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	dup, derr := -1, error(nil)
	err = rc.Control(func(fd uintptr) {
		syscall.ForkLock.RLock() // no exec between the dup and close-on-exec
		dup, derr = syscall.Dup(int(fd))
		if derr == nil {
			syscall.CloseOnExec(dup)
		}
		syscall.ForkLock.RUnlock()
	})
	if err == nil {
		err = derr
	}
	return dup, err
}

func closeFD(fd int) { syscall.Close(fd) }

// relayPair returns the two ends of the cancel relay: a datagram socket
// pair, so that one cancel key is one message. Both are closed on exec;
// spawn gives the new process its end.
func relayPair() (ours *net.UnixConn, theirs int, err error) {
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, -1, err
	}
	f := os.NewFile(uintptr(fds[0]), "upgrade-cancel")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		syscall.Close(fds[1])
		return nil, -1, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		syscall.Close(fds[1])
		return nil, -1, fmt.Errorf("socketpair gave a %T", c)
	}
	return uc, fds[1], nil
}

// spawn starts path with argv and env; its descriptors 0 (/dev/null), 1
// and 2 (this process's) and then fds, from 3 on.
func spawn(path string, argv, env []string, fds []int) (*os.Process, error) {
	null, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(null)
	files := []uintptr{uintptr(null), 1, 2}
	for _, fd := range fds {
		files = append(files, uintptr(fd))
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env, Files: files})
	if err != nil {
		return nil, err
	}
	return os.FindProcess(pid)
}

func closeOnExec(fd int) { syscall.CloseOnExec(fd) }

package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// process is a router process this program started: pgswitch, PgBouncer or
// HAProxy.
type process struct {
	name string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited and been waited for
	err  error         // how it exited; set before done is closed
}

// stopGrace is how long a process gets between SIGTERM and SIGKILL.
const stopGrace = 10 * time.Second

// startProcess starts cmd and waits until it listens on port. The process
// gets a process group of its own, so that a Ctrl-C in the terminal reaches
// only this program, which then stops it; and it is killed should this
// program die without stopping it.
func startProcess(ctx context.Context, name string, port int, cmd *exec.Cmd) (*process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, port: port, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := p.waitListening(ctx); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited is nil while the process runs, else how it ended.
func (p *process) exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return fmt.Errorf("%s exited", p.name)
		}
		return fmt.Errorf("%s exited: %w", p.name, p.err)
	default:
		return nil
	}
}

func (p *process) waitListening(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if err := p.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing listens on %s after 30s", p.name, addr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, and SIGKILL if the process has not exited stopGrace
// later; it returns once the process is gone. Calling it again does nothing.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// freePort asks the kernel for a free loopback port. Another program could
// take it before the router binds it; the router then fails to start and
// says so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

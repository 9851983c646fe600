package router

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/pgswitch/pgswitch/config"
)

// ListenUnix listens on cfg's Unix socket for port (unix_socket_dir's
// .s.PGSQL.<port>), with unix_socket_mode and its owner and group. A socket
// file that nothing accepts on any more, left by a process that died, is
// removed first; one that a live process accepts on is never taken. The
// listener removes the file when it is closed.
func ListenUnix(cfg *config.Config, port int, log *slog.Logger) (net.Listener, error) {
	path := cfg.UnixSocketPath(port)
	if path == "" {
		return nil, errors.New("unix_socket_dir is not set")
	}
	stale, err := staleSocket(path)
	if err != nil {
		return nil, err
	}
	if stale {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("unix_socket_dir: remove stale socket: %w", err)
		}
		log.Info("removed a stale Unix socket left by a process that is gone", "path", path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("unix_socket_dir: %w", err)
	}
	fail := func(err error) (net.Listener, error) {
		ln.Close() // removes the file
		return nil, fmt.Errorf("unix_socket_dir: %w", err)
	}
	uid, gid, err := cfg.UnixSocketOwnership()
	if err != nil {
		return fail(err)
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Chown(path, uid, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(path, cfg.UnixSocketFileMode()); err != nil {
		return fail(err)
	}
	return ln, nil
}

// staleSocket reports whether path is a socket nothing accepts on (true),
// or does not exist (false). A socket that answers belongs to a live
// process, and anything else is not ours to remove: both are errors.
func staleSocket(path string) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("unix_socket_dir: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return false, fmt.Errorf("unix_socket_dir: %s exists and is not a socket; not removed", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return false, fmt.Errorf("unix_socket_dir: %s is in use: another process (pgswitch, PgBouncer or PostgreSQL on the same port?) accepts connections on it", path)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true, nil
	}
	return false, fmt.Errorf("unix_socket_dir: %s: cannot tell whether it is in use: %w", path, err)
}

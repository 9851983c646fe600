package pgcluster

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// owner is the OS account the servers run as. PostgreSQL refuses to run as root,
// so under root every server command runs as the "postgres" user and every
// directory the cluster creates is handed to it.
type owner struct {
	cred *syscall.Credential // nil: run as ourselves
}

func currentOwner() (owner, error) {
	if os.Geteuid() != 0 {
		return owner{}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return owner{}, fmt.Errorf("running as root needs an OS user \"postgres\" to run the servers: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return owner{}, fmt.Errorf("user postgres: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return owner{}, fmt.Errorf("user postgres: gid %q: %w", u.Gid, err)
	}
	return owner{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}, nil
}

// chown hands path and everything below it to the owner.
func (o owner) chown(path string) error {
	if o.cred == nil {
		return nil
	}
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(o.cred.Uid), int(o.cred.Gid))
	})
}

// appendFile appends to (or creates) a file the servers read, and hands it to them.
func (o owner) appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return o.chown(path)
}

// run runs a PostgreSQL tool as the owner in dir and returns its combined output;
// the error carries that output, which is where initdb and pg_ctl explain themselves.
func (o owner) run(ctx context.Context, dir, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = toolEnv()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred}
	// pg_ctl start leaves a daemon behind; should it ever keep our pipe open,
	// don't wait for it to exit.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if err != nil {
		return text, fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(redact(args), " "), err, text)
	}
	return text, nil
}

// toolEnv is our environment without PG* variables, so that a developer's
// PGDATA, PGPORT or PGPASSWORD cannot steer the tools to another server.
func toolEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "TZ=UTC")
}

// redact hides passwords in connection strings shown in errors.
func redact(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if j := strings.Index(a, "password="); j >= 0 {
			end := strings.IndexByte(a[j:], ' ')
			if end < 0 {
				a = a[:j] + "password=xxx"
			} else {
				a = a[:j] + "password=xxx" + a[j+end:]
			}
		}
		out[i] = a
	}
	return out
}

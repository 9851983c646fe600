package proc

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Tick is one clock tick of /proc/PID/stat's CPU times (USER_HZ, 100 a
// second on every Linux architecture Go supports).
const Tick = 10 * time.Millisecond

// stat is the part of /proc/PID/stat after the command name: field 3 (state)
// is stat[0], so field n of proc(5) is stat[n-3].
type stat []string

func readStat(path string) (pid int, s stat, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	// The command name is in parentheses and may itself contain spaces or ')'.
	end := strings.LastIndexByte(string(b), ')')
	if end < 0 || end+2 > len(b) {
		return 0, nil, fmt.Errorf("%s: unexpected format", path)
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(b[:strings.IndexByte(string(b), '(')])))
	if err != nil {
		return 0, nil, fmt.Errorf("%s: pid: %w", path, err)
	}
	s = strings.Fields(string(b[end+2:]))
	if len(s) < 15 {
		return 0, nil, fmt.Errorf("%s: %d fields after the name, want at least 15", path, len(s))
	}
	return pid, s, nil
}

func (s stat) field(n int) uint64 {
	v, _ := strconv.ParseUint(s[n-3], 10, 64)
	return v
}

func (s stat) ppid() int { return int(s.field(4)) }

// own is utime + stime: CPU the process's threads used, exited threads included.
func (s stat) own() uint64 { return s.field(14) + s.field(15) }

// waited is cutime + cstime: CPU of children the process has waited for.
func (s stat) waited() uint64 { return s.field(16) + s.field(17) }

// CPU is the user+system CPU time process pid has used so far, in clock
// ticks (see Tick).
func CPU(pid int) (uint64, error) {
	user, system, err := Times(pid)
	return user + system, err
}

// Times is the user and the system CPU time process pid has used so far,
// apart, in clock ticks (see Tick): which of the two a router spends
// tells its own code's cost from its system calls'.
func Times(pid int) (user, system uint64, err error) {
	_, s, err := readStat(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return s.field(14), s.field(15), nil
}

// RSS is process pid's resident set size in KiB (VmRSS).
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("pid %d: no VmRSS in /proc/%d/status", pid, pid)
}

// ServerCPU is the CPU time, in clock ticks, that the PostgreSQL servers
// whose data directories are given have used so far: each postmaster's own
// and that of its children it has waited for (backends that exited), plus
// each live child's own. The difference of two readings is what the servers
// spent in between, whatever backends came and went.
func ServerCPU(dataDirs []string) (uint64, error) {
	postmasters := map[int]bool{}
	for _, dir := range dataDirs {
		b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
		if err != nil {
			return 0, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		if err != nil {
			return 0, fmt.Errorf("%s: postmaster.pid: %w", dir, err)
		}
		postmasters[pid] = true
	}
	paths, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	var total uint64
	for _, p := range paths {
		pid, s, err := readStat(p)
		if err != nil {
			continue // gone since the Glob
		}
		switch {
		case postmasters[pid]:
			total += s.own() + s.waited()
		case postmasters[s.ppid()]:
			total += s.own()
		}
	}
	return total, nil
}

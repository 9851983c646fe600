package proc

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestReadStat(t *testing.T) {
	// A command name may hold spaces and parentheses; fields count from the
	// last ')'. utime 14, stime 15, cutime 16, cstime 17, ppid 4.
	line := "4242 (post (gres) x) S 77 4242 4242 0 -1 4194560 500 0 0 0 120 30 7 3 20 0 1 0 100 1000 10\n"
	path := filepath.Join(t.TempDir(), "stat")
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	pid, s, err := readStat(path)
	if err != nil {
		t.Fatal(err)
	}
	if pid != 4242 || s.ppid() != 77 || s.own() != 150 || s.waited() != 10 {
		t.Errorf("got pid %d ppid %d own %d waited %d, want 4242 77 150 10", pid, s.ppid(), s.own(), s.waited())
	}
}

func TestOwnProcess(t *testing.T) {
	if _, err := CPU(os.Getpid()); err != nil {
		t.Fatalf("CPU of this process: %v", err)
	}
	// Work in user mode (no system call but the reads of /proc) shows as
	// user time, not as system time.
	user0, sys0, err := Times(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x, user, sys := uint64(1), user0, sys0
	for deadline := time.Now().Add(time.Minute); user < user0+5 && time.Now().Before(deadline); {
		for range 1 << 20 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		if user, sys, err = Times(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if user-user0 < 5 || sys-sys0 >= user-user0 {
		t.Fatalf("after user-mode work (%x): user time grew by %d ticks, system time by %d; want user ≥ 5 and more than system", x, user-user0, sys-sys0)
	}
	rss, err := RSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("got RSS %d KiB, %v; want more than 0", rss, err)
	}
}

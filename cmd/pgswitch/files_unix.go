//go:build unix

package main

import "syscall"

// raiseFileLimit raises the soft limit on open files to the hard limit and
// returns the limit in force (0: unlimited). Go's runtime raises it to one
// below the hard limit at start; pgswitch takes all it may have.
func raiseFileLimit() (limit uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return rl.Cur, err
		}
		rl = want
	}
	if rl.Cur == ^uint64(0) { // RLIM_INFINITY
		return 0, nil
	}
	return rl.Cur, nil
}

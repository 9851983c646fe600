//go:build !unix

package main

// raiseFileLimit does nothing where there is no RLIMIT_NOFILE; 0 means
// the limit is unknown.
func raiseFileLimit() (limit uint64, err error) { return 0, nil }

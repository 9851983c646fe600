// Package threads sets how many threads run pgswitch's Go code at once
// (GOMAXPROCS, the configuration's workers): a fixed number, or by default
// one while one is enough and the CPUs' count when the load needs more. It
// reads the load it is given (waits for server connections, the process's
// CPU time); it knows nothing of pools or sessions.
package threads

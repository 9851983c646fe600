// Package proc reads what the benchmarks under bench/ measure of a running
// process from /proc: the CPU time it used, its resident memory, and the CPU
// time of a PostgreSQL cluster's servers with their backends.
//
// It does not start, stop or signal processes; the benchmarks own those.
package proc

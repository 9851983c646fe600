// Package checkstate owns the up/down decision of one checked server, as
// HAProxy's inter, fall, rise and downinter define it: down after fall
// consecutive failed checks, up after rise consecutive successes, checked
// every inter while up and every downinter while down.
//
// It does not run checks, keep time or know what a check asks; pgswitch's
// PostgreSQL checks (package health) and pgswitch-edge's HTTP and TCP checks
// both drive it, so the two agree on what fall and rise mean.
package checkstate

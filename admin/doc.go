// Package admin owns the admin console: the virtual databases "pgswitch" and
// "pgbouncer" where operators run SHOW, PAUSE, RESUME, RELOAD… with psql,
// and the Prometheus metrics listener.
//
// It reads and steers the router through its exported methods; it does not
// route client traffic.
package admin

// Package admin owns the admin console: the virtual databases "pgswitch" and
// "pgbouncer" where operators run SHOW, PAUSE, RESUME, RELOAD… with psql,
// and the Prometheus metrics listener.
//
// Every command is a line of one table (commands.go): its name, arguments,
// who may run it and its handler; a new SHOW command is a line there and a
// function of a router.Snapshot (show.go). The SHOW commands and the
// metrics read the router through that one snapshot (router.Inspect); the
// commands that change something (actions.go) orchestrate the router's few
// primitives here. It does not route client traffic.
package admin

// Package pgcluster starts a disposable PostgreSQL primary with streaming hot-standby
// replicas on loopback ports, for the integration tests (one cluster per test package,
// see Main) and for `pgswitch demo`.
//
// It does not know about pgswitch itself: it only runs initdb, pg_ctl and
// pg_basebackup and answers with where the servers listen.
package pgcluster

// Package wire owns the PostgreSQL wire protocol at pgswitch's edges: message
// framing, the startup/TLS/cancel negotiation, client authentication (the
// server side of SCRAM-SHA-256 and md5), how server certificates are
// verified (libpq's sslmode rules) and the one client-facing error type.
//
// It does not route, pool or know about configuration; no other pgswitch
// package is imported from here.
package wire

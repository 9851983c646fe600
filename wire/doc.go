// Package wire owns the PostgreSQL wire protocol at pgswitch's edges: message
// framing, the startup/TLS/cancel negotiation, client authentication (the
// server side of SCRAM-SHA-256, md5 and cleartext passwords), how server
// certificates are verified (libpq's sslmode rules), the answer to a
// server's authentication request from what clients proved (pass-through),
// and the one client-facing error type.
//
// It does not route, pool or know about configuration; no other pgswitch
// package is imported from here.
package wire

// Package pool owns server connections: dialing and authenticating them with
// pgconn, keeping them in per-(database, user, server) pools with a FIFO wait
// queue, leasing them to clients, and the pump that forwards each server's
// answers to the client it is leased to and ends the lease when the server is
// at rest.
//
// It knows no SQL: what the client gets for each answer is decided by the
// Answers the router supplies. It does not decide which server a query goes
// to (router) nor whether a server is healthy (health).
package pool

// Package pool owns server connections: dialing and authenticating them with
// pgconn, keeping them in per-(database, user, server) pools with a FIFO wait
// queue, and the pump that forwards each server's answers to the client it is
// leased to and returns the connection when the server reports it idle.
//
// It does not decide which server a query goes to (router) nor whether a server
// is healthy (health).
package pool

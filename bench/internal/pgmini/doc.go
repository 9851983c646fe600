// Package pgmini is the little of PostgreSQL's protocol that the I/O-model
// prototypes under bench/ (iomodel, evlib) share: a client's trust login,
// a server connection's login with pgconn, and following a server's answer
// to its ReadyForQuery.
//
// It is not a pooler and not pgswitch's protocol code: no authentication,
// no cancel keys, no errors sent to clients; wire and router own those.
package pgmini

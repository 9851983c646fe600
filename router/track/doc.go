// Package track keeps the session state pgswitch must know exactly under
// transaction pooling: what each server connection carries (settings,
// prepared statements, the unnamed statement), what each client asked for,
// and the requests a server connection owes answers to. It decides what
// becomes of every answer (forwarded, dropped, replaced, or read by
// pgswitch) and updates both records only from what the server confirmed.
//
// It does not route, pool or read sockets: router sends, pool pumps.
package track

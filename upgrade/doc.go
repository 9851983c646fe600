// Package upgrade owns pgswitch's binary upgrade: starting the new binary
// with the running process's listening sockets, learning when it serves
// them, and passing the cancel requests it receives for the old process's
// clients back to it; and, in the new process, taking those sockets over.
//
// It does not decide what becomes of the old process's clients (router
// drains them) nor read the configuration (cmd/pgswitch names the
// listeners).
package upgrade

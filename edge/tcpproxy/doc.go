// Package tcpproxy owns a tcp listen: each connection handed to it is
// forwarded byte for byte, both ways, to a server the backend pool chooses
// (connect checks, fall/rise, backups, maxconn with a queue), until either
// side closes or the session stays silent past its timeout.
//
// It does not look at the bytes, and does not open listening sockets.
package tcpproxy

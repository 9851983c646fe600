// Package backend owns a listen's servers: their health checks (HTTP or TCP,
// on the shared checkstate machine), their maxconn limits with a FIFO queue
// of waiting requests, and the choice of a server for each request (smooth
// weighted round robin, backups only when no other server is up).
//
// It does not proxy bytes: httpproxy and tcpproxy ask it for a server and
// give the server back when done.
package backend

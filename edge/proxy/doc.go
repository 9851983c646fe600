// Package proxy owns a running pgswitch-edge: its listening sockets, the
// configuration in force (swapped whole on reload, with sockets kept where
// the address stays), the health check loops, the admin endpoint (/metrics,
// /status) and graceful shutdown.
//
// It does not serve requests itself: httpproxy and tcpproxy do, for the
// configuration they were made with.
package proxy

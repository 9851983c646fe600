// Package metrics owns pgswitch-edge's Prometheus metrics: request counts by
// listen, server and status class, the latency histogram, TLS handshakes,
// TCP connections, and the servers' state (up, in flight, queue length,
// checks) read from the pools at scrape time.
//
// It does not serve HTTP: the proxy mounts its handler on the admin address.
package metrics

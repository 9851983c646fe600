// Package httpproxy owns an http listen: the client connections it is handed
// (TLS handshake, the http-request and keep-alive timeouts that answer a
// slow client with 408), the forwarding of requests to its servers over
// HTTP/1.1 keep-alive or verified HTTPS, X-Forwarded-* headers, error
// answers and the access log line of every request. HTTP/1.1 clients are
// served by its own loop (h1.go), which parks idle connections without a
// goroutine or buffers; HTTP/2 by another (h2.go, h2stream.go,
// h2exchange.go: a goroutine per connection and one per stream in
// flight); the HTTP/1.x requests the first hands over, and HTTP/2 where
// the listen has lean_http2: false, by net/http's server and
// httputil.ReverseProxy.
//
// It does not open listening sockets or choose servers: the proxy package
// accepts connections and hands them over, and backend picks the server.
package httpproxy

// Package httpproxy owns an http listen: the client connections it is handed
// (TLS handshake, the http-request and keep-alive timeouts that answer a
// slow client with 408), the forwarding of requests to its servers over
// HTTP/1.1 keep-alive or verified HTTPS, X-Forwarded-* headers, error
// answers and the access log line of every request. HTTP/1.1 clients are
// served by its own loop (h1.go), which parks idle connections without a
// goroutine or buffers; HTTP/2, and the HTTP/1.x requests that loop hands
// over, by net/http's server and httputil.ReverseProxy, or HTTP/2 by a
// lean loop of its own (h2.go, h2stream.go) where the listen has
// lean_http2.
//
// It does not open listening sockets or choose servers: the proxy package
// accepts connections and hands them over, and backend picks the server.
package httpproxy

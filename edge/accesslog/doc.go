// Package accesslog owns the request log: one line per request in Common Log
// Format (or combined, with referer and user agent), written to stderr,
// stdout or a file.
//
// It does not decide what is logged (dontlognull is the proxy's call) and
// never writes credentials: the authuser field is always "-".
package accesslog

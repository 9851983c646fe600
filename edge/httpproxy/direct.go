package httpproxy

import (
	"errors"
	"io"
	"net/http"
	"strings"
)

// serveDirect forwards an HTTP/2 request without a body to t's server and
// writes the answer, without httputil.ReverseProxy: its request clone,
// its hop-by-hop sweeps (eighteen header lookups by canonicalized name per
// request) and its header copies were a sixth of the user-space
// instructions of an HTTP/2 request (callgrind). An HTTP/2 request carries
// no connection-specific field (net/http's server refuses them), so the
// head is the request's fields but the X-Forwarded-* the client sent, and
// ours. It reports false, doing nothing, for what it leaves to
// ReverseProxy: a method, target or Host outside the usual characters.
//
// Interim (1xx) answers are not passed on here, as ReverseProxy would.
func (t *target) serveDirect(w *recorder, r *http.Request) bool {
	if r.Method == http.MethodConnect || !isToken(r.Method) || r.RequestURI == "" || r.RequestURI[0] != '/' || hasCTL(r.RequestURI) ||
		strings.IndexByte(r.RequestURI, ' ') >= 0 || !isPlainHost(r.Host) {
		return false
	}
	tr := t.transport
	var resp *http.Response
	var err error
	for attempt := 0; ; attempt++ {
		var c *serverConn
		var reused bool
		c, reused, err = tr.conn(r.Context())
		if err != nil {
			break
		}
		c.head = appendDirectHead(c.head[:0], r, t.hostHeader, t.forward)
		resp, err = tr.exchange(c, r, true)
		if err == nil {
			break
		}
		c.Close()
		if reused && attempt == 0 && errors.Is(err, errNoAnswer) && idempotent(r) && r.Context().Err() == nil {
			continue
		}
		break
	}
	if err != nil {
		t.l.proxyError(w, r, t.srv, err)
		return true
	}
	dst := w.Header()
	connection := resp.Header["Connection"]
	for k, vv := range resp.Header {
		switch k {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
			"Te", "Trailer", "Transfer-Encoding", "Upgrade":
			continue
		}
		if len(connection) > 0 && listedInValues(connection, k) {
			continue
		}
		dst[k] = vv
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		names := make([]string, 0, announced)
		for k := range resp.Trailer {
			names = append(names, k)
		}
		dst["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	buf := copyBuffers.Get()
	_, cerr := copyBody(w, resp.Body, buf)
	copyBuffers.Put(buf)
	resp.Body.Close()
	if cerr != nil {
		// The answer is cut: net/http resets the stream.
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		dst[http.TrailerPrefix+k] = vv
	}
	return true
}

// copyBody copies an answer's body to the client; the error is the
// server's side's or the client's.
func copyBody(w *recorder, body io.Reader, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := body.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err != nil {
			if err == io.EOF {
				return total, nil
			}
			return total, err
		}
	}
}

// appendDirectHead appends the HTTP/1.1 head of r, an HTTP/2 request
// without a body, as serveDirect forwards it.
func appendDirectHead(b []byte, r *http.Request, host string, forward bool) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, r.RequestURI...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	if host == "" {
		host = r.Host
	}
	b = append(b, host...)
	b = append(b, "\r\n"...)
	for k, vv := range r.Header {
		switch k {
		case "Host", "Content-Length", "X-Forwarded-Host", "X-Forwarded-Proto", "Proxy-Authorization", "Proxy-Authenticate", "Trailer":
			continue
		case "Te":
			if len(vv) > 0 && vv[0] == "trailers" {
				b = append(b, "Te: trailers\r\n"...)
			}
			continue
		case "X-Forwarded-For":
			if !forward {
				continue
			}
		}
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if forward {
		b = append(b, "X-Forwarded-For: "...)
		b = append(b, remoteHost(r.RemoteAddr)...)
		b = append(b, "\r\nX-Forwarded-Host: "...)
		b = append(b, r.Host...)
		b = append(b, "\r\nX-Forwarded-Proto: https\r\n"...)
	}
	return append(b, "\r\n"...)
}

// listedInValues reports whether name is among the comma-separated tokens
// of Connection values vv, compared without case.
func listedInValues(vv []string, name string) bool {
	for _, v := range vv {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.Trim(tok, " \t"), name) {
				return true
			}
		}
	}
	return false
}

package httpproxy

import "net/http"

// appendRequest appends the head of req, a request without a body, as
// (*http.Request).Write would send it to a server: request line, Host,
// User-Agent (absent or empty: none), Content-Length: 0 for POST, PUT and
// PATCH, then the other header fields. It reports false, appending nothing,
// for what it leaves to req.Write: a host or method outside the usual
// characters, a URL with Opaque or control characters, req.Close, and a
// header field name or value that req.Write would drop or rewrite.
//
// Unlike req.Write it does not sort the fields by name (the order of fields
// with different names carries no meaning, RFC 9110 section 5.3), and it
// allocates nothing: req.Write's fmt.Fprintf, transfer writer, sorted key
// list and value replacer were an eighth of the proxy's user-space
// instructions per request.
func appendRequest(b []byte, req *http.Request) ([]byte, bool) {
	if req.Close || req.ContentLength != 0 || req.Method == http.MethodConnect || req.URL == nil || req.URL.Opaque != "" {
		return b, false
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	query := req.URL.RawQuery
	if !isToken(method) || !isPlainHost(host) || hasCTL(path) || hasCTL(query) {
		return b, false
	}
	ua := "Go-http-client/1.1" // req.Write's, when the field is absent
	if v, ok := req.Header["User-Agent"]; ok {
		ua = ""
		if len(v) > 0 {
			ua = v[0]
		}
	}
	if !cleanValue(ua) {
		return b, false
	}

	start := len(b)
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, path...)
	if query != "" || req.URL.ForceQuery {
		b = append(b, '?')
		b = append(b, query...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	if ua != "" {
		b = append(b, "User-Agent: "...)
		b = append(b, ua...)
		b = append(b, "\r\n"...)
	}
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		b = append(b, "Content-Length: 0\r\n"...)
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		if !isToken(k) {
			return b[:start], false
		}
		for _, v := range vv {
			if !cleanValue(v) {
				return b[:start], false
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...), true
}

// isToken reports whether s is a non-empty RFC 9110 token (a method or a
// field name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

var tokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// isPlainHost reports whether a Host value needs nothing of what req.Write
// does to one (Punycode, removing an IPv6 zone, refusing bad bytes): names,
// IPv4 and IPv6 addresses, and a port.
func isPlainHost(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// hasCTL reports whether s holds a control byte, which req.Write refuses in
// a request target.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// cleanValue reports whether req.Write would send v as it is: no CR or LF
// (it turns them into spaces) and no space or tab at either end (it trims
// them).
func cleanValue(v string) bool {
	if v == "" {
		return true
	}
	if c := v[0]; c == ' ' || c == '\t' {
		return false
	}
	if c := v[len(v)-1]; c == ' ' || c == '\t' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			return false
		}
	}
	return true
}

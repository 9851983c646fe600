package httpproxy

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
)

// readAnswer parses the head of an ordinary answer from what br holds
// already: "HTTP/1.1", a final status other than 204 and 304, to a request
// other than HEAD, with one valid Content-Length, no Transfer-Encoding,
// Trailer or Pragma field, every line ending in CRLF, no folded line, and
// field names and values as textproto accepts them. It returns the
// response (Body unset) and the body's length, and consumes the head. For
// anything else it consumes nothing and reports false: http.ReadResponse
// reads that answer, and the fuzz test holds the two to the same result
// wherever readAnswer takes one.
//
// Where http.ReadResponse allocates a textproto.Reader, a line, a string per
// value, a transfer reader, a limited reader and a body (13% of the
// proxy's user-space instructions per request, callgrind), readAnswer
// allocates the head as one string, the Header map and its value slices,
// and the Response.
func readAnswer(br *bufio.Reader, req *http.Request) (*http.Response, int64, bool) {
	if req.Method == http.MethodHead {
		return nil, 0, false
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 {
		return nil, 0, false
	}
	head := string(buf[:end+2]) // every line with its CRLF

	status, rest, ok := cutLine(head)
	if !ok || len(status) < 12 || status[:9] != "HTTP/1.1 " || len(status) > 12 && status[12] != ' ' {
		return nil, 0, false
	}
	status = status[9:] // "200 OK", as http.ReadResponse sets Response.Status
	code := 0
	for _, c := range []byte(status[:3]) {
		if c < '0' || c > '9' {
			return nil, 0, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, 0, false
	}

	n := strings.Count(rest, "\n")
	h := make(http.Header, n)
	vals := make([]string, n)
	length, close := int64(-1), false
	for rest != "" {
		var line string
		if line, rest, ok = cutLine(rest); !ok {
			return nil, 0, false
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil, 0, false
		}
		k, v := line[:colon], trimOWS(line[colon+1:])
		valid, canonical := fieldName(k)
		if !valid || !fieldValue(v) {
			return nil, 0, false
		}
		if !canonical {
			k = http.CanonicalHeaderKey(k)
		}
		switch k {
		case "Transfer-Encoding", "Trailer", "Pragma":
			return nil, 0, false
		case "Content-Length":
			if length >= 0 {
				return nil, 0, false
			}
			l, err := strconv.ParseUint(v, 10, 63)
			if err != nil {
				return nil, 0, false
			}
			length = int64(l)
		case "Connection":
			if hasToken(v, "close") {
				close = true
				continue // http.ReadResponse drops it then
			}
		}
		if prev, ok := h[k]; ok {
			h[k] = append(prev, v)
			continue
		}
		vals[0] = v
		h[k], vals = vals[:1:1], vals[1:]
	}
	if length < 0 {
		return nil, 0, false
	}
	if close && len(h["Connection"]) > 0 {
		// A Connection field besides the one with close: left whole to
		// http.ReadResponse, which drops them all.
		return nil, 0, false
	}
	br.Discard(end + 4)
	return &http.Response{Status: status, StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: length, Close: close, Request: req}, length, true
}

// cutLine cuts s after its first line, which must end in CRLF and hold no
// other CR or LF, and not begin with a space or tab (a folded line).
func cutLine(s string) (line, rest string, ok bool) {
	i := strings.IndexByte(s, '\n')
	if i < 1 || s[i-1] != '\r' {
		return "", "", false
	}
	line = s[:i-1]
	if line == "" || line[0] == ' ' || line[0] == '\t' || strings.IndexByte(line, '\r') >= 0 {
		return "", "", false
	}
	return line, s[i+1:], true
}

// trimOWS trims spaces and tabs at both ends of v, as textproto does.
func trimOWS(v string) string {
	for v != "" && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for v != "" && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// fieldName reports whether k is a token, and whether it is in canonical
// form already ("Content-Type": upper case first and after each hyphen,
// lower case elsewhere).
func fieldName(k string) (valid, canonical bool) {
	canonical, upper := true, true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !tokenByte[c] {
			return false, false
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	return true, canonical
}

// fieldValue reports whether textproto accepts every byte of v: no control
// byte but tab.
func fieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

var crlfcrlf = []byte("\r\n\r\n")

// hasToken reports whether the comma-separated list v holds token,
// compared without case.
func hasToken(v, token string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.Trim(t, " \t"), token) {
			return true
		}
	}
	return false
}

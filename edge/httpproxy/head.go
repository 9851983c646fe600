package httpproxy

import "bytes"

// fieldKind is what the lean HTTP/1.1 loop needs to know about a field
// name; ordinary fields are forwarded as they came.
type fieldKind uint8

const (
	fieldOther fieldKind = iota
	fieldHost
	fieldContentLength
	fieldTransferEncoding
	fieldConnection
	fieldUpgrade
	fieldExpect
	fieldTE
	fieldXFF  // X-Forwarded-For
	fieldXFwd // X-Forwarded-Host, X-Forwarded-Proto: replaced by the proxy's
	fieldUserAgent
	fieldReferer
	fieldTrailer
	fieldHop // Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization
)

// span is a slice of a head by offsets, so that a parsed head holds no
// pointers into a pooled buffer it does not own.
type span struct{ start, end int32 }

func (s span) of(b []byte) []byte { return b[s.start:s.end] }

// field is one header line of a head.
type field struct {
	name, value span
	kind        fieldKind
}

// maxFields is how many fields a head parsed by the lean loop holds at
// most, whatever max_headers says: a head with more is handed to net/http
// (which answers 431 past max_headers).
const maxFields = 128

// reqHead is a request head the lean loop can forward as it is: an
// origin-form HTTP/1.1 request without an Upgrade or an Expect, whose body
// (if any) has a Content-Length.
type reqHead struct {
	method, target span
	line           span // the request line, without its CRLF
	host           span
	ua, referer    span
	end            int // the head's length, final CRLF included
	// length is the body's (Content-Length), 0 when none.
	length int64
	close  bool
	// conn holds the values of the Connection fields: the field names
	// they list are hop-by-hop (RFC 9110 section 7.6.1).
	conn   [4]span
	nconn  int
	nf     int
	fields [maxFields]field
}

// headVerdict is what parseHead made of the bytes it was given.
type headVerdict uint8

const (
	// headMore: no complete head yet; read more.
	headMore headVerdict = iota
	// headOK: a head the lean loop forwards.
	headOK
	// headHandOff: a head, complete or not, that net/http serves instead:
	// malformed ones (it answers 400), ones past its limits (431), and
	// requests with a chunked body, Expect, Upgrade, HTTP/1.0, an absolute
	// or asterisk target.
	headHandOff
)

// parseHead parses the request head at the start of b (RFC 9112 section
// 2-5), strictly: CRLF line ends, no folded lines, no whitespace before a
// field's colon, token methods and field names, a target of visible ASCII,
// exactly one Host. scanned is how much of b an earlier call found without
// the head's end, so that a head arriving a byte at a time is not scanned
// from its start each time. maxFieldCount is the listen's max_headers.
func parseHead(h *reqHead, b []byte, scanned, maxFieldCount int) headVerdict {
	from := max(scanned-3, 0)
	i := bytes.Index(b[from:], crlfcrlf)
	if i < 0 {
		// A bare LF ends lines for net/http: hand over what ends so.
		if bytes.Contains(b[from:], lflf) {
			return headHandOff
		}
		return headMore
	}
	end := from + i + 4
	if end > 1<<30 {
		return headHandOff
	}
	*h = reqHead{end: end}
	p := b[:end]

	// request-line = method SP request-target SP HTTP-version CRLF
	eol := bytes.IndexByte(p, '\n')
	if eol < 1 || p[eol-1] != '\r' {
		return headHandOff
	}
	line := p[:eol-1]
	h.line = span{0, int32(len(line))}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !isTokenBytes(line[:sp]) {
		return headHandOff
	}
	h.method = span{0, int32(sp)}
	rest := line[sp+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != "HTTP/1.1" {
		return headHandOff
	}
	target := rest[:sp2]
	if target[0] != '/' {
		return headHandOff
	}
	for _, c := range target {
		if c <= ' ' || c >= 0x7f {
			return headHandOff
		}
	}
	h.target = span{int32(sp + 1), int32(sp + 1 + sp2)}

	nhost, sawLength := 0, false
	pos := eol + 1
	for pos < end-2 {
		nl := bytes.IndexByte(p[pos:], '\n')
		if nl < 1 || p[pos+nl-1] != '\r' {
			return headHandOff
		}
		ln := p[pos : pos+nl-1]
		colon := bytes.IndexByte(ln, ':')
		if colon <= 0 || !isTokenBytes(ln[:colon]) {
			// Also a folded line (it begins with a space or tab).
			return headHandOff
		}
		vs, ve := colon+1, len(ln)
		for vs < ve && (ln[vs] == ' ' || ln[vs] == '\t') {
			vs++
		}
		for ve > vs && (ln[ve-1] == ' ' || ln[ve-1] == '\t') {
			ve--
		}
		for _, c := range ln[vs:ve] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return headHandOff
			}
		}
		if h.nf == maxFields || h.nf == maxFieldCount {
			return headHandOff
		}
		f := &h.fields[h.nf]
		h.nf++
		f.name = span{int32(pos), int32(pos + colon)}
		f.value = span{int32(pos + vs), int32(pos + ve)}
		f.kind = kindOf(ln[:colon])
		v := ln[vs:ve]
		switch f.kind {
		case fieldHost:
			nhost++
			h.host = f.value
			if !isHostBytes(v) {
				return headHandOff
			}
		case fieldContentLength:
			// Digits only; a second Content-Length is net/http's to judge.
			if len(v) == 0 || len(v) > 18 || sawLength {
				return headHandOff
			}
			for _, c := range v {
				if c < '0' || c > '9' {
					return headHandOff
				}
				h.length = h.length*10 + int64(c-'0')
			}
			sawLength = true
		case fieldTransferEncoding, fieldUpgrade, fieldExpect, fieldTrailer:
			return headHandOff
		case fieldConnection:
			if h.nconn == len(h.conn) {
				return headHandOff
			}
			h.conn[h.nconn] = f.value
			h.nconn++
			if hasTokenBytes(v, "close") {
				h.close = true
			}
		case fieldUserAgent:
			h.ua = f.value
		case fieldReferer:
			h.referer = f.value
		}
		pos += nl + 1
	}
	if nhost != 1 {
		return headHandOff
	}
	return headOK
}

var lflf = []byte("\n\n")

// kindOf classifies a field name, compared without case.
func kindOf(name []byte) fieldKind {
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			return fieldTE
		}
	case 4:
		if equalFold(name, "host") {
			return fieldHost
		}
	case 6:
		if equalFold(name, "expect") {
			return fieldExpect
		}
	case 7:
		switch {
		case equalFold(name, "upgrade"):
			return fieldUpgrade
		case equalFold(name, "referer"):
			return fieldReferer
		case equalFold(name, "trailer"):
			return fieldTrailer
		}
	case 10:
		switch {
		case equalFold(name, "connection"):
			return fieldConnection
		case equalFold(name, "user-agent"):
			return fieldUserAgent
		case equalFold(name, "keep-alive"):
			return fieldHop
		}
	case 14:
		if equalFold(name, "content-length") {
			return fieldContentLength
		}
	case 15:
		if equalFold(name, "x-forwarded-for") {
			return fieldXFF
		}
	case 16:
		if equalFold(name, "x-forwarded-host") || equalFold(name, "proxy-connection") {
			if name[0]|0x20 == 'x' {
				return fieldXFwd
			}
			return fieldHop
		}
	case 17:
		switch {
		case equalFold(name, "transfer-encoding"):
			return fieldTransferEncoding
		case equalFold(name, "x-forwarded-proto"):
			return fieldXFwd
		}
	case 18:
		if equalFold(name, "proxy-authenticate") {
			return fieldHop
		}
	case 19:
		if equalFold(name, "proxy-authorization") {
			return fieldHop
		}
	}
	return fieldOther
}

// equalFold reports whether b equals the lower-case ASCII string s without
// regard to case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func isTokenBytes(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenByte[c] {
			return false
		}
	}
	return true
}

// isHostBytes reports whether a Host value is plain: a name or an IP
// address, and a port. Anything else is net/http's to judge.
func isHostBytes(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// hasTokenBytes reports whether the comma-separated list v holds token
// (lower case), compared without case.
func hasTokenBytes(v []byte, token string) bool {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, comma)
		if equalFold(bytes.Trim(t, " \t"), token) {
			return true
		}
	}
	return false
}

var comma = []byte(",")

// listedIn reports whether name is among the tokens of the Connection
// values of h (in head b).
func (h *reqHead) listedIn(b, name []byte) bool { return connectionLists(h.conn[:h.nconn], b, name) }

// connectionLists reports whether name is among the comma-separated tokens
// of the Connection field values conn (spans of head b).
func connectionLists(conn []span, b, name []byte) bool {
	for _, s := range conn {
		v := s.of(b)
		for len(v) > 0 {
			var t []byte
			t, v, _ = bytes.Cut(v, comma)
			if bytes.EqualFold(bytes.Trim(t, " \t"), name) {
				return true
			}
		}
	}
	return false
}

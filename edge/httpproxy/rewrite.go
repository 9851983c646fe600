package httpproxy

import (
	"bytes"
	"errors"
	"strconv"
)

// appendServerHead appends the head of the request in head h (of client
// bytes b) as the lean loop forwards it to a server: the request line as
// it came, every field as it came but the hop-by-hop ones (RFC 9110
// section 7.6.1: Connection and the fields it names, Keep-Alive,
// Proxy-Connection, TE but "trailers", Upgrade, Proxy-Authenticate,
// Proxy-Authorization) and the X-Forwarded-Host and -Proto the client
// sent; then, with forwardfor, the client's address after any
// X-Forwarded-For it sent, and X-Forwarded-Host and -Proto. host, when not
// empty, replaces the Host value (rewrite_host).
func appendServerHead(out []byte, h *reqHead, b []byte, host, client string, forward, isTLS bool) []byte {
	out = append(out, h.line.of(b)...)
	out = append(out, "\r\n"...)
	for i := range h.fields[:h.nf] {
		f := &h.fields[i]
		switch f.kind {
		case fieldConnection, fieldHop, fieldUpgrade, fieldTrailer, fieldXFwd:
			continue
		case fieldTE:
			if hasTokenBytes(f.value.of(b), "trailers") {
				out = append(out, "Te: trailers\r\n"...)
			}
			continue
		case fieldXFF:
			if !forward {
				continue
			}
		case fieldHost:
			if host != "" {
				out = append(out, "Host: "...)
				out = append(out, host...)
				out = append(out, "\r\n"...)
				continue
			}
		}
		name := f.name.of(b)
		if h.nconn > 0 && f.kind == fieldOther && h.listedIn(b, name) {
			continue
		}
		out = append(out, name...)
		out = append(out, ": "...)
		out = append(out, f.value.of(b)...)
		out = append(out, "\r\n"...)
	}
	if forward {
		out = append(out, "X-Forwarded-For: "...)
		out = append(out, client...)
		out = append(out, "\r\nX-Forwarded-Host: "...)
		out = append(out, h.host.of(b)...)
		if isTLS {
			out = append(out, "\r\nX-Forwarded-Proto: https\r\n"...)
		} else {
			out = append(out, "\r\nX-Forwarded-Proto: http\r\n"...)
		}
	}
	return append(out, "\r\n"...)
}

// maxAnswerFields bounds the fields of a server's answer head.
const maxAnswerFields = 256

// ansHead is the head of a server's answer.
type ansHead struct {
	code int
	// rest is the status line after "HTTP/1.x ": code and reason.
	rest span
	end  int // the head's length, final empty line included
	// length is the Content-Length, -1 when none.
	length  int64
	chunked bool
	close   bool // Connection: close, or HTTP/1.0 without keep-alive
	conn    [4]span
	nconn   int
	nf      int
	fields  [maxAnswerFields]field
}

var (
	errAnswerHead     = errors.New("malformed answer head")
	errAnswerTooLarge = errors.New("answer head too large")
	errAnswerFraming  = errors.New("answer with an unsupported Transfer-Encoding or conflicting Content-Length")
)

// parseAnswer parses the answer head at the start of b, if complete
// (done false: read more). It accepts what servers send besides the
// letter of RFC 9112, as net/http's client does: LF line ends, HTTP/1.0.
func parseAnswer(a *ansHead, b []byte) (done bool, err error) {
	end := bytes.Index(b, lflf)
	if e := bytes.Index(b, crlfcrlf); e >= 0 && (end < 0 || e+4 < end+2) {
		end = e + 2
	}
	if end < 0 {
		return false, nil
	}
	end += 2 // past the empty line's LF
	*a = ansHead{end: end, length: -1}
	p := b[:end]
	line, pos, ok := nextLine(p, 0)
	if !ok || len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '1' && line[7] != '0') || line[8] != ' ' ||
		len(line) > 12 && line[12] != ' ' {
		return true, errAnswerHead
	}
	http10 := line[7] == '0'
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return true, errAnswerHead
		}
		a.code = a.code*10 + int(c-'0')
	}
	a.rest = span{9, int32(len(line))}
	keepAlive := false
	for {
		start := pos
		line, pos, ok = nextLine(p, pos)
		if !ok {
			return true, errAnswerHead
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isTokenBytes(line[:colon]) {
			return true, errAnswerHead
		}
		vs, ve := colon+1, len(line)
		for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
			vs++
		}
		for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
			ve--
		}
		v := line[vs:ve]
		for _, c := range v {
			if c < ' ' && c != '\t' || c == 0x7f {
				return true, errAnswerHead
			}
		}
		if a.nf == maxAnswerFields {
			return true, errAnswerTooLarge
		}
		f := &a.fields[a.nf]
		a.nf++
		f.name = span{int32(start), int32(start + colon)}
		f.value = span{int32(start + vs), int32(start + ve)}
		f.kind = kindOf(line[:colon])
		switch f.kind {
		case fieldContentLength:
			n, err := strconv.ParseUint(string(v), 10, 63)
			if err != nil || a.length >= 0 && a.length != int64(n) {
				return true, errAnswerFraming
			}
			a.length = int64(n)
		case fieldTransferEncoding:
			// Only chunked, last (RFC 9112 section 6.1), is ours to pass on.
			if a.chunked || !equalFold(bytes.Trim(v, " \t"), "chunked") {
				return true, errAnswerFraming
			}
			a.chunked = true
		case fieldConnection:
			if a.nconn == len(a.conn) {
				return true, errAnswerHead
			}
			a.conn[a.nconn] = f.value
			a.nconn++
			if hasTokenBytes(v, "close") {
				a.close = true
			}
			if hasTokenBytes(v, "keep-alive") {
				keepAlive = true
			}
		}
	}
	if a.chunked {
		a.length = -1 // Transfer-Encoding overrides Content-Length
	}
	if http10 && !keepAlive {
		a.close = true
	}
	return true, nil
}

// nextLine returns the line of p at pos without its LF or CRLF, and the
// position after it.
func nextLine(p []byte, pos int) (line []byte, next int, ok bool) {
	i := bytes.IndexByte(p[pos:], '\n')
	if i < 0 {
		return nil, 0, false
	}
	line = p[pos : pos+i]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if bytes.IndexByte(line, '\r') >= 0 || len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		return nil, 0, false
	}
	return line, pos + i + 1, true
}

// listedIn reports whether name is among the tokens of the answer's
// Connection fields.
// passedFields calls fn with each field of the answer that goes on to the
// client, in order: hop-by-hop fields, those Connection lists, and a
// Content-Length that a chunked framing or an earlier one overrides stay
// behind.
func (a *ansHead) passedFields(b []byte, fn func(name, value []byte)) {
	sawLength := false
	for i := range a.fields[:a.nf] {
		f := &a.fields[i]
		switch f.kind {
		case fieldConnection, fieldHop, fieldUpgrade, fieldTE, fieldTransferEncoding:
			continue
		case fieldContentLength:
			if sawLength || a.chunked {
				continue
			}
			sawLength = true
		}
		name := f.name.of(b)
		if a.nconn > 0 && f.kind == fieldOther && a.listedIn(b, name) {
			continue
		}
		fn(name, f.value.of(b))
	}
}

// listedIn reports whether name is among the tokens of the answer's
// Connection values.
func (a *ansHead) listedIn(b, name []byte) bool { return connectionLists(a.conn[:a.nconn], b, name) }

// appendClientHead appends the answer head a (of server bytes b) as the
// client gets it: "HTTP/1.1", the server's status, its fields but the
// hop-by-hop ones, Transfer-Encoding: chunked when the body is passed on
// chunked, and Connection: close when the connection ends after it.
func appendClientHead(out []byte, a *ansHead, b []byte, closeAfter bool) []byte {
	out = append(out, "HTTP/1.1 "...)
	out = append(out, a.rest.of(b)...)
	if a.rest.end-a.rest.start == 3 {
		out = append(out, ' ')
	}
	out = append(out, "\r\n"...)
	a.passedFields(b, func(name, value []byte) {
		out = append(out, name...)
		out = append(out, ": "...)
		out = append(out, value...)
		out = append(out, "\r\n"...)
	})
	if a.chunked {
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	if closeAfter {
		out = append(out, "Connection: close\r\n"...)
	}
	return append(out, "\r\n"...)
}

// chunkScan follows a chunked body (RFC 9112 section 7.1) as its bytes
// pass, without decoding it (CRLF line ends, as net/http wants them, but
// in the trailer): the lean loop forwards a chunked answer as
// the server sent it, trailer included, and needs only to know where it
// ends and how many data bytes it carried.
type chunkScan struct {
	state   chunkState
	size    int64 // of the chunk being read: data left
	digits  int
	lineLen int   // of an extension or trailer line so far
	data    int64 // data bytes so far
}

type chunkState uint8

const (
	chunkSize    chunkState = iota // hex digits
	chunkExt                       // after the size: extensions, to the LF
	chunkSizeLF                    // after the size line's CR
	chunkData                      // size bytes
	chunkDataCR                    // the CR after the data
	chunkDataLF                    // the LF after the data
	chunkTrailer                   // the start of a trailer line, or of the final CRLF
	chunkTrailerLine
	chunkEndLF // the last LF
	chunkDone
)

var errChunked = errors.New("malformed chunked body")

// maxChunkLine bounds an extension or trailer line.
const maxChunkLine = 4096

// scan takes b, the next bytes of the body, and returns how many of them
// belong to it (all, unless its end is among them) and whether it ended.
func (s *chunkScan) scan(b []byte) (int, bool, error) {
	i := 0
	for i < len(b) {
		c := b[i]
		switch s.state {
		case chunkSize:
			switch {
			case '0' <= c && c <= '9':
				s.size = s.size<<4 | int64(c-'0')
			case 'a' <= c && c <= 'f':
				s.size = s.size<<4 | int64(c-'a'+10)
			case 'A' <= c && c <= 'F':
				s.size = s.size<<4 | int64(c-'A'+10)
			default:
				if s.digits == 0 {
					return i, false, errChunked
				}
				switch c {
				case ';', ' ', '\t':
					s.state, s.lineLen = chunkExt, 0
				case '\r':
					s.state = chunkSizeLF
				default:
					return i, false, errChunked
				}
				i++
				continue
			}
			s.digits++
			if s.digits > 15 {
				return i, false, errChunked
			}
		case chunkExt:
			s.lineLen++
			if s.lineLen > maxChunkLine {
				return i, false, errChunked
			}
			if c == '\n' {
				return i, false, errChunked // a bare LF, as net/http refuses it
			} else if c == '\r' {
				s.state = chunkSizeLF
			}
		case chunkSizeLF:
			if c != '\n' {
				return i, false, errChunked
			}
			s.endSize()
		case chunkData:
			n := int64(len(b) - i)
			if n > s.size {
				n = s.size
			}
			s.size -= n
			s.data += n
			i += int(n)
			if s.size == 0 {
				s.state = chunkDataCR
			}
			continue
		case chunkDataCR:
			switch c {
			case '\r':
				s.state = chunkDataLF
			default:
				return i, false, errChunked
			}
		case chunkDataLF:
			if c != '\n' {
				return i, false, errChunked
			}
			s.state, s.digits = chunkSize, 0
		case chunkTrailer:
			switch c {
			case '\r':
				s.state = chunkEndLF
			case '\n':
				s.state = chunkDone
				return i + 1, true, nil
			default:
				s.state, s.lineLen = chunkTrailerLine, 1
			}
		case chunkTrailerLine:
			s.lineLen++
			if s.lineLen > maxChunkLine {
				return i, false, errChunked
			}
			if c == '\n' {
				s.state = chunkTrailer
			}
		case chunkEndLF:
			if c != '\n' {
				return i, false, errChunked
			}
			s.state = chunkDone
			return i + 1, true, nil
		case chunkDone:
			return i, true, nil
		}
		i++
	}
	return i, s.state == chunkDone, nil
}

// endSize ends a chunk-size line: data follows, or the trailer after the
// last chunk.
func (s *chunkScan) endSize() {
	if s.size == 0 {
		s.state = chunkTrailer
	} else {
		s.state = chunkData
	}
}

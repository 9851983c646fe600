package classify

import (
	"hash/maphash"
	"strings"
)

// The scanner turns query text into the literal-free form the cache is keyed on.
// It is a lexer, not a parser: it knows only where PostgreSQL's lexer (scan.l)
// puts the edges of literals, comments and quoted identifiers, so that
//
//   - every literal (numbers, '…', E'…', B'…', X'…', N'…', U&'…', $tag$…$tag$)
//     becomes the placeholder '?';
//   - every run of whitespace and comments becomes one ' ' (none at the ends);
//   - everything else (keywords, identifiers, "quoted identifiers", operators,
//     punctuation, $1 parameters) is kept byte for byte, case included;
//   - a construct left open at the end of the text (an unterminated string,
//     quoted identifier, dollar quote or block comment) keeps the whole rest of
//     the text verbatim: such text never parses, and keeping it means the open
//     literal cannot hide trailing statements from the key.
//
// Only literals are dropped, and a literal's value never decides a route (the
// one exception, EXPLAIN (ANALYZE <value>), is detected after parsing and cached
// by exact text instead), so two texts with the same form have the same route.
// Plain '…' strings follow standard_conforming_strings = on, as pg_query does.

// HintKind is a routing hint read from a leading comment.
type HintKind uint8

const (
	HintNone    HintKind = iota
	HintPrimary          // /* pgswitch:primary */ or -- pgswitch:primary
	HintReplica          // /* pgswitch:replica */ or -- pgswitch:replica
)

func (h HintKind) String() string {
	switch h {
	case HintPrimary:
		return "primary"
	case HintReplica:
		return "replica"
	}
	return "none"
}

const placeholder = '?'

// tokenKind is what scanner.next found.
type tokenKind uint8

const (
	tokEOF      tokenKind = iota
	tokVerbatim           // src[start:end] is kept as is
	tokLiteral            // a literal: emit the placeholder
	tokSpace              // whitespace or comments: emit one ' ' between tokens
	tokOpen               // an unterminated construct: src[start:] is kept as is
)

// scanner walks src once. It allocates nothing.
type scanner struct {
	src     string
	pos     int
	started bool     // a non-space token has been seen: hints are no longer read
	hint    HintKind // the first hint found in the leading comments
}

// next returns the next token. Adjacent verbatim bytes (identifiers, operators,
// punctuation, and single plain spaces between them) come back as one token.
func (s *scanner) next() (kind tokenKind, start, end int) {
	src := s.src
	start = s.pos
	if start >= len(src) {
		return tokEOF, start, start
	}
	if s.skipSpace() {
		return tokSpace, start, s.pos
	}
	s.started = true
	if s.opensAt(start) {
		s.pos = len(src)
		return tokOpen, start, len(src)
	}
	if end, ok, found := literalAt(src, start); found {
		if !ok {
			s.pos = len(src)
			return tokOpen, start, len(src)
		}
		s.pos = end
		return tokLiteral, start, end
	}
	for s.pos < len(src) {
		p := s.pos
		c := src[p]
		cl := charClass[c]
		if cl&cIdentStart != 0 {
			if p > start && cl&cPrefix != 0 && literalPrefix(src, p) {
				return s.run(start, p)
			}
			s.pos++
			for s.pos < len(src) && charClass[src[s.pos]]&cIdentCont != 0 {
				s.pos++
			}
			continue
		}
		if cl&cSpecial == 0 { // operators and punctuation
			s.pos++
			continue
		}
		switch {
		case c == ' ' && p+1 < len(src) && charClass[src[p+1]]&cSpace == 0:
			// One space between two tokens is already in normal form: keep it
			// in the run (run() drops it again if the run ends right after).
			s.pos++
		case cl&cSpace != 0 || startsComment(src, p) || (p > start && s.opensAt(p)):
			return s.run(start, p)
		case c == '"':
			s.pos, _ = skipQuoted(src, p, '"') // terminated: opensAt said so
		case c == '$' && p+1 < len(src) && isDigit(src[p+1]):
			s.pos += 2 // a $n parameter: kept, it stands for no text
			for s.pos < len(src) && isDigit(src[s.pos]) {
				s.pos++
			}
		case c == '.' && p+1 < len(src) && src[p+1] == '.':
			s.pos += 2 // ".." (as in 1..2) is not the start of ".2"
		default:
			if p > start {
				if _, _, found := literalAt(src, p); found {
					return s.run(start, p)
				}
			}
			s.pos++
		}
	}
	return s.run(start, s.pos)
}

// run ends a verbatim token at end, leaving a trailing space to skipSpace so
// that it is collapsed with whatever whitespace or comment follows.
func (s *scanner) run(start, end int) (tokenKind, int, int) {
	if end > start+1 && s.src[end-1] == ' ' {
		end--
	}
	s.pos = end
	return tokVerbatim, start, end
}

// Byte classes for the scanner's inner loops.
const (
	cIdentStart = 1 << iota // starts an identifier: [A-Za-z_] and every byte of a multi-byte UTF-8 rune
	cIdentCont              // continues one: the above, digits and $
	cPrefix                 // E, B, X, N, U: may prefix a string literal
	cSpace                  // whitespace
	cSpecial                // needs a closer look inside a run
)

var charClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if isIdentStart(b) {
			t[c] |= cIdentStart | cIdentCont
		}
		if isDigit(b) || b == '$' {
			t[c] |= cIdentCont
		}
		if isSpace(b) {
			t[c] |= cSpace | cSpecial
		}
	}
	for _, b := range []byte("eEbBxXnNuU") {
		t[b] |= cPrefix
	}
	for _, b := range []byte("'\"$-/.0123456789") {
		t[b] |= cSpecial
	}
	return t
}()

// opensAt reports whether an unterminated quoted identifier or block comment
// starts at p (unterminated literals are found by literalAt).
func (s *scanner) opensAt(p int) bool {
	src := s.src
	switch {
	case src[p] == '"':
		_, ok := skipQuoted(src, p, '"')
		return !ok
	case src[p] == '/' && p+1 < len(src) && src[p+1] == '*':
		_, ok := skipBlockComment(src, p)
		return !ok
	}
	return false
}

// skipSpace consumes whitespace and comments, reading hints in the comments
// that come before the first token, and reports whether it consumed anything.
// It stops at an unterminated block comment, which next() keeps as text.
func (s *scanner) skipSpace() bool {
	src := s.src
	begin := s.pos
	for s.pos < len(src) {
		c := src[s.pos]
		switch {
		case isSpace(c):
			s.pos++
		case c == '-' && s.pos+1 < len(src) && src[s.pos+1] == '-':
			end := strings.IndexByte(src[s.pos:], '\n')
			if end < 0 {
				end = len(src)
			} else {
				end += s.pos
			}
			s.readHint(src[s.pos+2 : end])
			s.pos = end
		case c == '/' && s.pos+1 < len(src) && src[s.pos+1] == '*':
			end, ok := skipBlockComment(src, s.pos)
			if !ok {
				return s.pos > begin
			}
			s.readHint(src[s.pos+2 : end-2])
			s.pos = end
		default:
			return s.pos > begin
		}
	}
	return s.pos > begin
}

func (s *scanner) readHint(body string) {
	if s.started || s.hint != HintNone {
		return
	}
	body = strings.TrimFunc(body, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
	switch {
	case strings.EqualFold(body, "pgswitch:primary"):
		s.hint = HintPrimary
	case strings.EqualFold(body, "pgswitch:replica"):
		s.hint = HintReplica
	}
}

// literalAt reports whether a literal starts at p (found) and, if so, where it
// ends and whether it is terminated. p must start a word: in the middle of an
// identifier (somee'x') the E is part of the identifier, as in scan.l.
func literalAt(src string, p int) (end int, ok, found bool) {
	c := src[p]
	switch {
	case c == '\'':
		end, ok = skipString(src, p, false, true)
	case isDigit(c) || (c == '.' && p+1 < len(src) && isDigit(src[p+1])):
		end, ok = skipNumber(src, p), true
	case c == '$':
		n := dollarDelimLen(src, p)
		if n == 0 {
			return 0, false, false
		}
		if i := strings.Index(src[p+n:], src[p:p+n]); i >= 0 {
			end, ok = p+n+i+n, true
		}
	case literalPrefix(src, p):
		switch c | 0x20 {
		case 'e':
			end, ok = skipString(src, p+1, true, true)
		case 'b', 'x':
			end, ok = skipString(src, p+1, false, false)
		case 'n':
			end, ok = skipString(src, p+1, false, true)
		default: // u&'
			end, ok = skipString(src, p+2, false, true)
		}
	default:
		return 0, false, false
	}
	return end, ok, true
}

// literalPrefix reports whether a prefixed string (E'…', B'…', X'…', N'…',
// U&'…') starts at p. The caller guarantees p starts a word: in the middle of
// an identifier (somee'x') the quote opens a plain string, as in scan.l.
func literalPrefix(src string, p int) bool {
	if p+1 >= len(src) {
		return false
	}
	switch src[p] | 0x20 {
	case 'e', 'b', 'x', 'n':
		return src[p+1] == '\''
	case 'u':
		return p+2 < len(src) && src[p+1] == '&' && src[p+2] == '\''
	}
	return false
}

// skipString returns the end of the quoted string whose opening quote is at p.
// backslash: E'…' escapes (\' does not end it). doubled: a doubled quote stands for one
// (true except in B'…' and X'…'). Like scan.l, a string followed by whitespace
// holding a newline and then another quote continues in that quote.
func skipString(src string, p int, backslash, doubled bool) (int, bool) {
	i := p + 1
	for {
		for i < len(src) {
			c := src[i]
			if backslash && c == '\\' {
				i += 2
				continue
			}
			if c == '\'' {
				if doubled && i+1 < len(src) && src[i+1] == '\'' {
					i += 2
					continue
				}
				break
			}
			i++
		}
		if i >= len(src) {
			return 0, false
		}
		i++ // past the closing quote
		if next, ok := continuation(src, i); ok {
			i = next + 1
			continue
		}
		return i, true
	}
}

// continuation reports whether src[i:] is whitespace with a newline (and
// possibly -- comments) followed by a quote, returning the quote's index.
func continuation(src string, i int) (int, bool) {
	newline := false
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\n' || c == '\r':
			newline = true
			i++
		case c == ' ' || c == '\t' || c == '\f' || (newline && c == '\v'):
			i++
		case newline && c == '-' && i+1 < len(src) && src[i+1] == '-':
			end := strings.IndexByte(src[i:], '\n')
			if end < 0 {
				return 0, false
			}
			i += end
		case c == '\'' && newline:
			return i, true
		default:
			return 0, false
		}
	}
	return 0, false
}

// skipQuoted returns the end of a "quoted identifier" ("" doubles a quote).
func skipQuoted(src string, p int, q byte) (int, bool) {
	i := p + 1
	for i < len(src) {
		if src[i] == q {
			if i+1 < len(src) && src[i+1] == q {
				i += 2
				continue
			}
			return i + 1, true
		}
		i++
	}
	return 0, false
}

// skipBlockComment returns the end of a nested /* */ comment starting at p.
func skipBlockComment(src string, p int) (int, bool) {
	depth := 0
	i := p
	for i+1 < len(src) {
		switch {
		case src[i] == '/' && src[i+1] == '*':
			depth++
			i += 2
		case src[i] == '*' && src[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i, true
			}
		default:
			i++
		}
	}
	return 0, false
}

// skipNumber returns the end of a numeric literal at p. It takes no byte that
// scan.l would give to another token: letters after a number are left alone.
func skipNumber(src string, p int) int {
	i := p
	if src[i] == '0' && i+2 < len(src) {
		var ok func(byte) bool
		switch src[i+1] | 0x20 {
		case 'x':
			ok = isHexDigit
		case 'o':
			ok = func(c byte) bool { return c >= '0' && c <= '7' }
		case 'b':
			ok = func(c byte) bool { return c == '0' || c == '1' }
		}
		if ok != nil && ok(src[i+2]) {
			i += 3
			for i < len(src) && (ok(src[i]) || src[i] == '_') {
				i++
			}
			return i
		}
	}
	digits := func() {
		for i < len(src) && (isDigit(src[i]) || src[i] == '_') {
			i++
		}
	}
	digits()
	// "1..2" is an integer followed by "..", as in scan.l.
	if i < len(src) && src[i] == '.' && !(i+1 < len(src) && src[i+1] == '.') {
		i++
		digits()
	}
	if i+1 < len(src) && src[i]|0x20 == 'e' {
		j := i + 1
		if src[j] == '+' || src[j] == '-' {
			j++
		}
		if j < len(src) && isDigit(src[j]) {
			i = j
			digits()
		}
	}
	return i
}

// dollarDelimLen returns the length of a $tag$ delimiter at p, or 0.
func dollarDelimLen(src string, p int) int {
	if src[p] != '$' {
		return 0
	}
	i := p + 1
	if i < len(src) && isIdentStart(src[i]) {
		i++
		for i < len(src) && isIdentCont(src[i]) && src[i] != '$' {
			i++
		}
	}
	if i < len(src) && src[i] == '$' {
		return i + 1 - p
	}
	return 0
}

func startsComment(src string, p int) bool {
	return p+1 < len(src) && ((src[p] == '-' && src[p+1] == '-') || (src[p] == '/' && src[p+1] == '*'))
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHexDigit(c byte) bool {
	return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f')
}

func isIdentStart(c byte) bool {
	return (c|0x20 >= 'a' && c|0x20 <= 'z') || c == '_' || c >= 0x80
}

func isIdentCont(c byte) bool {
	return isIdentStart(c) || isDigit(c) || c == '$'
}

// keyOf hashes the normalized form of sql without building it. length is the
// normalized form's length (kept beside the hash in the cache as a cheap second
// check), empty reports text with no token at all.
func keyOf(seed maphash.Seed, sql string) (key uint64, length uint32, hint HintKind, empty bool) {
	var h maphash.Hash
	h.SetSeed(seed)
	s := scanner{src: sql}
	n := 0
	space := false
	for {
		kind, start, end := s.next()
		switch kind {
		case tokEOF:
			// The hint is part of the key: the same text with another hint
			// routes differently.
			h.WriteByte(byte(s.hint))
			return h.Sum64(), uint32(n), s.hint, n == 0
		case tokSpace:
			space = n > 0
			continue
		}
		if space {
			h.WriteByte(' ')
			n++
			space = false
		}
		switch kind {
		case tokLiteral:
			h.WriteByte(placeholder)
			n++
		case tokVerbatim, tokOpen:
			h.WriteString(sql[start:end])
			n += end - start
		}
	}
}

// Normalize returns the literal-free form of sql that the cache is keyed on,
// preceded by "/* pgswitch:primary */ " or "/* pgswitch:replica */ " when the
// text carries a hint. It is for tests, tools and the admin console; the
// classifier hashes the same form without building it.
func Normalize(sql string) string {
	var b strings.Builder
	s := scanner{src: sql}
	space := false
	for {
		kind, start, end := s.next()
		switch kind {
		case tokEOF:
			if s.hint != HintNone {
				return strings.TrimSuffix("/* pgswitch:"+s.hint.String()+" */ "+b.String(), " ")
			}
			return b.String()
		case tokSpace:
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		switch kind {
		case tokLiteral:
			b.WriteByte(placeholder)
		case tokVerbatim, tokOpen:
			b.WriteString(sql[start:end])
		}
	}
}

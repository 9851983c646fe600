package accesslog

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// Entry is one request.
type Entry struct {
	// Client is the client's IP address.
	Client string
	// Time is when the request arrived.
	Time time.Time
	// RequestLine is "METHOD URI PROTO", or what arrived of it; empty is
	// logged as "-". Method, Target and Proto, when Method is set, are
	// logged instead, joined by spaces (no string is built per request).
	RequestLine           string
	Method, Target, Proto string
	Status                int
	// Bytes is the response body size sent.
	Bytes              int64
	Referer, UserAgent string
}

// Logger writes entries. A nil *Logger writes nothing.
type Logger struct {
	combined bool
	mu       sync.Mutex
	w        io.Writer
	f        *os.File // nil for stderr and stdout
}

// Open returns a logger for path ("stderr", "stdout", "off" or a file,
// appended to) in format "clf" or "combined". It returns nil for "off".
func Open(path, format string) (*Logger, error) {
	l := &Logger{combined: format == "combined"}
	switch path {
	case "off":
		return nil, nil
	case "stderr":
		l.w = os.Stderr
	case "stdout":
		l.w = os.Stdout
	default:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, fmt.Errorf("access log: %w", err)
		}
		l.w, l.f = f, f
	}
	return l, nil
}

// Close closes the file, if the logger has one.
func (l *Logger) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// Log writes one line, in a single write so that lines from concurrent
// requests never interleave.
func (l *Logger) Log(e *Entry) {
	if l == nil {
		return
	}
	bp := bufPool.Get().(*[]byte)
	b := Append((*bp)[:0], e, l.combined)
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
	*bp = b
	bufPool.Put(bp)
}

// Append formats e as a CLF (or combined) line ending in a newline:
//
//	127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 2326
func Append(b []byte, e *Entry, combined bool) []byte {
	b = appendField(b, e.Client)
	b = append(b, " - - ["...)
	b = e.Time.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] "...)
	if e.Method != "" {
		b = append(b, '"')
		b = appendEscaped(b, e.Method)
		b = append(b, ' ')
		b = appendEscaped(b, e.Target)
		b = append(b, ' ')
		b = appendEscaped(b, e.Proto)
		b = append(b, '"')
	} else {
		b = appendQuoted(b, e.RequestLine)
	}
	b = append(b, ' ')
	if e.Status > 0 {
		b = strconv.AppendInt(b, int64(e.Status), 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	if e.Bytes > 0 {
		b = strconv.AppendInt(b, e.Bytes, 10)
	} else {
		b = append(b, '-')
	}
	if combined {
		b = append(b, ' ')
		b = appendQuoted(b, e.Referer)
		b = append(b, ' ')
		b = appendQuoted(b, e.UserAgent)
	}
	return append(b, '\n')
}

func appendField(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendEscaped(b, s)
}

// appendQuoted writes s between double quotes, "-" when empty.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendField(b, s)
	return append(b, '"')
}

// appendEscaped escapes quotes, backslashes, spaces-breaking controls and
// non-ASCII bytes as \xHH, as Apache does, so that a client cannot forge a
// line or a field.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}

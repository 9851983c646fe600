package wire

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Severities used in ErrorResponse.
const (
	SeverityError = "ERROR"
	SeverityFatal = "FATAL"
	SeverityPanic = "PANIC"
)

// Error is the one error type that reaches clients. Its cause is logged by
// pgswitch but never sent: it may name internal addresses or hold secrets.
type Error struct {
	Severity string
	Code     string
	Message  string
	Detail   string
	Hint     string
	cause    error
}

// Errorf returns an ERROR with the given SQLSTATE.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Severity: SeverityError, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Fatalf returns a FATAL error: after sending it the connection is closed.
func Fatalf(code, format string, args ...any) *Error {
	return &Error{Severity: SeverityFatal, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithCause returns a copy of e that carries cause for logging.
func (e *Error) WithCause(cause error) *Error {
	c := *e
	c.cause = cause
	return &c
}

// WithDetail returns a copy of e with a DETAIL line.
func (e *Error) WithDetail(detail string) *Error {
	c := *e
	c.Detail = detail
	return &c
}

// WithHint returns a copy of e with a HINT line.
func (e *Error) WithHint(hint string) *Error {
	c := *e
	c.Hint = hint
	return &c
}

func (e *Error) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s %s: %s: %v", e.Severity, e.Code, e.Message, e.cause)
	}
	return fmt.Sprintf("%s %s: %s", e.Severity, e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.cause }

// IsFatal reports whether the connection must be closed after sending e.
func (e *Error) IsFatal() bool { return e.Severity == SeverityFatal || e.Severity == SeverityPanic }

// AsError turns any error into the Error a client may see. Anything that is
// not already an *Error becomes XX000 "internal error" with err as its cause.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Severity: SeverityError, Code: CodeInternalError, Message: "internal error", cause: err}
}

// Response returns e as a pgproto3 ErrorResponse.
func (e *Error) Response() *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{
		Severity:            e.Severity,
		SeverityUnlocalized: e.Severity,
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
	}
}

// AppendResponse appends e encoded as an ErrorResponse message to dst.
func (e *Error) AppendResponse(dst []byte) []byte {
	out, err := e.Response().Encode(dst)
	if err != nil {
		// Encoding only fails for oversized fields; fall back to a short message.
		out, _ = (&pgproto3.ErrorResponse{Severity: e.Severity, SeverityUnlocalized: e.Severity, Code: e.Code, Message: "error message too long"}).Encode(dst)
	}
	return out
}

// WithSeverity returns a copy of e with another severity, e.g. an ERROR
// that ends a login becomes FATAL.
func (e *Error) WithSeverity(severity string) *Error {
	c := *e
	c.Severity = severity
	return &c
}

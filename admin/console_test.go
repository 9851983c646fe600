package admin

import (
	"bufio"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pgswitch/pgswitch/wire"
)

func TestParse(t *testing.T) {
	cases := []struct {
		sql  string
		want command
	}{
		{"SHOW POOLS", command{verb: "SHOW", what: "POOLS"}},
		{"  show pools ;", command{verb: "SHOW", what: "POOLS"}},
		{"Show Stats;;", command{verb: "SHOW", what: "STATS"}},
		{"pause", command{verb: "PAUSE"}},
		{"PAUSE app;", command{verb: "PAUSE", args: []string{"app"}}},
		{`resume "App"`, command{verb: "RESUME", args: []string{"App"}}},
		{"wait_close", command{verb: "WAIT_CLOSE"}},
		{"KILL app", command{verb: "KILL", args: []string{"app"}}},
		{"reload;", command{verb: "RELOAD"}},
	}
	for _, c := range cases {
		got, err := parse(c.sql)
		if err != nil {
			t.Errorf("parse(%q): %v", c.sql, err)
			continue
		}
		if got.verb != c.want.verb || got.what != c.want.what || !slices.Equal(got.args, c.want.args) {
			t.Errorf("parse(%q) = %+v, want %+v", c.sql, got, c.want)
		}
	}
	for _, bad := range []string{"", ";", "SHOW", "SHOW FOO", "SHOW POOLS now", "PAUSE a b", "KILL", "DISABLE",
		"RELOAD now", "SELECT 1", "DROP DATABASE app"} {
		_, err := parse(bad)
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeSyntaxError {
			t.Errorf("parse(%q): got %v, want 42601", bad, err)
		}
	}
}

func TestEncode(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{"x", "x"}, {3, "3"}, {int64(-4), "-4"}, {uint64(5), "5"}, {1.5, "1.5"}, {true, "1"}, {false, "0"},
	}
	for _, c := range cases {
		if got := string(encode(c.v)); got != c.want {
			t.Errorf("encode(%v) = %q, want %q", c.v, got, c.want)
		}
	}
	if encode(nil) != nil {
		t.Error("encode(nil) is not NULL")
	}
}

func TestReadMessage(t *testing.T) {
	cases := []struct {
		raw      string
		typ      byte
		body     string
		code     string // of the *wire.Error, if any
		readFail bool   // a plain read error
	}{
		{raw: "Q\x00\x00\x00\x0eSHOW HELP\x00", typ: 'Q', body: "SHOW HELP\x00"},
		{raw: "X\x00\x00\x00\x04", typ: 'X'},
		{raw: "z\x00\x00\x00\x04", code: wire.CodeProtocolViolation},
		{raw: "Q\x00\x00\x00\x02", code: wire.CodeProtocolViolation},
		{raw: "Q\x7f\xff\xff\xff", code: wire.CodeProtocolViolation},
		{raw: "Q\x00\x00\x00\x09ab", readFail: true},
		{raw: "Q\x00", readFail: true},
	}
	for _, c := range cases {
		typ, body, err := readMessage(bufio.NewReader(strings.NewReader(c.raw)))
		var we *wire.Error
		switch {
		case c.code != "":
			if !errors.As(err, &we) || we.Code != c.code || !we.IsFatal() {
				t.Errorf("%q: got %v, want FATAL %s", c.raw, err, c.code)
			}
		case c.readFail:
			if err == nil || errors.As(err, &we) {
				t.Errorf("%q: got %v, want a read error", c.raw, err)
			}
		case err != nil || typ != c.typ || string(body) != c.body:
			t.Errorf("%q: got %q %q %v, want %q %q", c.raw, typ, body, err, c.typ, c.body)
		}
	}
}

func TestQueryText(t *testing.T) {
	cases := []struct {
		body, want, message string
	}{
		{"SHOW POOLS\x00", "SHOW POOLS", ""},
		{"\x00", "", ""},
		{"", "", "invalid string in message"},
		{"SHOW", "", "invalid string in message"},
		{"a\x00b\x00", "", "invalid message format"},
	}
	for _, c := range cases {
		got, err := queryText([]byte(c.body))
		if c.message == "" {
			if err != nil || got != c.want {
				t.Errorf("%q: got %q, %v; want %q", c.body, got, err, c.want)
			}
			continue
		}
		if err == nil || err.Code != wire.CodeProtocolViolation || err.Message != c.message || err.IsFatal() {
			t.Errorf("%q: got %v, want ERROR 08P01 %q", c.body, err, c.message)
		}
	}
}

package admin

import (
	"errors"
	"slices"
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

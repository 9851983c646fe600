package main

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// Each --admin-url is an instance; a host name with several addresses is
// one instance per address of one family; the same instance named twice is
// asked once.
func TestConsoleInstances(t *testing.T) {
	dns := map[string][]string{
		"pgswitch-peers": {"10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2"},
		"v6only":         {"fd00::7", "fd00::8"},
		"localhost":      {"127.0.0.1", "::1"},
		"single":         {"10.0.0.9"},
	}
	lookup := func(_ context.Context, host string) ([]string, error) {
		if a, ok := dns[host]; ok {
			return a, nil
		}
		return nil, errors.New("no such host")
	}
	const u = "postgres://admin:pw@"
	for _, c := range []struct {
		urls []string
		want []string
	}{
		{[]string{u + "127.0.0.1:6432/pgswitch"}, []string{"127.0.0.1:6432"}},
		{[]string{u + "127.0.0.1:6432/pgswitch", u + "127.0.0.1:6433/pgswitch", u + "127.0.0.1:6432/pgswitch"},
			[]string{"127.0.0.1:6432", "127.0.0.1:6433"}},
		{[]string{u + "pgswitch-peers:6432/pgswitch"}, []string{"10.0.0.1:6432", "10.0.0.2:6432"}},
		{[]string{u + "v6only:6432/pgswitch"}, []string{"[fd00::7]:6432", "[fd00::8]:6432"}},
		{[]string{u + "localhost:6432/pgswitch"}, []string{"localhost:6432"}},
		{[]string{u + "single:6432/pgswitch"}, []string{"single:6432"}},
		{[]string{u + "pgswitch-peers:6432,single:6432/pgswitch"}, []string{"pgswitch-peers:6432"}},
		{[]string{u + "pgswitch-peers:6432/pgswitch?sslmode=disable"}, []string{"10.0.0.1:6432", "10.0.0.2:6432"}},
		{[]string{u + "unknown:6432/pgswitch"}, []string{"unknown:6432"}},
	} {
		f := consoleFlags{urls: c.urls, lookup: lookup}
		ins, err := f.instances(context.Background())
		if err != nil {
			t.Fatalf("%v: %v", c.urls, err)
		}
		var got []string
		for _, in := range ins {
			got = append(got, in.name)
			if in.cfg.User != "admin" || in.cfg.Database != "pgswitch" {
				t.Errorf("%v: instance %s lost the URL's user or database: %+v", c.urls, in.name, in.cfg)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%v: got instances %v, want %v", c.urls, got, c.want)
		}
	}
}

func TestMerged(t *testing.T) {
	s := func(v string) *string { return &v }
	outs := []outcome[*answer]{
		{"a:1", &answer{cols: []string{"name", "paused"}, types: []uint32{25, 20}, rows: [][]*string{{s("app"), s("0")}}}, nil},
		{"b:2", nil, errors.New("cannot reach")},
		// Another version, its columns in another order and one more.
		{"c:3", &answer{cols: []string{"paused", "extra", "name"}, types: []uint32{20, 25, 25}, rows: [][]*string{{s("1"), s("x"), s("app")}}}, nil},
	}
	m := merged(outs)
	if !slices.Equal(m.cols, []string{"instance", "name", "paused"}) {
		t.Fatalf("got columns %v, want instance, name, paused", m.cols)
	}
	var got [][]string
	for _, row := range m.rows {
		got = append(got, []string{m.value(row, "instance"), m.value(row, "name"), m.value(row, "paused")})
	}
	want := [][]string{{"a:1", "app", "0"}, {"c:3", "app", "1"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("got rows %v, want %v", got, want)
	}
}

// sslmode=prefer (the default) tries TLS, then the same address without:
// both tries of an instance go to its address.
func TestConsoleInstancesFallbacks(t *testing.T) {
	f := consoleFlags{urls: []string{"postgres://admin:pw@pgswitch-peers:6432/pgswitch"},
		lookup: func(context.Context, string) ([]string, error) { return []string{"10.0.0.1", "10.0.0.2"}, nil }}
	ins, err := f.instances(context.Background())
	if err != nil || len(ins) != 2 {
		t.Fatalf("got %d instances, %v; want 2", len(ins), err)
	}
	for _, in := range ins {
		for _, fb := range in.cfg.Fallbacks {
			if fb.Host != in.cfg.Host {
				t.Errorf("instance %s: a fallback goes to %s", in.name, fb.Host)
			}
		}
	}
}

package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleFileLoads(t *testing.T) {
	t.Setenv("REDIS_PRIMARY", "127.0.0.1:6380")
	path := filepath.Join("..", "pgswitch-edge.yaml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("the documented example does not load: %v", err)
	}
	app := cfg.Listens["myapp"]
	if app == nil || len(app.Binds) != 2 || app.Binds[0].Addr != ":80" || app.Binds[1].TLS == nil {
		t.Fatalf("myapp binds: %+v", app)
	}
	// The HAProxy defaults, item for item.
	if c := app.Check; c.Inter != time.Second || c.Fall != 5 || c.DownInter != 2*time.Second || c.Rise != 5 {
		t.Errorf("myapp check %+v, want inter 1s fall 5 downinter 2s rise 5", c)
	}
	if tm := app.Timeouts; tm.Connect != 5*time.Second || tm.Client != 10*time.Second || tm.Server != 10*time.Second || tm.HTTPRequest != time.Second {
		t.Errorf("myapp timeouts %+v", tm)
	}
	if got := strings.Join(app.Binds[1].TLS.ALPN, ","); got != "h2,http/1.1" {
		t.Errorf("alpn %s", got)
	}
	if !strings.HasSuffix(app.Binds[1].TLS.CertDir, "edge/certs/") && !strings.HasPrefix(app.Binds[1].TLS.CertDir, "../") {
		t.Errorf("cert_dir %q is not taken relative to the file", app.Binds[1].TLS.CertDir)
	}
	if s := app.Servers[0]; s.Name != "myapp01" || s.MaxConn != 32 || !s.Checked() {
		t.Errorf("myapp01 %+v", s)
	}
	out := cfg.Listens["myservice"].Servers[0]
	if out.TLS == nil || out.TLS.Verify != "required" || out.TLS.ServerName != "service.internal" || !strings.HasSuffix(out.TLS.CAFile, "CA_chain.pem") {
		t.Errorf("myservice01 TLS %+v", out.TLS)
	}
	redis := cfg.Listens["redis"]
	if redis.Mode != ModeTCP || redis.Servers[0].Addr != "127.0.0.1:6380" || !redis.Servers[1].Backup {
		t.Errorf("redis %+v", redis)
	}
	if !cfg.AccessLog.DontLogNullOn() || cfg.AccessLog.Format != "clf" || !app.ForwardForOn() {
		t.Errorf("access log %+v forwardfor %v", cfg.AccessLog, app.ForwardForOn())
	}
}

const minimal = `
listens:
  app:
    binds: [127.0.0.1:8080]
    servers: [{addr: 127.0.0.1:9000}]
`

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listens["app"]
	if l.Mode != ModeHTTP || l.Servers[0].Name != "app01" || l.Servers[0].Weight != 1 {
		t.Fatalf("listen %+v server %+v", l, l.Servers[0])
	}
	// HAProxy's: inter 2s, fall 3, rise 2, downinter = inter;
	// http-keep-alive = http-request; queue = connect.
	if c := l.Check; c.Inter != 2*time.Second || c.Fall != 3 || c.Rise != 2 || c.DownInter != 2*time.Second || c.Timeout != 2*time.Second {
		t.Errorf("check %+v", c)
	}
	if tm := l.Timeouts; tm.HTTPKeepAlive != tm.HTTPRequest || tm.Queue != tm.Connect {
		t.Errorf("timeouts %+v", tm)
	}
	if h := l.HTTPCheck; h.Method != "GET" || h.Path != "/health" || h.ExpectStatus != 0 {
		t.Errorf("http_check %+v", h)
	}
	if !l.LeanHTTP2On() {
		t.Errorf("lean_http2 off by default")
	}
	off, err := Parse([]byte(strings.Replace(minimal, "    binds:", "    lean_http2: false\n    binds:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if off.Listens["app"].LeanHTTP2On() {
		t.Errorf("lean_http2: false left the lean loop on")
	}
	if cfg.ShutdownTimeout != 30*time.Second || cfg.AccessLog.Path != "stderr" {
		t.Errorf("shutdown %v access log %q", cfg.ShutdownTimeout, cfg.AccessLog.Path)
	}
}

func TestInheritance(t *testing.T) {
	cfg, err := Parse([]byte(`
defaults:
  timeouts: {connect: 2, http_request: 500ms}
  check: {inter: 3s, fall: 4}
  forwardfor: false
listens:
  a:
    binds: [127.0.0.1:1]
    servers: [{addr: 127.0.0.1:2}]
  b:
    binds: [127.0.0.1:3]
    timeouts: {connect: 1s}
    check: {fall: 9}
    forwardfor: true
    servers: [{addr: 127.0.0.1:4}]
`))
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Listens["a"], cfg.Listens["b"]
	if a.Timeouts.Connect != 2*time.Second || a.Timeouts.HTTPRequest != 500*time.Millisecond || a.Check.Fall != 4 || a.ForwardForOn() {
		t.Errorf("a inherits %+v %+v forwardfor %v", a.Timeouts, a.Check, a.ForwardForOn())
	}
	if b.Timeouts.Connect != time.Second || b.Timeouts.HTTPRequest != 500*time.Millisecond || b.Check.Fall != 9 || b.Check.Inter != 3*time.Second || !b.ForwardForOn() {
		t.Errorf("b overrides %+v %+v forwardfor %v", b.Timeouts, b.Check, b.ForwardForOn())
	}
	if b.Timeouts.Queue != time.Second {
		t.Errorf("b queue %v, want its own connect (1s)", b.Timeouts.Queue)
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("EDGE_PORT", "9000")
	t.Setenv("EDGE_MAXCONN", "7")
	cfg, err := Parse([]byte(`
listens:
  app:
    binds: ["127.0.0.1:${EDGE_PORT}"]
    servers:
      - addr: 127.0.0.1:1
        maxconn: ${EDGE_MAXCONN}
`))
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Listens["app"]; l.Binds[0].Addr != "127.0.0.1:9000" || l.Servers[0].MaxConn != 7 {
		t.Fatalf("bind %q maxconn %d", l.Binds[0].Addr, l.Servers[0].MaxConn)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"unknown key", minimal + "bogus: 1\n", "field bogus not found"},
		{"unknown nested key", strings.Replace(minimal, "addr: 127.0.0.1:9000", "addr: 127.0.0.1:9000, maxcon: 3", 1), "field maxcon not found"},
		{"unknown bind key", strings.Replace(minimal, "binds: [127.0.0.1:8080]", "binds: [{addr: 127.0.0.1:8080, tsl: {}}]", 1), "field tsl not found"},
		{"missing env", strings.Replace(minimal, "127.0.0.1:9000", `"${EDGE_TEST_UNSET_VAR}"`, 1), "listens.app.servers[0].addr: environment variable EDGE_TEST_UNSET_VAR is not set"},
		{"bad duration", minimal + "shutdown_timeout: soon\n", "shutdown_timeout (line 6): cannot unmarshal !!str `soon` into time.Duration"},
		{"bad integer", strings.Replace(minimal, "addr: 127.0.0.1:9000", "addr: 127.0.0.1:9000, maxconn: lots", 1), "listens.app.servers[0].maxconn (line 5): cannot unmarshal"},
		{"no listens", "admin: {listen: 127.0.0.1:0}\n", "listens: at least one listen is required"},
		{"bad mode", strings.Replace(minimal, "binds:", "mode: udp\n    binds:", 1), "listens.app.mode"},
		{"no servers", "listens:\n  app:\n    binds: [127.0.0.1:1]\n", "listens.app.servers: at least one server"},
		{"bad addr", strings.Replace(minimal, "127.0.0.1:9000", "nowhere", 1), "listens.app.servers[0].addr"},
		{"fall zero", strings.Replace(minimal, "servers:", "check: {fall: -1}\n    servers:", 1), "listens.app.check.fall"},
		{"tls without cert_dir", strings.Replace(minimal, "binds: [127.0.0.1:8080]", "binds: [{addr: 127.0.0.1:8080, tls: {alpn: [h2]}}]", 1), "listens.app.binds[0].tls.cert_dir: required"},
		{"bad alpn", strings.Replace(minimal, "binds: [127.0.0.1:8080]", "binds: [{addr: 127.0.0.1:8080, tls: {cert_dir: x, alpn: [spdy]}}]", 1), "listens.app.binds[0].tls.alpn"},
		{"bad verify", strings.Replace(minimal, "addr: 127.0.0.1:9000", "addr: 127.0.0.1:9000, tls: {verify: optional}", 1), "listens.app.servers[0].tls.verify"},
		{"verify none with ca", strings.Replace(minimal, "addr: 127.0.0.1:9000", "addr: 127.0.0.1:9000, tls: {verify: none, ca_file: ca.pem}", 1), "listens.app.servers[0].tls.ca_file"},
		{"tls in tcp mode", strings.Replace(minimal, "binds:", "mode: tcp\n    binds:", 1) + "", ""},
		{"duplicate bind", minimal + "  other:\n    binds: [127.0.0.1:8080]\n    servers: [{addr: 127.0.0.1:1}]\n", "listens.other.binds[0].addr: 127.0.0.1:8080 is already bound by listens.app"},
		{"duplicate server name", strings.Replace(minimal, "[{addr: 127.0.0.1:9000}]", "[{name: a, addr: 127.0.0.1:1}, {name: a, addr: 127.0.0.1:2}]", 1), "listens.app.servers[1].name"},
		{"bad log level", minimal + "log: {level: loud}\n", "log.level"},
		{"bad access log format", minimal + "access_log: {format: json}\n", "access_log.format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.text))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("valid: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestErrorsAreAllReported(t *testing.T) {
	_, err := Parse([]byte(`
log: {level: loud}
listens:
  app:
    binds: [nowhere]
    servers: [{addr: 127.0.0.1:1, weight: 1000}]
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"log.level", "listens.app.binds[0].addr", "listens.app.servers[0].weight"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error lacks %s:\n%v", key, err)
		}
	}
}

func TestBareSecondsAreDurations(t *testing.T) {
	cfg, err := Parse([]byte(minimal + "shutdown_timeout: 45\ndefaults:\n  check: {inter: 3, downinter: 1500ms}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ShutdownTimeout != 45*time.Second || cfg.Listens["app"].Check.Inter != 3*time.Second || cfg.Listens["app"].Check.DownInter != 1500*time.Millisecond {
		t.Fatalf("shutdown %v inter %v downinter %v", cfg.ShutdownTimeout, cfg.Listens["app"].Check.Inter, cfg.Listens["app"].Check.DownInter)
	}
}

// TestSandwichConfigLoads: the configuration docker-compose.yml mounts
// into pgswitch-edge is valid.
func TestSandwichConfigLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "deploy", "edge", "pgswitch-edge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	app := cfg.Listens["myapp"]
	if app == nil || len(app.Binds) != 2 || app.Servers[0].Addr != "127.0.0.1:8080" || app.Servers[0].MaxConn != 32 {
		t.Fatalf("myapp: %+v", app)
	}
}

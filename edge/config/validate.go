package config

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"time"
)

// Built-in defaults, where the file and defaults: say nothing.
var builtin = Settings{
	Timeouts: Timeouts{Connect: 5 * time.Second, Client: 10 * time.Second, Server: 10 * time.Second,
		HTTPRequest: 5 * time.Second},
	Check:     Check{Inter: 2 * time.Second, Fall: 3, Rise: 2},
	HTTPCheck: HTTPCheck{Method: "GET", Path: "/health"},
	Limits:    Limits{MaxHeaderBytes: 16384, MaxHeaders: 100},
}

func orDuration(v *time.Duration, def time.Duration) {
	if *v == 0 {
		*v = def
	}
}

func orInt(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

func orString(v *string, def string) {
	if *v == "" {
		*v = def
	}
}

// inherit fills the zero fields of s from def.
func (s *Settings) inherit(def *Settings) {
	t, d := &s.Timeouts, &def.Timeouts
	orDuration(&t.Connect, d.Connect)
	orDuration(&t.Client, d.Client)
	orDuration(&t.Server, d.Server)
	orDuration(&t.HTTPRequest, d.HTTPRequest)
	orDuration(&t.HTTPKeepAlive, d.HTTPKeepAlive)
	orDuration(&t.Queue, d.Queue)
	c, dc := &s.Check, &def.Check
	orDuration(&c.Inter, dc.Inter)
	orDuration(&c.DownInter, dc.DownInter)
	orDuration(&c.Timeout, dc.Timeout)
	orInt(&c.Fall, dc.Fall)
	orInt(&c.Rise, dc.Rise)
	h, dh := &s.HTTPCheck, &def.HTTPCheck
	orString(&h.Method, dh.Method)
	orString(&h.Path, dh.Path)
	orString(&h.Host, dh.Host)
	orInt(&h.ExpectStatus, dh.ExpectStatus)
	orInt(&s.Limits.MaxHeaderBytes, def.Limits.MaxHeaderBytes)
	orInt(&s.Limits.MaxHeaders, def.Limits.MaxHeaders)
	if s.ForwardFor == nil {
		s.ForwardFor = def.ForwardFor
	}
}

// derive fills the settings whose default is another setting.
func (s *Settings) derive() {
	orDuration(&s.Timeouts.HTTPKeepAlive, s.Timeouts.HTTPRequest)
	orDuration(&s.Timeouts.Queue, s.Timeouts.Connect)
	orDuration(&s.Check.DownInter, s.Check.Inter)
	orDuration(&s.Check.Timeout, s.Check.Inter)
}

func (c *Config) setDefaults() {
	orString(&c.Log.Level, "info")
	orString(&c.Log.Format, "text")
	orString(&c.AccessLog.Path, "stderr")
	orString(&c.AccessLog.Format, "clf")
	orDuration(&c.ShutdownTimeout, 30*time.Second)
	c.Defaults.inherit(&builtin)
	for name, l := range c.Listens {
		if l == nil {
			continue
		}
		l.Name = name
		if l.Mode == "" {
			l.Mode = ModeHTTP
		}
		l.Settings.inherit(&c.Defaults)
		l.Settings.derive()
		for i, s := range l.Servers {
			if s == nil {
				continue
			}
			if s.Name == "" {
				s.Name = fmt.Sprintf("%s%02d", name, i+1)
			}
			orInt(&s.Weight, 1)
			if s.TLS != nil {
				orString(&s.TLS.Verify, "required")
				if s.TLS.ServerName == "" {
					s.TLS.ServerName, _, _ = net.SplitHostPort(s.Addr)
				}
			}
		}
		for _, b := range l.Binds {
			if b != nil && b.TLS != nil {
				if len(b.TLS.ALPN) == 0 {
					b.TLS.ALPN = []string{"h2", "http/1.1"}
				}
				orString(&b.TLS.MinVersion, "1.2")
			}
		}
	}
	c.Defaults.derive()
}

func (c *Config) validate(errs *[]error) {
	bad := func(key, format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	switch c.AccessLog.Format {
	case "clf", "combined":
	default:
		bad("access_log.format", "%q is not clf or combined", c.AccessLog.Format)
	}
	if c.Admin.Listen != "" {
		checkAddr("admin.listen", c.Admin.Listen, bad)
	}
	if c.ShutdownTimeout < 0 {
		bad("shutdown_timeout", "must not be negative")
	}
	if len(c.Listens) == 0 {
		bad("listens", "at least one listen is required")
	}
	binds := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.Listens)) {
		l := c.Listens[name]
		key := "listens." + name
		if l == nil {
			bad(key, "empty")
			continue
		}
		l.validate(key, bad)
		for i, b := range l.Binds {
			if b == nil {
				continue
			}
			if _, port, _ := net.SplitHostPort(b.Addr); port == "0" {
				continue // a port the system chooses: never the same twice
			}
			if other, dup := binds[b.Addr]; dup {
				bad(fmt.Sprintf("%s.binds[%d].addr", key, i), "%s is already bound by %s", b.Addr, other)
			}
			binds[b.Addr] = key
		}
	}
}

func checkAddr(key, addr string, bad func(string, string, ...any)) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		bad(key, "%q is not host:port", addr)
		return
	}
	_ = host
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad(key, "port %q is not a number from 0 to 65535", port)
	}
}

func (l *Listen) validate(key string, bad func(string, string, ...any)) {
	switch l.Mode {
	case ModeHTTP, ModeTCP:
	default:
		bad(key+".mode", "%q is not http or tcp", l.Mode)
	}
	if len(l.Binds) == 0 {
		bad(key+".binds", "at least one bind is required")
	}
	for i, b := range l.Binds {
		bk := fmt.Sprintf("%s.binds[%d]", key, i)
		if b == nil {
			bad(bk, "empty")
			continue
		}
		checkAddr(bk+".addr", b.Addr, bad)
		if b.TLS == nil {
			continue
		}
		if l.Mode != ModeHTTP {
			bad(bk+".tls", "TLS termination is for http listens")
		}
		if b.TLS.CertDir == "" {
			bad(bk+".tls.cert_dir", "required")
		}
		for _, p := range b.TLS.ALPN {
			if p != "h2" && p != "http/1.1" {
				bad(bk+".tls.alpn", "%q is not h2 or http/1.1", p)
			}
		}
		if v := b.TLS.MinVersion; v != "1.2" && v != "1.3" {
			bad(bk+".tls.min_version", "%q is not 1.2 or 1.3", v)
		}
	}
	s := &l.Settings
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"timeouts.connect", s.Timeouts.Connect}, {"timeouts.client", s.Timeouts.Client},
		{"timeouts.server", s.Timeouts.Server}, {"timeouts.http_request", s.Timeouts.HTTPRequest},
		{"timeouts.http_keep_alive", s.Timeouts.HTTPKeepAlive}, {"timeouts.queue", s.Timeouts.Queue},
		{"check.inter", s.Check.Inter}, {"check.downinter", s.Check.DownInter}, {"check.timeout", s.Check.Timeout},
	} {
		if d.v <= 0 {
			bad(key+"."+d.key, "must be positive")
		}
	}
	if s.Check.Fall < 1 {
		bad(key+".check.fall", "must be at least 1")
	}
	if s.Check.Rise < 1 {
		bad(key+".check.rise", "must be at least 1")
	}
	if st := s.HTTPCheck.ExpectStatus; st != 0 && (st < 100 || st > 599) {
		bad(key+".http_check.expect_status", "%d is not an HTTP status", st)
	}
	if p := s.HTTPCheck.Path; p == "" || p[0] != '/' {
		bad(key+".http_check.path", "%q must start with /", p)
	}
	if s.Limits.MaxHeaderBytes < 1024 {
		bad(key+".limits.max_header_bytes", "must be at least 1024")
	}
	if s.Limits.MaxHeaders < 1 {
		bad(key+".limits.max_headers", "must be at least 1")
	}
	if len(l.Servers) == 0 {
		bad(key+".servers", "at least one server is required")
	}
	names := map[string]bool{}
	for i, srv := range l.Servers {
		sk := fmt.Sprintf("%s.servers[%d]", key, i)
		if srv == nil {
			bad(sk, "empty")
			continue
		}
		if names[srv.Name] {
			bad(sk+".name", "%q is used twice", srv.Name)
		}
		names[srv.Name] = true
		if srv.Addr == "" {
			bad(sk+".addr", "required")
		} else {
			checkAddr(sk+".addr", srv.Addr, bad)
		}
		if srv.MaxConn < 0 {
			bad(sk+".maxconn", "must not be negative")
		}
		if srv.Weight < 1 || srv.Weight > 256 {
			bad(sk+".weight", "must be from 1 to 256")
		}
		if srv.TLS == nil {
			continue
		}
		if l.Mode != ModeHTTP {
			bad(sk+".tls", "HTTPS to servers is for http listens")
		}
		switch srv.TLS.Verify {
		case "required", "none":
		default:
			bad(sk+".tls.verify", "%q is not required or none", srv.TLS.Verify)
		}
		if srv.TLS.Verify == "none" && srv.TLS.CAFile != "" {
			bad(sk+".tls.ca_file", "set with verify: none, which would ignore it")
		}
	}
}

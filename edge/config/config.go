package config

import "time"

// Config is a whole, validated configuration. Load returns it with every
// default filled in and every listen's settings resolved against defaults,
// so callers never check for zero values.
type Config struct {
	// Admin is the address of /metrics and /status; empty turns it off.
	Admin Admin `yaml:"admin"`
	// Log is pgswitch-edge's own log (log/slog), always on stderr.
	Log Log `yaml:"log"`
	// AccessLog is the one line per request.
	AccessLog AccessLog `yaml:"access_log"`
	// ShutdownTimeout is how long SIGTERM waits for requests and TCP
	// connections in flight before it closes them (default 30s).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Defaults apply to every listen that does not set the same key.
	Defaults Settings `yaml:"defaults"`
	// Listens are keyed by name (HAProxy's `listen NAME`).
	Listens map[string]*Listen `yaml:"listens"`
}

// Admin is the metrics and status endpoint.
type Admin struct {
	Listen string `yaml:"listen"`
	// PProf serves Go's profiles under /debug/pprof/ (default false): for
	// profiling a benchmark, not for an address others can reach.
	PProf bool `yaml:"pprof"`
}

// Log configures pgswitch-edge's own messages.
type Log struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is text (default) or json.
	Format string `yaml:"format"`
}

// AccessLog configures the request log.
type AccessLog struct {
	// Path is "stderr" (default), "stdout", a file (appended to, reopened
	// on reload) or "off".
	Path string `yaml:"path"`
	// Format is clf (default: Common Log Format) or combined (CLF plus
	// referer and user agent).
	Format string `yaml:"format"`
	// DontLogNull leaves out connections that never sent a request
	// (default true, HAProxy's `option dontlognull`).
	DontLogNull *bool `yaml:"dontlognull"`
}

// Mode is what a listen proxies.
type Mode string

const (
	ModeHTTP Mode = "http"
	ModeTCP  Mode = "tcp"
)

// Settings are the keys a listen may set or inherit from defaults.
type Settings struct {
	Timeouts  Timeouts  `yaml:"timeouts"`
	Check     Check     `yaml:"check"`
	HTTPCheck HTTPCheck `yaml:"http_check"`
	Limits    Limits    `yaml:"limits"`
	// ForwardFor adds X-Forwarded-For, X-Forwarded-Proto and
	// X-Forwarded-Host (default true).
	ForwardFor *bool `yaml:"forwardfor"`
}

// Timeouts are HAProxy's `timeout` settings.
type Timeouts struct {
	// Connect bounds a connection to a server (default 5s).
	Connect time.Duration `yaml:"connect"`
	// Client is the longest a client may stay silent while it should send
	// or receive (default 10s).
	Client time.Duration `yaml:"client"`
	// Server is the longest wait for a server's response headers, and in
	// TCP mode for any byte from it (default 10s).
	Server time.Duration `yaml:"server"`
	// HTTPRequest bounds the time a client takes to send complete request
	// headers, from the connection (first request) or from its first byte
	// (later requests): past it, 408 and close (default 5s).
	HTTPRequest time.Duration `yaml:"http_request"`
	// HTTPKeepAlive is the longest wait for the next request on a
	// keep-alive connection (default: http_request, as in HAProxy).
	HTTPKeepAlive time.Duration `yaml:"http_keep_alive"`
	// Queue is the longest a request or TCP connection waits for a server
	// below its maxconn (default: connect, as in HAProxy); then 503.
	Queue time.Duration `yaml:"queue"`
}

// Check are the health check settings of a listen's servers.
type Check struct {
	// Inter is the wait between checks while a server is up (default 2s).
	Inter time.Duration `yaml:"inter"`
	// DownInter is the wait while it is down (default: inter).
	DownInter time.Duration `yaml:"downinter"`
	// Fall failed checks in a row mark a server down (default 3).
	Fall int `yaml:"fall"`
	// Rise successful checks in a row mark it up (default 2).
	Rise int `yaml:"rise"`
	// Timeout bounds one check (default: inter).
	Timeout time.Duration `yaml:"timeout"`
}

// HTTPCheck is the request an HTTP listen's checks send. TCP listens check
// that a connection opens.
type HTTPCheck struct {
	// Method defaults to GET.
	Method string `yaml:"method"`
	// Path defaults to /health.
	Path string `yaml:"path"`
	// Host is the Host header (default: the server's address).
	Host string `yaml:"host"`
	// ExpectStatus is the status a healthy server answers; 0 (default)
	// accepts any 2xx or 3xx, as HAProxy's httpchk does.
	ExpectStatus int `yaml:"expect_status"`
}

// Limits bound what a client may send.
type Limits struct {
	// MaxHeaderBytes bounds the request line and headers (default 16384).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxHeaders bounds the number of request header lines (default 100).
	MaxHeaders int `yaml:"max_headers"`
}

// Listen is one proxy: its binds and the servers behind them.
type Listen struct {
	// Name is the listen's key in Config.Listens.
	Name string `yaml:"-"`
	// Mode is http (default) or tcp.
	Mode  Mode    `yaml:"mode"`
	Binds []*Bind `yaml:"binds"`
	// Settings inherited from Config.Defaults where not set here.
	Settings `yaml:",inline"`
	// RewriteHost sends the server's name as Host instead of the client's
	// (for outbound listens in front of a virtual-hosted HTTPS service).
	RewriteHost bool `yaml:"rewrite_host"`
	// AllBackups sends traffic to every up backup server when no other
	// server is up; by default only the first up backup takes it.
	AllBackups bool `yaml:"all_backups"`
	// LeanHTTP2 serves HTTP/2 clients with pgswitch-edge's own loop (a
	// goroutine reading the connection's frames, one per stream in flight,
	// answers coalesced into few TLS writes; see httpproxy/h2.go) instead
	// of net/http's server (false). On by default.
	LeanHTTP2 *bool     `yaml:"lean_http2"`
	Servers   []*Server `yaml:"servers"`
}

// Bind is one address a listen accepts connections on. In the YAML file a
// bind may be written as its address alone.
type Bind struct {
	Addr string   `yaml:"addr"`
	TLS  *BindTLS `yaml:"tls"`
}

// BindTLS terminates TLS on a bind.
type BindTLS struct {
	// CertDir holds the certificates: every *.pem or *.crt file, with its
	// key in the same file or in the file of the same name ending .key.
	CertDir string `yaml:"cert_dir"`
	// DefaultCert is the file (in CertDir) served when no certificate
	// matches the client's SNI (default: the first file by name).
	DefaultCert string `yaml:"default_cert"`
	// ALPN lists the protocols offered (default h2, http/1.1).
	ALPN []string `yaml:"alpn"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// SessionTickets lets clients resume TLS sessions (default true);
	// false is HAProxy's no-tls-tickets: every connection does a full
	// handshake.
	SessionTickets *bool `yaml:"session_tickets"`
}

// Server is one server behind a listen.
type Server struct {
	Name string `yaml:"name"`
	// Addr is host:port.
	Addr string `yaml:"addr"`
	// Check turns health checks on (default true).
	Check *bool `yaml:"check"`
	// MaxConn is the most requests (HTTP) or connections (TCP) in flight
	// to the server; 0 (default) means no limit.
	MaxConn int `yaml:"maxconn"`
	// Backup servers take traffic only when no other server is up.
	Backup bool `yaml:"backup"`
	// Weight is the server's share in round robin (default 1).
	Weight int `yaml:"weight"`
	// TLS makes connections to the server HTTPS (HTTP mode only).
	TLS *ServerTLS `yaml:"tls"`
}

// ServerTLS is how pgswitch-edge connects to an HTTPS server.
type ServerTLS struct {
	// Verify is required (default) or none. none must be written out: it
	// is never a fallback.
	Verify string `yaml:"verify"`
	// CAFile holds the PEM certificates the server's chain must lead to;
	// empty means the system's roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is sent as SNI and checked against the certificate
	// (default: the host of Addr).
	ServerName string `yaml:"server_name"`
}

// Checked reports whether the server is health checked.
func (s *Server) Checked() bool { return s.Check == nil || *s.Check }

// ForwardForOn reports whether X-Forwarded-* headers are added.
func (s *Settings) ForwardForOn() bool { return s.ForwardFor == nil || *s.ForwardFor }

// LeanHTTP2On reports whether HTTP/2 clients are served by the lean loop.
func (l *Listen) LeanHTTP2On() bool { return l.LeanHTTP2 == nil || *l.LeanHTTP2 }

// DontLogNullOn reports whether empty connections stay out of the log.
func (a *AccessLog) DontLogNullOn() bool { return a.DontLogNull == nil || *a.DontLogNull }

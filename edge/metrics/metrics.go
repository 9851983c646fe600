package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pgswitch/pgswitch/edge/backend"
)

// NoServer is the server label of requests answered without a server
// (HAProxy's <NOSRV>).
const NoServer = "<NOSRV>"

// Metrics are the process's collectors.
type Metrics struct {
	Registry *prometheus.Registry

	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	handshakes *prometheus.CounterVec
	tcpConns   *prometheus.CounterVec
	refused    *prometheus.CounterVec
}

// New registers every collector; pools returns the pools in force at each
// scrape.
func New(pools func() []*backend.Pool) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgswitch_edge_http_requests_total",
			Help: "HTTP requests answered, by listen, server and status class (1xx…5xx).",
		}, []string{"listen", "server", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pgswitch_edge_http_request_duration_seconds",
			Help:    "Time from a request's headers to the end of its response.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"listen"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgswitch_edge_tls_handshakes_total",
			Help: "TLS handshakes with clients, by listen and result (full, resumed, failed).",
		}, []string{"listen", "result"}),
		tcpConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgswitch_edge_tcp_connections_total",
			Help: "TCP-mode connections forwarded, by listen and server.",
		}, []string{"listen", "server"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgswitch_edge_refused_total",
			Help: "Requests or connections refused before reaching a server, by listen and reason.",
		}, []string{"listen", "reason"}),
	}
	m.Registry.MustRegister(m.requests, m.duration, m.handshakes, m.tcpConns, m.refused,
		&poolCollector{pools: pools},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Listen is one listen's collectors, resolved once so that requests do no
// label lookups.
type Listen struct {
	m        *Metrics
	name     string
	Duration prometheus.Observer
	// HandshakeFull, HandshakeResumed and HandshakeFailed count TLS
	// handshakes with clients.
	HandshakeFull, HandshakeResumed, HandshakeFailed prometheus.Counter
}

// ForListen resolves a listen's collectors.
func (m *Metrics) ForListen(name string) *Listen {
	return &Listen{m: m, name: name, Duration: m.duration.WithLabelValues(name),
		HandshakeFull: m.handshakes.WithLabelValues(name, "full"), HandshakeResumed: m.handshakes.WithLabelValues(name, "resumed"),
		HandshakeFailed: m.handshakes.WithLabelValues(name, "failed")}
}

// Codes counts a server's answers by status class.
type Codes [6]prometheus.Counter

// Codes resolves the request counters of one server (or NoServer).
func (l *Listen) Codes(server string) *Codes {
	var c Codes
	for i := range c {
		class := "other"
		if i > 0 {
			class = strconv.Itoa(i) + "xx"
		}
		c[i] = l.m.requests.WithLabelValues(l.name, server, class)
	}
	return &c
}

// Inc counts one answer with status code.
func (c *Codes) Inc(code int) {
	i := code / 100
	if i < 1 || i > 5 {
		i = 0
	}
	c[i].Inc()
}

// TCPConn resolves the connection counter of one TCP-mode server.
func (l *Listen) TCPConn(server string) prometheus.Counter {
	return l.m.tcpConns.WithLabelValues(l.name, server)
}

// Refused resolves the counter of one refusal reason.
func (l *Listen) Refused(reason string) prometheus.Counter {
	return l.m.refused.WithLabelValues(l.name, reason)
}

var (
	upDesc       = prometheus.NewDesc("pgswitch_edge_server_up", "1 while a server is up (checks passing, or not checked).", []string{"listen", "server"}, nil)
	inFlightDesc = prometheus.NewDesc("pgswitch_edge_server_in_flight", "Requests or connections in flight to a server.", []string{"listen", "server"}, nil)
	maxConnDesc  = prometheus.NewDesc("pgswitch_edge_server_maxconn", "A server's maxconn (0: no limit).", []string{"listen", "server"}, nil)
	checksDesc   = prometheus.NewDesc("pgswitch_edge_server_checks_total", "Health checks of a server.", []string{"listen", "server"}, nil)
	failsDesc    = prometheus.NewDesc("pgswitch_edge_server_check_failures_total", "Failed health checks of a server.", []string{"listen", "server"}, nil)
	queueDesc    = prometheus.NewDesc("pgswitch_edge_queue_length", "Requests or connections waiting for a server below its maxconn.", []string{"listen"}, nil)
)

// poolCollector reads the pools' state at scrape time.
type poolCollector struct {
	pools func() []*backend.Pool
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{upDesc, inFlightDesc, maxConnDesc, checksDesc, failsDesc, queueDesc} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.pools() {
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(p.QueueLen()), p.Name)
		for _, s := range p.Status() {
			up := 0.0
			if s.Up {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up, p.Name, s.Name)
			ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(s.InFlight), p.Name, s.Name)
			ch <- prometheus.MustNewConstMetric(maxConnDesc, prometheus.GaugeValue, float64(s.MaxConn), p.Name, s.Name)
			ch <- prometheus.MustNewConstMetric(checksDesc, prometheus.CounterValue, float64(s.Checks), p.Name, s.Name)
			ch <- prometheus.MustNewConstMetric(failsDesc, prometheus.CounterValue, float64(s.Failures), p.Name, s.Name)
		}
	}
}

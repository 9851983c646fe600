package admin

import (
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router"
)

// MetricsHandler serves /metrics (Prometheus text format), /healthz (the
// process is up) and /readyz (a primary or at least one replica is fit).
func MetricsHandler(r *router.Router) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(r))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready(r) {
			w.Write([]byte("ready\n"))
			return
		}
		http.Error(w, "no fit primary or replica", http.StatusServiceUnavailable)
	})
	return mux
}

// ready reports whether some configured server is usable as primary or replica.
func ready(r *router.Router) bool {
	snap := r.Topology()
	for _, db := range r.Config().Databases {
		for _, srv := range db.Servers {
			st := snap.Get(srv.Addr())
			if st.Usable() && (st.Role == config.RolePrimary || (st.Role == config.RoleReplica && !st.Lagging)) {
				return true
			}
		}
	}
	return false
}

// collector reads the router's state at scrape time: nothing is counted
// twice and the hot path pays nothing for metrics.
type collector struct {
	r *router.Router

	clients, serverConns, waiting, paused            *prometheus.Desc
	queries, serverQueries, received, sent, waitTime *prometheus.Desc
	causalReads                                      *prometheus.Desc
	up, role, lagBytes, lagSeconds, roleChanges      *prometheus.Desc
	checks, checkFailures                            *prometheus.Desc
}

func newCollector(r *router.Router) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("pgswitch_"+name, help, labels, nil)
	}
	return &collector{
		r:             r,
		clients:       d("clients", "Client connections.", "database"),
		serverConns:   d("server_connections", "Server connections by state: active, idle, tested (being reset), login.", "database", "server", "state"),
		waiting:       d("waiting_clients", "Clients waiting for a server connection.", "database"),
		paused:        d("database_paused", "1 while the database is paused.", "database"),
		queries:       d("queries_total", "Units of work routed, by route (read or write).", "database", "route"),
		serverQueries: d("server_queries_total", "Units of work routed to a server, by route.", "server", "route"),
		causalReads: d("causal_reads_total", "Reads that found no replica known to be caught up with the writes they must see (routing.consistency): "+
			"checked (ran on a replica behind a check of its replay position), behind (the check failed; counted again as waited or primary), "+
			"waited (then ran on a replica) or primary.", "database", "outcome"),
		received:      d("client_received_bytes_total", "Bytes received from clients.", "database"),
		sent:          d("client_sent_bytes_total", "Bytes sent to clients.", "database"),
		waitTime:      d("wait_seconds", "Time clients queued for a server connection (clients that had to queue).", "database"),
		up:            d("server_up", "1 if the server is up and usable per its health checks.", "server"),
		role:          d("server_role", "1 for the server's current role.", "server", "role"),
		lagBytes:      d("replica_lag_bytes", "How far a replica's replay is behind the primary, in bytes.", "server"),
		lagSeconds:    d("replica_lag_seconds", "How long ago a replica replayed its last transaction.", "server"),
		roleChanges:   d("server_role_changes_total", "Role changes seen by health checks.", "server"),
		checks:        d("server_checks_total", "Health checks run.", "server"),
		checkFailures: d("server_check_failures_total", "Health checks that failed.", "server"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.clients, c.serverConns, c.waiting, c.paused, c.queries, c.serverQueries,
		c.received, c.sent, c.waitTime, c.up, c.role, c.lagBytes, c.lagSeconds, c.roleChanges, c.checks, c.checkFailures,
		c.causalReads} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.r.Inspect()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	clients := map[string]int{}
	for _, cl := range snap.Clients {
		clients[cl.Database]++
	}
	type connKey struct{ db, server, state string }
	conns := map[connKey]int{}
	waiting := map[string]int{}
	hists := map[string]*pool.WaitHistogram{}
	for _, p := range snap.Pools {
		k := p.Key
		for _, s := range []string{"active", "idle", "tested", "login"} {
			conns[connKey{k.Database, k.Server, s}] += 0
		}
		for _, ci := range p.Conns {
			if ci.State != pool.ConnNew {
				conns[connKey{k.Database, k.Server, string(ci.State)}]++
			}
		}
		conns[connKey{k.Database, k.Server, "login"}] += max(p.Stats.Total-len(p.Conns), 0)
		waiting[k.Database] += p.Stats.Waiting
		h := p.Waits
		if acc := hists[k.Database]; acc == nil {
			h.Counts = slices.Clone(h.Counts) // summed into below; the snapshot stays as it was
			hists[k.Database] = &h
		} else {
			for i, n := range h.Counts {
				acc.Counts[i] += n
			}
			acc.Sum += h.Sum
			acc.Count += h.Count
		}
	}
	for k, n := range conns {
		gauge(c.serverConns, float64(n), k.db, k.server, k.state)
	}
	servers := map[string]bool{}
	for name, db := range snap.Config.Databases {
		gauge(c.clients, float64(clients[name]), name)
		gauge(c.waiting, float64(waiting[name]), name)
		gauge(c.paused, boolFloat(snap.Databases[name].Paused), name)
		st := snap.Databases[name].Stats
		counter(c.queries, float64(st.Reads), name, "read")
		counter(c.queries, float64(st.Writes), name, "write")
		counter(c.causalReads, float64(st.CausalWaits), name, "waited")
		counter(c.causalReads, float64(st.CausalPrimary), name, "primary")
		counter(c.causalReads, float64(st.CausalChecked), name, "checked")
		counter(c.causalReads, float64(st.CausalBehind), name, "behind")
		counter(c.received, float64(st.Received), name)
		counter(c.sent, float64(st.Sent), name)
		h := hists[name]
		if h == nil {
			h = &pool.WaitHistogram{Counts: make([]uint64, len(pool.WaitBuckets)+1)}
		}
		buckets := map[float64]uint64{}
		var cum uint64
		for i, le := range pool.WaitBuckets {
			cum += h.Counts[i]
			buckets[le.Seconds()] = cum
		}
		ch <- prometheus.MustNewConstHistogram(c.waitTime, h.Count, h.Sum.Seconds(), buckets, name)
		for _, srv := range db.Servers {
			servers[srv.Addr()] = true
		}
	}
	for addr := range servers {
		st := snap.Topology.Get(addr)
		gauge(c.up, boolFloat(st.Usable()), addr)
		for _, role := range []config.Role{config.RolePrimary, config.RoleReplica} {
			gauge(c.role, boolFloat(st.Role == role), addr, string(role))
		}
		gauge(c.lagBytes, float64(st.LagBytes), addr)
		gauge(c.lagSeconds, st.LagSeconds, addr)
		counter(c.roleChanges, float64(st.Counts.RoleChanges), addr)
		counter(c.checks, float64(st.Counts.Checks), addr)
		counter(c.checkFailures, float64(st.Counts.Failures), addr)
		if sc, ok := snap.Servers[addr]; ok {
			counter(c.serverQueries, float64(sc.Reads), addr, "read")
			counter(c.serverQueries, float64(sc.Writes), addr, "write")
		}
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsTimeout bounds a scrape's reading and writing.
const metricsTimeout = 30 * time.Second

// NewMetricsServer returns the HTTP server of the metrics listener.
func NewMetricsServer(r *router.Router) *http.Server {
	return &http.Server{Handler: MetricsHandler(r), ReadHeaderTimeout: metricsTimeout, WriteTimeout: metricsTimeout}
}

package admin

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router"
)

// The SHOW commands answer from one snapshot of the router. The
// PgBouncer-compatible ones begin with PgBouncer's columns, in its order and
// under its names; pgswitch's own columns come after them.

func (con *Console) showVersion(*router.Snapshot) *table {
	t := newTable(textCol("version"))
	t.add("pgswitch " + con.opts.Version)
	return t
}

// showProcess tells which process serves: after a binary upgrade, new
// connections reach the new process, whose predecessor is the old one. It
// shows the threads running pgswitch's code now (workers adapts them).
func (con *Console) showProcess(snap *router.Snapshot) *table {
	t := newTable(intCol("pid"), textCol("version"), textCol("started"), intCol("predecessor"), intCol("threads"))
	t.add(os.Getpid(), "pgswitch "+con.opts.Version, snap.Started.UTC().Format(time.RFC3339), con.opts.Predecessor,
		runtime.GOMAXPROCS(0))
	return t
}

func hostPort(a net.Addr) (string, int) {
	if a == nil {
		return "", 0
	}
	if u, ok := a.(*net.UnixAddr); ok {
		// As PgBouncer: "unix", and the port the socket is named for
		// (.s.PGSQL.6432) where the address has the socket's name.
		_, port, _ := strings.Cut(filepath.Base(u.Name), ".s.PGSQL.")
		p, _ := strconv.Atoi(port)
		return "unix", p
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), 0
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

func splitAddr(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

func seconds(d time.Duration) (int64, int64) {
	return int64(d / time.Second), int64(d % time.Second / time.Microsecond)
}

func (con *Console) showDatabases(snap *router.Snapshot) *table {
	t := newTable(textCol("name"), textCol("host"), intCol("port"), textCol("database"), textCol("force_user"),
		intCol("pool_size"), intCol("min_pool_size"), intCol("reserve_pool_size"), intCol("server_lifetime"),
		textCol("pool_mode"), textCol("load_balance_hosts"), intCol("max_connections"), intCol("current_connections"),
		intCol("max_client_connections"), intCol("current_client_connections"), intCol("paused"), intCol("disabled"),
		// pgswitch's own:
		textCol("route"), textCol("servers"))
	cfg := snap.Config
	clients := map[string]int{}
	for _, c := range snap.Clients {
		clients[c.Database]++
	}
	open := map[string]int{}
	for _, p := range snap.Pools {
		open[p.Key.Database] += p.Stats.Total
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Databases)) {
		db := cfg.Databases[name]
		primary := db.Servers[0]
		var servers []string
		maxConn := 0
		for _, srv := range db.Servers {
			st := snap.Topology.Get(srv.Addr())
			if st.Role == config.RolePrimary && st.Usable() {
				primary = srv
			}
			servers = append(servers, srv.Addr())
			maxConn += srv.MaxConn
		}
		var mode any
		if db.PoolMode != "" {
			mode = string(db.PoolMode)
		}
		size := db.PoolSize
		if size == 0 {
			size = cfg.Pool.Size
		}
		t.add(name, primary.Host, primary.Port, db.DBName, nil,
			size, cfg.Pool.MinIdle, 0, int64(cfg.Timeouts.ServerLifetime/time.Second),
			mode, cfg.Routing.LoadBalance, maxConn, open[name],
			0, clients[name], snap.Databases[name].Paused, snap.Databases[name].Disabled,
			string(db.Route), strings.Join(servers, ","))
	}
	return t
}

func (con *Console) showPools(snap *router.Snapshot) *table {
	t := newTable(textCol("database"), textCol("user"), intCol("cl_active"), intCol("cl_waiting"),
		intCol("cl_active_cancel_req"), intCol("cl_waiting_cancel_req"), intCol("sv_active"), intCol("sv_active_cancel"),
		intCol("sv_being_canceled"), intCol("sv_idle"), intCol("sv_used"), intCol("sv_tested"), intCol("sv_login"),
		intCol("maxwait"), intCol("maxwait_us"), textCol("pool_mode"), textCol("load_balance_hosts"),
		// pgswitch's own:
		intCol("paused"), intCol("servers"))
	type row struct {
		clients, waiting, active, idle, tested, login, servers int
		maxWait                                                time.Duration
		mode                                                   config.PoolMode
	}
	rows := map[[2]string]*row{}
	get := func(db, user string) *row {
		k := [2]string{db, user}
		if rows[k] == nil {
			rows[k] = &row{}
		}
		return rows[k]
	}
	cfg := snap.Config
	for _, c := range snap.Clients {
		x := get(c.Database, c.User)
		x.clients++
		x.mode = c.Mode
	}
	for _, p := range snap.Pools {
		x := get(p.Key.Database, p.Key.User)
		x.servers++
		x.waiting += p.Stats.Waiting
		x.maxWait = max(x.maxWait, p.MaxWait)
		for _, c := range p.Conns {
			switch c.State {
			case pool.ConnActive:
				x.active++
			case pool.ConnIdle:
				x.idle++
			case pool.ConnTested:
				x.tested++
			}
		}
		x.login += max(p.Stats.Total-len(p.Conns), 0)
	}
	keys := make([][2]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		x := rows[k]
		mode := x.mode
		if mode == "" {
			mode = cfg.PoolModeFor(cfg.Databases[k[0]], cfg.Users[k[1]])
		}
		s, us := seconds(x.maxWait)
		t.add(k[0], k[1], max(x.clients-x.waiting, 0), x.waiting, 0, 0, x.active, 0,
			0, x.idle, 0, x.tested, x.login,
			s, us, string(mode), cfg.Routing.LoadBalance, // as SHOW DATABASES
			snap.Databases[k[0]].Paused, x.servers)
	}
	return t
}

// connColumns are the columns SHOW CLIENTS and SHOW SERVERS share, as
// PgBouncer's.
func connColumns() []column {
	return []column{textCol("type"), textCol("user"), textCol("database"), textCol("replication"), textCol("state"),
		textCol("addr"), intCol("port"), textCol("local_addr"), intCol("local_port"), textCol("connect_time"),
		textCol("request_time"), intCol("wait"), intCol("wait_us"), intCol("close_needed"), textCol("ptr"),
		textCol("link"), intCol("remote_pid"), textCol("tls"), textCol("application_name"),
		intCol("prepared_statements"), intCol("id")}
}

func (con *Console) showClients(snap *router.Snapshot) *table {
	cols := append(connColumns(), textCol("pool_mode"), intCol("pinned"), textCol("server"))
	t := newTable(cols...)
	for i, c := range snap.Clients {
		host, port := hostPort(c.Addr)
		lhost, lport := hostPort(c.LocalAddr)
		state := "idle"
		link := ""
		if c.Server != "" {
			state = "active"
			link = c.Server + "/" + strconv.FormatUint(uint64(c.ServerPID), 10)
		} else if c.Waiting {
			state = "waiting"
		}
		t.add("C", c.User, c.Database, "none", state,
			host, port, lhost, lport, c.Connected,
			nil, 0, 0, 0, fmt.Sprintf("%x", c.Key),
			link, 0, "", c.ApplicationName,
			0, i+1,
			string(c.Mode), c.Pinned, c.Server)
	}
	return t
}

func (con *Console) showServers(snap *router.Snapshot) *table {
	cols := append(connColumns(), textCol("role"), textCol("health"), intCol("lag_bytes"), floatCol("lag_seconds"),
		intCol("units_served"), intCol("server_connections"), intCol("reads_routed"), intCol("writes_routed"))
	t := newTable(cols...)
	open := map[string]int{}
	for _, p := range snap.Pools {
		open[p.Key.Server] += p.Stats.Total
	}
	id := 0
	for _, p := range snap.Pools {
		k := p.Key
		host, port := splitAddr(k.Server)
		st := snap.Topology.Get(k.Server)
		routed := snap.Servers[k.Server]
		for _, c := range p.Conns {
			id++
			lhost, lport := hostPort(c.LocalAddr)
			link := ""
			if c.ClientAddr != nil {
				ch, cp := hostPort(c.ClientAddr)
				link = net.JoinHostPort(ch, strconv.Itoa(cp))
			}
			t.add("S", k.User, k.Database, "none", string(c.State),
				host, port, lhost, lport, c.Created,
				nil, 0, 0, c.CloseNeeded, p.Ref+"/"+strconv.Itoa(int(c.PID)),
				link, c.PID, "", "",
				0, id,
				string(st.Role), healthState(st.Up, st.Excluded, st.Lagging), st.LagBytes, st.LagSeconds,
				c.Served, open[k.Server], routed.Reads, routed.Writes)
		}
	}
	return t
}

func healthState(up, excluded, lagging bool) string {
	switch {
	case !up:
		return "down"
	case excluded:
		return "excluded"
	case lagging:
		return "lagging"
	}
	return "up"
}

// showStats counts since pgswitch started; unlike PgBouncer's, whose
// averages cover the last stats_period, the avg_ columns average over the
// process's life. xact time is how long server connections were given to
// clients; query time how long servers took to answer each batch.
func (con *Console) showStats(snap *router.Snapshot) *table {
	t := newTable(textCol("database"),
		intCol("total_xact_count"), intCol("total_query_count"), intCol("total_server_assignment_count"),
		intCol("total_server_closed_count"), intCol("total_received"), intCol("total_sent"),
		intCol("total_xact_time"), intCol("total_query_time"), intCol("total_wait_time"), intCol("total_server_lifetime"),
		intCol("total_client_parse_count"), intCol("total_server_parse_count"), intCol("total_bind_count"),
		intCol("avg_xact_count"), intCol("avg_query_count"), intCol("avg_server_assignment_count"),
		intCol("avg_recv"), intCol("avg_sent"), intCol("avg_xact_time"), intCol("avg_query_time"), intCol("avg_wait_time"),
		intCol("avg_server_lifetime"), intCol("avg_client_parse_count"), intCol("avg_server_parse_count"), intCol("avg_bind_count"),
		// pgswitch's own:
		intCol("reads_routed"), intCol("writes_routed"), intCol("causal_waits"), intCol("causal_primary"),
		intCol("causal_checked"), intCol("causal_behind"))
	for _, s := range dbStats(snap) {
		t.add(s.name,
			s.assigned, s.queries, s.assigned,
			0, s.recv, s.sent,
			s.busyUS, s.queryUS, s.waitUS, 0,
			s.clientParses, s.serverParses, s.binds,
			s.assigned/s.secs, s.queries/s.secs, s.assigned/s.secs,
			s.recv/s.secs, s.sent/s.secs, s.avgXact, s.avgQuery, s.avgWait,
			0, s.clientParses/s.secs, s.serverParses/s.secs, s.binds/s.secs,
			s.reads, s.writes, s.causalWaits, s.causalPrimary, s.causalChecked, s.causalBehind)
	}
	return t
}

// dbStat is one database's line of the SHOW STATS family.
type dbStat struct {
	name                                string
	assigned, queries, recv, sent, secs uint64
	busyUS, waitUS, avgXact, avgWait    uint64
	queryUS, avgQuery                   uint64
	clientParses, serverParses, binds   uint64
	reads, writes                       uint64
	causalWaits, causalPrimary          uint64
	causalChecked, causalBehind         uint64
}

func dbStats(snap *router.Snapshot) []dbStat {
	var out []dbStat
	// The router's uptime, at least a second.
	secs := uint64(max(time.Since(snap.Started), time.Second) / time.Second)
	for _, name := range slices.Sorted(maps.Keys(snap.Config.Databases)) {
		st := snap.Databases[name].Stats
		var wait, busy, query time.Duration
		var releases, batches uint64
		for _, p := range snap.Pools {
			if p.Key.Database != name {
				continue
			}
			wait += p.Stats.WaitTime
			busy += p.Busy
			releases += p.Releases
			query += p.Query
			batches += p.Batches
		}
		queryUS := uint64(query / time.Microsecond)
		avgQuery := uint64(0)
		if batches > 0 {
			avgQuery = queryUS / batches
		}
		busyUS := uint64(busy / time.Microsecond)
		avgXact := uint64(0)
		if releases > 0 {
			avgXact = busyUS / releases
		}
		assigned, queries, recv, sent := st.Assignments, st.Queries, st.Received, st.Sent
		waitUS := uint64(wait / time.Microsecond)
		avgWait := uint64(0)
		if assigned > 0 {
			avgWait = waitUS / assigned
		}
		out = append(out, dbStat{name: name, assigned: assigned, queries: queries, recv: recv, sent: sent, secs: secs,
			busyUS: busyUS, waitUS: waitUS, avgXact: avgXact, avgWait: avgWait,
			queryUS: queryUS, avgQuery: avgQuery, clientParses: st.ClientParses,
			serverParses: st.ServerParses, binds: st.Binds, reads: st.Reads, writes: st.Writes,
			causalWaits: st.CausalWaits, causalPrimary: st.CausalPrimary,
			causalChecked: st.CausalChecked, causalBehind: st.CausalBehind})
	}
	return out
}

func (con *Console) showStatsTotals(snap *router.Snapshot) *table { return statsPart(snap, false) }

func (con *Console) showStatsAverages(snap *router.Snapshot) *table { return statsPart(snap, true) }

// statsPart answers SHOW STATS_TOTALS or SHOW STATS_AVERAGES: PgBouncer's
// subsets of SHOW STATS without the total_/avg_ prefixes.
func statsPart(snap *router.Snapshot, averages bool) *table {
	t := newTable(textCol("database"), intCol("xact_count"), intCol("query_count"), intCol("server_assignment_count"),
		intCol("bytes_received"), intCol("bytes_sent"), intCol("xact_time"), intCol("query_time"), intCol("wait_time"),
		intCol("client_parse_count"), intCol("server_parse_count"), intCol("bind_count"))
	for _, s := range dbStats(snap) {
		if averages {
			t.add(s.name, s.assigned/s.secs, s.queries/s.secs, s.assigned/s.secs, s.recv/s.secs, s.sent/s.secs,
				s.avgXact, s.avgQuery, s.avgWait, s.clientParses/s.secs, s.serverParses/s.secs, s.binds/s.secs)
		} else {
			t.add(s.name, s.assigned, s.queries, s.assigned, s.recv, s.sent, s.busyUS, s.queryUS, s.waitUS,
				s.clientParses, s.serverParses, s.binds)
		}
	}
	return t
}

// showLists answers SHOW LISTS: counts in rows, as PgBouncer's (which
// pgbouncer_exporter reads); pgswitch keeps no free lists or DNS cache.
func (con *Console) showLists(snap *router.Snapshot) *table {
	t := newTable(textCol("list"), intCol("items"))
	cfg := snap.Config
	servers := 0
	for _, p := range snap.Pools {
		servers += p.Stats.Total
	}
	for _, row := range []struct {
		name string
		n    int
	}{
		{"databases", len(cfg.Databases)}, {"users", len(cfg.Users)}, {"pools", len(snap.Pools)},
		{"free_clients", 0}, {"used_clients", len(snap.Clients)}, {"login_clients", 0},
		{"free_servers", 0}, {"used_servers", servers},
		{"dns_names", 0}, {"dns_zones", 0}, {"dns_queries", 0}, {"dns_pending", 0},
	} {
		t.add(row.name, row.n)
	}
	return t
}

func (con *Console) showHealth(snap *router.Snapshot) *table {
	t := newTable(textCol("server"), textCol("role"), textCol("state"), textCol("reason"), intCol("lag_bytes"),
		floatCol("lag_seconds"), textCol("since"), intCol("timeline"), intCol("checks"), intCol("failures"),
		intCol("marked_down"), intCol("marked_up"), intCol("role_changes"), intCol("lag_exclusions"),
		intCol("connections"), intCol("reads_routed"), intCol("writes_routed"), textCol("databases"))
	cfg := snap.Config
	dbsOf := map[string][]string{}
	var addrs []string
	for _, name := range slices.Sorted(maps.Keys(cfg.Databases)) {
		for _, srv := range cfg.Databases[name].Servers {
			if dbsOf[srv.Addr()] == nil {
				addrs = append(addrs, srv.Addr())
			}
			dbsOf[srv.Addr()] = append(dbsOf[srv.Addr()], name)
		}
	}
	open := map[string]int{}
	for _, p := range snap.Pools {
		open[p.Key.Server] += p.Stats.Total
	}
	for _, addr := range addrs {
		st := snap.Topology.Get(addr)
		routed := snap.Servers[addr]
		t.add(addr, string(st.Role), healthState(st.Up, st.Excluded, st.Lagging), st.Reason, st.LagBytes,
			st.LagSeconds, st.Since, st.Timeline, st.Counts.Checks, st.Counts.Failures,
			st.Counts.MarkedDown, st.Counts.MarkedUp, st.Counts.RoleChanges, st.Counts.LagExclusions,
			open[addr], routed.Reads, routed.Writes, strings.Join(dbsOf[addr], ","))
	}
	return t
}

// maxRoutesShown is how many query shapes SHOW ROUTES shows, the most
// frequent.
const maxRoutesShown = 100

func (con *Console) showRoutes(snap *router.Snapshot) *table {
	t := newTable(textCol("database"), textCol("fingerprint"), textCol("query"), textCol("route"), textCol("rule"), intCol("count"))
	for _, rs := range snap.Routes[:min(len(snap.Routes), maxRoutesShown)] {
		t.add(rs.Database, rs.Fingerprint, rs.Query, rs.Route, rs.Rule, rs.Count)
	}
	return t
}

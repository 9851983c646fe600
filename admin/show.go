package admin

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/pool"
)

// show answers SHOW what. The PgBouncer-compatible commands begin with
// PgBouncer's columns, in its order and under its names; pgswitch's own
// columns come after them.
func (con *Console) show(what string) ([]pgproto3.BackendMessage, error) {
	var t *table
	switch what {
	case "HELP":
		return []pgproto3.BackendMessage{
			&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000",
				Message: "Console usage", Detail: "\t" + strings.Join(commandList, "\n\t")},
			&pgproto3.CommandComplete{CommandTag: []byte("SHOW")},
		}, nil
	case "VERSION":
		t = newTable(textCol("version"))
		t.add("pgswitch " + con.opts.Version)
	case "CONFIG":
		t = con.showConfig()
	case "DATABASES":
		t = con.showDatabases()
	case "POOLS":
		t = con.showPools()
	case "CLIENTS":
		t = con.showClients()
	case "SERVERS":
		t = con.showServers()
	case "STATS":
		t = con.showStats()
	case "STATS_TOTALS", "STATS_AVERAGES":
		t = con.showStatsPart(what == "STATS_AVERAGES")
	case "LISTS":
		t = con.showLists()
	case "HEALTH":
		t = con.showHealth()
	case "ROUTES":
		t = con.showRoutes()
	}
	return t.messages("SHOW"), nil
}

func hostPort(a net.Addr) (string, int) {
	if a == nil {
		return "", 0
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

func (con *Console) showDatabases() *table {
	t := newTable(textCol("name"), textCol("host"), intCol("port"), textCol("database"), textCol("force_user"),
		intCol("pool_size"), intCol("min_pool_size"), intCol("reserve_pool_size"), intCol("server_lifetime"),
		textCol("pool_mode"), textCol("load_balance_hosts"), intCol("max_connections"), intCol("current_connections"),
		intCol("max_client_connections"), intCol("current_client_connections"), intCol("paused"), intCol("disabled"),
		// pgswitch's own:
		textCol("route"), textCol("servers"))
	cfg := con.r.Config()
	snap := con.r.Topology()
	clients := map[string]int{}
	for _, c := range con.r.Clients() {
		clients[c.Database]++
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Databases)) {
		db := cfg.Databases[name]
		primary := db.Servers[0]
		var servers []string
		maxConn := 0
		for _, srv := range db.Servers {
			st := snap.Get(srv.Addr())
			if st.Role == config.RolePrimary && st.Usable() {
				primary = srv
			}
			servers = append(servers, srv.Addr())
			maxConn += srv.MaxConn
		}
		open := 0
		for _, p := range con.r.Pools().DatabasePools(name) {
			open += p.Open()
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
			mode, cfg.Routing.LoadBalance, maxConn, open,
			0, clients[name], con.r.Paused(name), con.r.Disabled(name),
			string(db.Route), strings.Join(servers, ","))
	}
	return t
}

func (con *Console) showPools() *table {
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
	cfg := con.r.Config()
	for _, c := range con.r.Clients() {
		x := get(c.Database, c.User)
		x.clients++
		x.mode = c.Mode
	}
	for _, p := range con.r.Pools().Pools() {
		k := p.Key()
		x := get(k.Database, k.User)
		x.servers++
		st := p.Stats()
		x.waiting += st.Waiting
		x.maxWait = max(x.maxWait, p.MaxWait())
		conns := p.Conns()
		for _, c := range conns {
			switch c.State {
			case pool.ConnActive:
				x.active++
			case pool.ConnIdle:
				x.idle++
			case pool.ConnTested:
				x.tested++
			}
		}
		x.login += max(st.Total-len(conns), 0)
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
			con.r.Paused(k[0]), x.servers)
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

func (con *Console) showClients() *table {
	cols := append(connColumns(), textCol("pool_mode"), intCol("pinned"), textCol("server"))
	t := newTable(cols...)
	for i, c := range con.r.Clients() {
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

func (con *Console) showServers() *table {
	cols := append(connColumns(), textCol("role"), textCol("health"), intCol("lag_bytes"), floatCol("lag_seconds"),
		intCol("units_served"), intCol("server_connections"), intCol("reads_routed"), intCol("writes_routed"))
	t := newTable(cols...)
	snap := con.r.Topology()
	pools := con.r.Pools().Pools()
	open := map[string]int{}
	for _, p := range pools {
		open[p.Key().Server] += p.Open()
	}
	sort.Slice(pools, func(i, j int) bool { return pools[i].Key().String() < pools[j].Key().String() })
	id := 0
	for _, p := range pools {
		k := p.Key()
		host, port := splitAddr(k.Server)
		st := snap.Get(k.Server)
		conns := p.Conns()
		sort.Slice(conns, func(i, j int) bool { return conns[i].Created.Before(conns[j].Created) })
		var reads, writes uint64
		if sc := con.r.Counters(k.Server); sc != nil {
			reads, writes = sc.Reads.Load(), sc.Writes.Load()
		}
		for _, c := range conns {
			id++
			lhost, lport := hostPort(c.LocalAddr)
			link := ""
			if c.Client != nil {
				ch, cp := hostPort(c.Client.Conn().RemoteAddr())
				link = net.JoinHostPort(ch, strconv.Itoa(cp))
			}
			t.add("S", k.User, k.Database, "none", string(c.State),
				host, port, lhost, lport, c.Created,
				nil, 0, 0, c.CloseNeeded, fmt.Sprintf("%p", p)+"/"+strconv.Itoa(int(c.PID)),
				link, c.PID, "", "",
				0, id,
				string(st.Role), healthState(st.Up, st.Excluded, st.Lagging), st.LagBytes, st.LagSeconds,
				c.Served, open[k.Server], reads, writes)
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
func (con *Console) showStats() *table {
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
	for _, s := range con.dbStats() {
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

func (con *Console) dbStats() []dbStat {
	var out []dbStat
	cfg := con.r.Config()
	secs := uint64(con.uptime() / time.Second)
	for _, name := range slices.Sorted(maps.Keys(cfg.Databases)) {
		st := con.r.Stats(name)
		var wait, busy, query time.Duration
		var releases, batches uint64
		for _, p := range con.r.Pools().DatabasePools(name) {
			ps := p.Stats()
			wait += ps.WaitTime
			b, n := p.BusyTime()
			busy += b
			releases += n
			q, qn := p.QueryTime()
			query += q
			batches += qn
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
		assigned := st.Assignments.Load()
		queries := st.Queries.Load()
		recv, sent := st.Received.Load(), st.Sent.Load()
		waitUS := uint64(wait / time.Microsecond)
		avgWait := uint64(0)
		if assigned > 0 {
			avgWait = waitUS / assigned
		}
		out = append(out, dbStat{name: name, assigned: assigned, queries: queries, recv: recv, sent: sent, secs: secs,
			busyUS: busyUS, waitUS: waitUS, avgXact: avgXact, avgWait: avgWait,
			queryUS: queryUS, avgQuery: avgQuery, clientParses: st.ClientParses.Load(),
			serverParses: st.ServerParses.Load(), binds: st.Binds.Load(),
			reads: st.Reads.Load(), writes: st.Writes.Load(),
			causalWaits: st.CausalWaits.Load(), causalPrimary: st.CausalPrimary.Load(),
			causalChecked: st.CausalChecked.Load(), causalBehind: st.CausalBehind.Load()})
	}
	return out
}

// showStatsPart answers SHOW STATS_TOTALS or SHOW STATS_AVERAGES:
// PgBouncer's subsets of SHOW STATS without the total_/avg_ prefixes.
func (con *Console) showStatsPart(averages bool) *table {
	t := newTable(textCol("database"), intCol("xact_count"), intCol("query_count"), intCol("server_assignment_count"),
		intCol("bytes_received"), intCol("bytes_sent"), intCol("xact_time"), intCol("query_time"), intCol("wait_time"),
		intCol("client_parse_count"), intCol("server_parse_count"), intCol("bind_count"))
	for _, s := range con.dbStats() {
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
func (con *Console) showLists() *table {
	t := newTable(textCol("list"), intCol("items"))
	cfg := con.r.Config()
	pools := con.r.Pools().Pools()
	servers := 0
	for _, p := range pools {
		servers += p.Open()
	}
	for _, row := range []struct {
		name string
		n    int
	}{
		{"databases", len(cfg.Databases)}, {"users", len(cfg.Users)}, {"pools", len(pools)},
		{"free_clients", 0}, {"used_clients", len(con.r.Clients())}, {"login_clients", 0},
		{"free_servers", 0}, {"used_servers", servers},
		{"dns_names", 0}, {"dns_zones", 0}, {"dns_queries", 0}, {"dns_pending", 0},
	} {
		t.add(row.name, row.n)
	}
	return t
}

func (con *Console) showHealth() *table {
	t := newTable(textCol("server"), textCol("role"), textCol("state"), textCol("reason"), intCol("lag_bytes"),
		floatCol("lag_seconds"), textCol("since"), intCol("timeline"), intCol("checks"), intCol("failures"),
		intCol("marked_down"), intCol("marked_up"), intCol("role_changes"), intCol("lag_exclusions"),
		intCol("connections"), intCol("reads_routed"), intCol("writes_routed"), textCol("databases"))
	cfg := con.r.Config()
	snap := con.r.Topology()
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
	for _, p := range con.r.Pools().Pools() {
		open[p.Key().Server] += p.Open()
	}
	for _, addr := range addrs {
		st := snap.Get(addr)
		var reads, writes uint64
		if c := con.r.Counters(addr); c != nil {
			reads, writes = c.Reads.Load(), c.Writes.Load()
		}
		t.add(addr, string(st.Role), healthState(st.Up, st.Excluded, st.Lagging), st.Reason, st.LagBytes,
			st.LagSeconds, st.Since, st.Timeline, st.Counts.Checks, st.Counts.Failures,
			st.Counts.MarkedDown, st.Counts.MarkedUp, st.Counts.RoleChanges, st.Counts.LagExclusions,
			open[addr], reads, writes, strings.Join(dbsOf[addr], ","))
	}
	return t
}

func (con *Console) showRoutes() *table {
	t := newTable(textCol("database"), textCol("fingerprint"), textCol("query"), textCol("route"), textCol("rule"), intCol("count"))
	for _, rs := range con.r.Routes(100) {
		t.add(rs.Database, rs.Fingerprint, rs.Query, rs.Route, rs.Rule, rs.Count)
	}
	return t
}

package admin

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/router"
)

// role is who may run a command.
type role uint8

const (
	statsRole role = iota // users of admin.stats_users, and admins
	adminRole             // users of admin.admin_users only
)

// spec is one line of the command table, as PgBouncer's admin.c keeps
// them: what an operator types, its arguments, who may run it and what runs
// it. Parsing, the permission check and SHOW HELP all read the table.
type spec struct {
	name string // upper case, one or two words: "SHOW POOLS", "PAUSE"
	// args are the arguments, as SHOW HELP tells them and parse takes
	// them: "" none, "db" one database name, "[db]" one or none.
	args string
	role role
	run  handler
}

// handler runs a command and returns its answer; ctx ends with the router.
type handler func(con *Console, ctx context.Context, cmd command) ([]pgproto3.BackendMessage, error)

// commands is the console's command table, in SHOW HELP's order.
var commands = []spec{
	{name: "SHOW HELP", run: showHelp},
	{name: "SHOW VERSION", run: showing((*Console).showVersion)},
	{name: "SHOW PROCESS", run: showing((*Console).showProcess)},
	{name: "SHOW CONFIG", run: showing((*Console).showConfig)},
	{name: "SHOW DATABASES", run: showing((*Console).showDatabases)},
	{name: "SHOW POOLS", run: showing((*Console).showPools)},
	{name: "SHOW CLIENTS", run: showing((*Console).showClients)},
	{name: "SHOW SERVERS", run: showing((*Console).showServers)},
	{name: "SHOW STATS", run: showing((*Console).showStats)},
	{name: "SHOW STATS_TOTALS", run: showing((*Console).showStatsTotals)},
	{name: "SHOW STATS_AVERAGES", run: showing((*Console).showStatsAverages)},
	{name: "SHOW LISTS", run: showing((*Console).showLists)},
	{name: "SHOW HEALTH", run: showing((*Console).showHealth)},
	{name: "SHOW ROUTES", run: showing((*Console).showRoutes)},
	{name: "PAUSE", args: "[db]", role: adminRole, run: acting((*Console).pause)},
	{name: "RESUME", args: "[db]", role: adminRole, run: acting((*Console).resume)},
	{name: "RECONNECT", args: "[db]", role: adminRole, run: acting((*Console).reconnect)},
	{name: "WAIT_CLOSE", args: "[db]", role: adminRole, run: acting((*Console).waitClose)},
	{name: "KILL", args: "db", role: adminRole, run: acting((*Console).kill)},
	{name: "DISABLE", args: "db", role: adminRole, run: acting((*Console).disable)},
	{name: "ENABLE", args: "db", role: adminRole, run: acting((*Console).enable)},
	{name: "RELOAD", role: adminRole, run: acting((*Console).reload)},
	{name: "SHUTDOWN", role: adminRole, run: acting((*Console).shutdown)},
	{name: "UPGRADE", role: adminRole, run: (*Console).upgrade},
}

// helpLines are the table as SHOW HELP tells it: one line a command,
// commands of two words that take no arguments joined under their first
// ("SHOW HELP|VERSION|…"). Set by init, as showHelp reads it and the
// table holds showHelp.
var helpLines []string

func init() { helpLines = usage(commands) }

func usage(table []spec) []string {
	var lines []string
	group := "" // the first word of the line being joined
	for _, s := range table {
		first, rest, two := strings.Cut(s.name, " ")
		switch {
		case two && s.args == "" && first == group:
			lines[len(lines)-1] += "|" + rest
			continue
		case two && s.args == "":
			group = first
		default:
			group = ""
		}
		lines = append(lines, strings.TrimSpace(s.name+" "+s.args))
	}
	return lines
}

// arity is how many database names each form of spec.args takes: at
// least, at most.
var arity = map[string][2]int{"": {0, 0}, "db": {1, 1}, "[db]": {0, 1}}

// match reports whether fields (what the operator typed, split into words)
// are this command with arguments it takes.
func (s *spec) match(fields []string) (command, bool) {
	words := strings.Fields(s.name)
	n, ok := arity[s.args]
	args := len(fields) - len(words)
	if !ok || args < n[0] || args > n[1] {
		return command{}, false
	}
	for i, w := range words {
		if strings.ToUpper(fields[i]) != w {
			return command{}, false
		}
	}
	cmd := command{verb: words[0], args: fields[len(words):], spec: s}
	if len(words) > 1 {
		cmd.what = words[1]
	}
	return cmd, true
}

// showHelp answers SHOW HELP with a notice, as PgBouncer.
func showHelp(*Console, context.Context, command) ([]pgproto3.BackendMessage, error) {
	return []pgproto3.BackendMessage{
		&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000",
			Message: "Console usage", Detail: "\t" + strings.Join(helpLines, "\n\t")},
		&pgproto3.CommandComplete{CommandTag: []byte("SHOW")},
	}, nil
}

// showing runs a SHOW command: its table of one snapshot of the router.
func showing(show func(*Console, *router.Snapshot) *table) handler {
	return func(con *Console, _ context.Context, cmd command) ([]pgproto3.BackendMessage, error) {
		return show(con, con.r.Inspect()).messages(cmd.verb), nil
	}
}

// acting runs a command that changes something; its answer is its verb.
func acting(act func(*Console, context.Context, []string) error) handler {
	return func(con *Console, ctx context.Context, cmd command) ([]pgproto3.BackendMessage, error) {
		if err := act(con, ctx, cmd.args); err != nil {
			return nil, err
		}
		return []pgproto3.BackendMessage{&pgproto3.CommandComplete{CommandTag: []byte(cmd.verb)}}, nil
	}
}

package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/router/classify"
	"github.com/pgswitch/pgswitch/router/rules"
	"github.com/pgswitch/pgswitch/router/track"
)

func newClassifyCommand() *cobra.Command {
	var writeFunctions []string
	var configPath string
	var client rules.Client
	var clientAddr string
	cmd := &cobra.Command{
		Use:   "classify SQL [SQL...]",
		Short: "Print where pgswitch would route a query or a batch, and why",
		Long: `Classify a query with PostgreSQL's own parser (pg_query) exactly as the
router does, without any server: "read" may go to a replica, "write" goes to
the primary. The reason names the rule that decided.

Several arguments are one batch: the statements a client sends up to one
Sync (a pgx Batch, a pipeline), routed as one unit. A multi-statement string
is one simple Query, routed the same way. A batch is a read only if every
statement is; when it has more than one statement, each follows on its own
line, and the first line names the statement that made the batch a write.

Statements that change session state (SET, RESET, PREPARE, LISTEN, SET
ROLE, …) get a "session" line saying what becomes of that state under
transaction pooling, where each unit of work may run on another server
connection: a SET is recorded for the client once a server confirms it
and set again on whichever server connection runs its next unit.

Functions that the primary's catalog marks volatile are only known to a
running pgswitch; name them here with --write-functions.

With --config, the routing.rules of that file are tried too, for a client
described by --database, --user, --application-name and --client-address,
and the rule that matched (if any) is printed: it decides before the
classification does, unless the query carries a routing hint. Each
statement's fingerprint is printed for use in rules.`,
		Example: `  pgswitch classify 'SELECT * FROM accounts WHERE id = 1'
  pgswitch classify 'SELECT nextval(''ids'')'
  pgswitch classify 'SELECT inet_server_port()' 'INSERT INTO t VALUES ($1, ''x'')'
  pgswitch classify --write-functions audit_log 'SELECT audit_log(1)'
  pgswitch classify 'SET search_path = app'
  pgswitch classify --config pgswitch.yaml --database app --application-name metabase 'SELECT * FROM orders'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var set *rules.Set
			if configPath != "" {
				cfg, err := config.Load(configPath)
				if err != nil {
					return err
				}
				writeFunctions = append(writeFunctions, cfg.Routing.WriteFunctions...)
				set = rules.Compile(cfg.Routing.Rules)
			}
			if clientAddr != "" {
				a, err := netip.ParseAddr(clientAddr)
				if err != nil {
					return fmt.Errorf("--client-address: %w", err)
				}
				client.Addr = a
			}
			c := classify.New(classify.Options{WriteFunctions: writeFunctions, CacheSize: -1})
			w := cmd.OutOrStdout()
			printBatch(w, c, args)
			if configPath != "" {
				printRule(w, c, set, client, args)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&writeFunctions, "write-functions", nil, "extra function names that make a query a write (comma-separated)")
	f.StringVar(&configPath, "config", "", "a configuration whose routing.rules are tried too")
	f.StringVar(&client.Database, "database", "", "with --config: the database the client asks for")
	f.StringVar(&client.User, "user", "", "with --config: the client's user")
	f.StringVar(&client.ApplicationName, "application-name", "", "with --config: the client's application_name")
	f.StringVar(&clientAddr, "client-address", "", "with --config: the client's IP address")
	return cmd
}

// printRule prints the routing rule that matches the batch, and each
// text's fingerprint.
func printRule(w io.Writer, c *classify.Classifier, set *rules.Set, client rules.Client, texts []string) {
	act := set.Match(client, func(yield func(rules.Stmt) bool) {
		for _, t := range texts {
			if !yield(rules.Stmt{Text: t, Shape: c.Classify(t).Shape}) {
				return
			}
		}
	})
	switch {
	case act == nil:
		fmt.Fprintln(w, "rule\tnone matched")
	case act.Kind == rules.Reject:
		fmt.Fprintf(w, "rule\t%s with %s %q\n", strings.TrimPrefix(act.Why(), "rule "), act.Code, act.Message)
	default:
		fmt.Fprintf(w, "rule\t%s\n", strings.TrimPrefix(act.Why(), "rule "))
	}
	for i, t := range texts {
		if fp, err := classify.Fingerprint(t); err == nil {
			fmt.Fprintf(w, "fingerprint\t%d\t%016x\n", i+1, fp)
		}
	}
}

// printBatch prints the route of the batch of texts as the router combines
// it, then, for more than one statement, each statement's own.
func printBatch(w io.Writer, c *classify.Classifier, texts []string) {
	var batch classify.Result
	type line struct {
		text string
		res  classify.Result
	}
	var lines []line
	for i, text := range texts {
		res := c.Classify(text)
		if i == 0 {
			batch = res
		} else {
			batch = classify.Combine(batch, res)
		}
		stmts := classify.Split(text)
		if len(stmts) <= 1 {
			lines = append(lines, line{text, res})
			continue
		}
		for _, st := range stmts {
			lines = append(lines, line{st, c.Classify(st)})
		}
	}
	first := fmt.Sprintf("%s\t%s", routeName(batch), batch.Reason)
	if len(lines) > 1 && batch.Route == classify.Write {
		for i, l := range lines {
			if l.res.Route == classify.Write {
				first += fmt.Sprintf(" (statement %d)", i+1)
				break
			}
		}
	}
	fmt.Fprintln(w, first)
	if k := batch.Kind.String(); k != "" {
		fmt.Fprintf(w, "kind\t%s\n", strings.ToLower(k))
	}
	for _, l := range sessionLines(batch) {
		fmt.Fprintf(w, "session\t%s\n", l)
	}
	if len(lines) < 2 {
		return
	}
	for i, l := range lines {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", i+1, routeName(l.res), l.res.Reason, flat(l.text))
	}
}

// sessionLines says what becomes of the session state the statements of res
// change, under transaction pooling, by the router's own rules
// (router/track: Pins, NeedsCapture, and the effects it records).
func sessionLines(res classify.Result) []string {
	var out []string
	if why := track.Pins(res); why != "" {
		out = append(out, why+": pins the client to this server connection for the rest of its session; "+
			"the connection is reset (pool.reset_query) when the client leaves")
	}
	if track.NeedsCapture(res) {
		out = append(out, "may change settings in ways only the server can tell: "+
			"pgswitch reads the settings back from the same server connection right after it")
	}
	for _, st := range res.Stmts {
		switch k := st.Kind; {
		case k.Any(classify.KindRole):
			// SET ROLE pins (above); RESET ROLE undoes it on the pinned connection.
		case k.Any(classify.KindSetLocal):
			out = append(out, "lasts until the end of the transaction, on the transaction's server connection; nothing is kept for the client")
		case k.Any(classify.KindSet):
			out = append(out, fmt.Sprintf("%s: once a server confirms the SET, pgswitch records it for this client and sets it again "+
				"on whichever server connection, primary or replica, runs the client's next unit of work "+
				"(inside a transaction, only if the transaction commits)", st.Name))
		case k.Any(classify.KindReset) && st.Name == "all":
			out = append(out, "every setting goes back to the client's startup value, on every server connection the client uses from then on")
		case k.Any(classify.KindReset):
			out = append(out, fmt.Sprintf("%s goes back to the client's startup value, on every server connection the client uses from then on", st.Name))
		case k.Any(classify.KindPrepare):
			out = append(out, fmt.Sprintf("prepared statement %s is kept for this client: every server connection that runs its units holds it", st.Name))
		case k.Any(classify.KindDiscardAll):
			out = append(out, "forgets the client's settings and prepared statements")
		}
	}
	return out
}

func routeName(res classify.Result) string {
	if res.Route == classify.Read {
		return "replica"
	}
	return "primary"
}

// flat shows a statement on one line.
func flat(sql string) string {
	return strings.Join(strings.Fields(sql), " ")
}

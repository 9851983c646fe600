package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgswitch/pgswitch/router/classify"
)

func newClassifyCommand() *cobra.Command {
	var writeFunctions []string
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

Functions that the primary's catalog marks volatile are only known to a
running pgswitch; name them here with --write-functions.`,
		Example: `  pgswitch classify 'SELECT * FROM accounts WHERE id = 1'
  pgswitch classify 'SELECT nextval(''ids'')'
  pgswitch classify 'SELECT inet_server_port()' 'INSERT INTO t VALUES ($1, ''x'')'
  pgswitch classify --write-functions audit_log 'SELECT audit_log(1)'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := classify.New(classify.Options{WriteFunctions: writeFunctions, CacheSize: -1})
			printBatch(cmd.OutOrStdout(), c, args)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&writeFunctions, "write-functions", nil, "extra function names that make a query a write (comma-separated)")
	return cmd
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
	if len(lines) < 2 {
		return
	}
	for i, l := range lines {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", i+1, routeName(l.res), l.res.Reason, flat(l.text))
	}
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

package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgswitch/pgswitch/router/classify"
)

func newClassifyCommand() *cobra.Command {
	var writeFunctions []string
	cmd := &cobra.Command{
		Use:   "classify SQL",
		Short: "Print where pgswitch would route a query, and why",
		Long: `Classify a query with PostgreSQL's own parser (pg_query) exactly as the
router does, without any server: "read" may go to a replica, "write" goes to
the primary. The reason names the rule that decided. A multi-statement string
is a read only if every statement is. Functions that the primary's catalog
marks volatile are only known to a running pgswitch; name them here with
--write-functions.`,
		Example: `  pgswitch classify 'SELECT * FROM accounts WHERE id = 1'
  pgswitch classify 'SELECT nextval(''ids'')'
  pgswitch classify --write-functions audit_log 'SELECT audit_log(1)'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := classify.New(classify.Options{WriteFunctions: writeFunctions, CacheSize: -1})
			res := c.Classify(args[0])
			route := "primary"
			if res.Route == classify.Read {
				route = "replica"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", route, res.Reason)
			if k := res.Kind.String(); k != "" && k != "0" {
				fmt.Fprintf(cmd.OutOrStdout(), "kind\t%s\n", strings.ToLower(k))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&writeFunctions, "write-functions", nil, "extra function names that make a query a write (comma-separated)")
	return cmd
}

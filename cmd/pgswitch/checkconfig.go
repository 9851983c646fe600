package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgswitch/pgswitch/config"
)

func newCheckConfigCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check-config FILE",
		Short: "Validate a configuration file without starting pgswitch",
		Long: `Load and validate a configuration file: unknown keys, missing
environment variables and invalid values are reported one a line, each with
the file, the line and the key it concerns:

  pgswitch.yaml:11: pool.size: "lots" is not a number

Exits 0 when the file is valid, 1 when it is not.`,
		Example: "  PGSWITCH_APP_PASSWORD=secret pgswitch check-config pgswitch.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
			if err != nil {
				return printConfigErrors(cmd.ErrOrStderr(), err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK (%d databases, %d users, listen %s)\n",
				args[0], len(cfg.Databases), len(cfg.Users), cfg.Listen)
			return nil
		},
	}
}

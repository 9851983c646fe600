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
environment variables and invalid values are reported with the key they
concern. Exits 0 when the file is valid.`,
		Example: "  pgswitch check-config pgswitch.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK (%d databases, %d users, listen %s)\n",
				args[0], len(cfg.Databases), len(cfg.Users), cfg.Listen)
			return nil
		},
	}
}

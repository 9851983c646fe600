package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgswitch/pgswitch/edge/certs"
	"github.com/pgswitch/pgswitch/edge/config"
)

func newCheckConfigCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check-config FILE",
		Short: "Validate a configuration file without starting pgswitch-edge",
		Long: `Load and validate a configuration file: unknown keys, missing
environment variables and invalid values are reported with the key they
concern, and every bind's certificate directory is read. Exits 0 when the
file is valid.`,
		Example: "  pgswitch-edge check-config pgswitch-edge.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
			if err != nil {
				return err
			}
			servers := 0
			for name, l := range cfg.Listens {
				servers += len(l.Servers)
				for i, b := range l.Binds {
					if b.TLS == nil {
						continue
					}
					if _, err := certs.LoadDir(b.TLS.CertDir, b.TLS.DefaultCert); err != nil {
						return fmt.Errorf("%s: listens.%s.binds[%d].tls: %w", args[0], name, i, err)
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK (%d listens, %d servers)\n", args[0], len(cfg.Listens), servers)
			return nil
		},
	}
}

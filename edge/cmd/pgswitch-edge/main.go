// Command pgswitch-edge is the HTTP/TLS edge proxy of the pgswitch
// "sandwich": it terminates TLS in front of an application, logs and
// health-checks, limits and times its clients, and forwards the
// application's own outbound HTTP and TCP traffic.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pgswitch-edge:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "pgswitch-edge",
		Short: "HTTP/TLS edge proxy: TLS termination, health checks, maxconn, access logs",
		Long: `pgswitch-edge stands in front of an application as HAProxy would: it
terminates TLS (certificates from a directory, chosen by SNI, HTTP/2 by
ALPN), forwards to the application's loopback servers with X-Forwarded-For,
checks their health, queues requests beyond maxconn, answers slow clients
with 408, and logs every request in Common Log Format. The same process
gives the application loopback listeners that forward to verified HTTPS
services and to TCP services.

  pgswitch-edge check-config pgswitch-edge.yaml
  pgswitch-edge serve --config pgswitch-edge.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCommand(), newCheckConfigCommand(), newStatusCommand(), newVersionCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print pgswitch-edge's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "pgswitch-edge %s\n", version)
		},
	}
}

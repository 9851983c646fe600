// Command pgswitch is a PostgreSQL connection router: it pools server
// connections and splits reads from writes between a primary and its replicas.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/pgswitch/pgswitch/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		if !errors.Is(err, errPrinted) {
			fmt.Fprintln(os.Stderr, "pgswitch:", err)
		}
		os.Exit(1)
	}
}

// errPrinted is returned by a command that has printed its errors itself.
var errPrinted = errors.New("errors printed")

// printConfigErrors prints a configuration's errors one a line as they are
// ("pgswitch.yaml:11: pool.size: …", which editors jump to) and returns
// errPrinted, or err as it is when it is not about the file's content.
func printConfigErrors(w io.Writer, err error) error {
	var ce *config.Error
	if !errors.As(err, &ce) {
		return err
	}
	fmt.Fprintln(w, err)
	return errPrinted
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "pgswitch",
		Short: "PostgreSQL connection router: pooling and read/write split",
		Long: `pgswitch speaks the PostgreSQL protocol to applications, pools server
connections, sends reads to hot-standby replicas and writes to the primary.

Point DATABASE_URL at pgswitch and change nothing else. Try it with:

  pgswitch demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCommand(), newCheckConfigCommand(), newVersionCommand(), newDemoCommand(), newClassifyCommand())
	root.AddCommand(newStatusCommand(), newPoolsCommand(), newServersCommand(), newClientsCommand(), newStatsCommand(),
		newPauseCommand(), newResumeCommand(), newReloadCommand(), newUpgradeCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print pgswitch's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "pgswitch %s\n", version)
		},
	}
}

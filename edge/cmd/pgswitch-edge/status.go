package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgswitch/pgswitch/edge/config"
	"github.com/pgswitch/pgswitch/edge/proxy"
)

func newStatusCommand() *cobra.Command {
	var adminURL, path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every server's health, load and queue",
		Long: `Ask a running pgswitch-edge for its servers' state (up or down and
since when, requests in flight, maxconn, queue length, checks). The admin
address comes from --admin-url, PGSWITCH_EDGE_ADMIN_URL, or --config FILE
(its admin.listen).`,
		Example: "  pgswitch-edge status --config pgswitch-edge.yaml\n  pgswitch-edge status --admin-url http://127.0.0.1:8404 --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base := adminURL
			if base == "" {
				base = os.Getenv("PGSWITCH_EDGE_ADMIN_URL")
			}
			if base == "" && path != "" {
				cfg, err := config.Load(path)
				if err != nil {
					return err
				}
				if cfg.Admin.Listen == "" {
					return errors.New(path + ": admin.listen is not set")
				}
				base = "http://" + cfg.Admin.Listen
			}
			if base == "" {
				return errors.New("no admin address: use --admin-url, PGSWITCH_EDGE_ADMIN_URL or --config")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/status", nil)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status: %s answered %s", base, resp.Status)
			}
			var st proxy.Status
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				return fmt.Errorf("status: %w", err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			proxy.WriteTable(cmd.OutOrStdout(), st, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVar(&adminURL, "admin-url", "", "admin endpoint, e.g. http://127.0.0.1:8404")
	cmd.Flags().StringVarP(&path, "config", "c", "", "read admin.listen from this configuration file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) notifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notify",
		Short: "Work with notification receivers",
	}
	var asJSON bool
	test := &cobra.Command{
		Use:   "test [RECEIVER] [--json]",
		Short: "Send a clearly marked test notification and print each receiver's answer",
		Long: `notify test sends one test event ("test": true, summary starting with [TEST])
through the real delivery path to RECEIVER (a [[notify]] name), or to every
receiver, and prints each receiver's HTTP status and answer. PagerDuty gets an info
event, Alertmanager an alert GrantwatchTest that ends by itself.
Exit status 1 when any receiver failed.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			recv := ""
			if len(args) == 1 {
				recv = args[0]
			}
			c, cfg, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			if recv != "" {
				var names []string
				for _, n := range cfg.Notify {
					if n.Name == recv {
						names = nil
						break
					}
					names = append(names, n.Name)
				}
				if len(names) > 0 || len(cfg.Notify) == 0 {
					known := "none is configured"
					if len(names) > 0 {
						known = "configured: " + strings.Join(names, ", ")
					}
					return fmt.Errorf("notify test: no [[notify]] entry named %q in %s (%s)", recv, cfg.Path(), known)
				}
			}
			res, err := c.NotifyTest(cmd.Context(), recv)
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			}
			failed := false
			for _, r := range res {
				if r.Error != "" {
					failed = true
				}
				if asJSON {
					continue
				}
				if r.Error != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: FAILED: %s\n", r.Receiver, r.Error)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: delivered (HTTP %d) %s\n", r.Receiver, r.Status, r.Answer)
				}
			}
			if len(res) == 0 && !asJSON {
				fmt.Fprintln(cmd.OutOrStdout(), "no receivers are configured ([[notify]] in the config)")
			}
			if failed {
				return exitCode(1)
			}
			return nil
		},
	}
	test.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(test)
	return cmd
}

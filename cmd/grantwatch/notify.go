package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) notifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notify",
		Short: "Work with notification receivers",
	}
	var asJSON bool
	test := &cobra.Command{
		Use:   "test [RECEIVER]",
		Short: "Send a clearly marked test notification and print each receiver's answer",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			recv := ""
			if len(args) == 1 {
				recv = args[0]
			}
			c, _, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
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

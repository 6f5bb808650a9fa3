package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) grantsLinkCmd() *cobra.Command {
	var ttl time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "link ID [--ttl D] [--json]",
		Short: "Print a hosted reconnect link to give the grant's user",
		Long: `link makes a hosted reconnect link for a grant and prints its URL, the only line
on stdout. The user opens it in their own browser, signs in to the provider as the
grant's account and consents; grantwatch stores the new refresh token and probes the
grant once. A link works once, for --ttl (default reconnect.link_ttl, 72h), and only
for the grant's own account. It needs reconnect.public_url; the running daemon serves
the link on daemon.listen. Only the link's hash is stored: this is the only copy.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeGrantID,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			l, err := c.ReconnectLink(cmd.Context(), args[0], ttl)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), l)
			}
			fmt.Fprintf(a.errw, "reconnect link for grant %s, for one use until %s:\n", esc(l.GrantID), l.ExpiresAt.Local().Format(time.RFC1123))
			_, err = fmt.Fprintln(cmd.OutOrStdout(), l.URL)
			return err
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the link works (default reconnect.link_ttl)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the link as JSON (url, grant_id, expires_at)")
	return cmd
}

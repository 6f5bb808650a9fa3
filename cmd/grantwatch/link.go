package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/daemon/api"
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
			return call(cmd, a.client, func(ctx context.Context, c conn) (api.ReconnectLink, error) {
				return c.ReconnectLink(ctx, args[0], ttl)
			}, jsonOr(asJSON, func(out io.Writer, l api.ReconnectLink) error {
				fmt.Fprintf(a.errw, "reconnect link for grant %s, for one use until %s:\n", esc(l.GrantID), l.ExpiresAt.Local().Format(time.RFC1123))
				_, err := fmt.Fprintln(out, l.URL)
				return err
			}))
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the link works (default reconnect.link_ttl)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the link as JSON (url, grant_id, expires_at)")
	return cmd
}

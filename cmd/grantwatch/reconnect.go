package main

import (
	"fmt"
	"time"

	"github.com/grantwatch/grantwatch/daemon/reconnect"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, (*app).reconnectCmd) }

func (a *app) reconnectCmd() *cobra.Command {
	var timeout time.Duration
	var port int
	var noBrowser, asJSON bool
	cmd := &cobra.Command{
		Use:   "reconnect ID [--timeout 5m] [--port N] [--no-browser] [--json]",
		Short: "Sign the grant's user in again (authorization code + PKCE) and store the new token",
		Long: `reconnect runs the provider's sign-in for a grant: it prints a URL (and opens it
in a browser when this machine has one), waits for the provider to redirect back to
a listener on 127.0.0.1, exchanges the code (PKCE, S256) for a new refresh token,
stores it as set-token does and probes the grant once.

The provider entry needs auth_url (presets give it), and its app registration must
allow the redirect URI http://127.0.0.1/callback on any port. Over SSH, choose the
port with --port and forward it before you start, e.g. ssh -L 8765:127.0.0.1:8765
server, then grantwatch reconnect ID --port 8765 and open the URL in your browser.
Exit status 1 when the probe of the new token failed.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeGrantID,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, id := cmd.Context(), args[0]
			c, cfg, err := a.client(ctx)
			if err != nil {
				return err
			}
			g, err := c.Show(ctx, id)
			// Without a daemon the client holds the database: release it
			// while the user signs in, which may take minutes.
			c.Close()
			if err != nil {
				return err
			}
			who := g.Subject
			if who == "" {
				who = "the account of grant " + id
			}
			tok, err := reconnect.Run(ctx, cfg, g.Provider, reconnect.Options{
				ShowURL: func(u string) {
					fmt.Fprintf(a.errw, "Open this URL in a browser and sign in as %s:\n\n  %s\n\nwaiting for the sign-in (up to %s)...\n", esc(who), u, timeout)
				},
				OpenBrowser: !noBrowser,
				LoginHint:   g.Subject,
				Subject:     g.Subject,
				Timeout:     timeout,
				Port:        port,
			})
			if err != nil {
				return fmt.Errorf("reconnect %s: %w", id, err)
			}

			if c, _, err = a.client(ctx); err != nil {
				return fmt.Errorf("store the new refresh token of %s (the user must reconnect again): %w", id, err)
			}
			defer c.Close()
			r, err := c.SetToken(ctx, id, tok)
			if err != nil {
				return fmt.Errorf("store the new refresh token of %s (the user must reconnect again): %w", id, err)
			}
			return showReport(cmd.OutOrStdout(), r, asJSON, "new refresh token stored")
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", reconnect.DefaultTimeout, "how long to wait for the sign-in")
	cmd.Flags().IntVar(&port, "port", 0, "the port on 127.0.0.1 the sign-in redirects to (for ssh -L); 0 picks a free one")
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "only print the URL, never open a browser")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the probe report as JSON")
	return cmd
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/daemon/api"
)

func init() {
	extraCommands = append(extraCommands, (*app).tokenCmd, (*app).keysCmd)
}

func (a *app) tokenCmd() *cobra.Command {
	var (
		minTTL time.Duration
		force  bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "token ID [--min-ttl D] [--refresh] [--json]",
		Short: "Print a grant's access token, for scripts",
		Long: `token prints an access token of the grant from grantwatch's broker, as the only
line on stdout: the one held while it has --min-ttl left, else a new one (a
refresh is a probe, judged and stored like a scheduled one). --json prints
{"access_token", "token_type", "expires_at", "scope", "grant_id"}.

A grant that needs its user exits 3 with the cause and fix on stderr; trouble
that passes by itself (an outage, a rate limit, a refresh still running) exits
4, saying when to ask again. Apps fetch tokens over daemon.listen with an app key
(grantwatch keys create); this command uses the control socket.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, a.client, func(ctx context.Context, c conn) (api.TokenAnswer, error) {
				tok, err := c.Token(ctx, args[0], minTTL, force)
				var te *api.TokenError
				if errors.As(err, &te) {
					fmt.Fprintf(a.errw, "grantwatch: %s\n", te.Message)
					if te.Fix != "" {
						fmt.Fprintf(a.errw, "fix: %s\n", te.Fix)
					}
					if te.Code == api.CodeReconnectRequired {
						return tok, exitCode(3)
					}
					fmt.Fprintf(a.errw, "ask again in %s\n", te.RetryAfter)
					return tok, exitCode(4)
				}
				return tok, err
			}, jsonOr(asJSON, func(out io.Writer, tok api.TokenAnswer) error {
				_, err := fmt.Fprintln(out, tok.AccessToken)
				return err
			}))
		},
	}
	f := cmd.Flags()
	f.DurationVar(&minTTL, "min-ttl", api.DefaultMinTTL, "refresh first when the token held has less than this left")
	f.BoolVar(&force, "refresh", false, "refresh now (paced: within broker.refresh_pace the token just obtained)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) keysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Make, list and revoke app keys for the broker and the TCP API",
		Long: `An app key lets an app reach grantwatch on daemon.listen: fetch access tokens
(scope token), store a reconnected refresh token (set-token), report its own
refresh outcomes (observe), read a grant (read), make reconnect links (link). A
key with --label selectors reaches only grants with those labels; any other grant
answers 404, as if it did not exist. Keys are stored as hashes: a lost key cannot
be shown again, only revoked and made anew.`,
	}
	cmd.AddCommand(a.keysCreateCmd(), a.keysListCmd(), a.keysRevokeCmd())
	return cmd
}

func (a *app) keysCreateCmd() *cobra.Command {
	var (
		labels []string
		scopes []string
	)
	cmd := &cobra.Command{
		Use:   "create NAME [--label k=v ...] [--scope token|set-token|observe|read|link ...]",
		Short: "Make an app key and print it once (the only line on stdout)",
		Long: `create makes an app key and prints it as the only line on stdout, for
$(grantwatch keys create …) or a secret store; it is never shown again. Without
--scope the key has scope token. Give it to the app as "Authorization: Bearer KEY".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sel := map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" || v == "" {
					return fmt.Errorf("--label %q: want name=value, such as tenant=acme", l)
				}
				sel[k] = v
			}
			if _, err := api.ParseScopes(scopes); err != nil {
				return fmt.Errorf("--scope: %w", err)
			}
			return call(cmd, a.clientCreating, func(ctx context.Context, c conn) (api.CreatedKey, error) {
				return c.CreateKey(ctx, api.CreateKeyRequest{Name: args[0], Labels: sel, Scopes: scopes})
			}, func(out io.Writer, k api.CreatedKey) error {
				fmt.Fprintf(a.errw, "app key %s made (scopes %s%s); it is shown once, below\n", k.Name, scopeNames(k.Scopes), labelText(k.Labels, "; grants with labels "))
				_, err := fmt.Fprintln(out, k.Secret)
				return err
			})
		},
	}
	cmd.Flags().StringArrayVar(&labels, "label", nil, "reach only grants with this label (name=value; repeat for more)")
	cmd.Flags().StringSliceVar(&scopes, "scope", nil, "what the key may do: token, set-token, observe, read, link (repeat or comma-separate; default token)")
	return cmd
}

func (a *app) keysListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the app keys (names, scopes, labels; never a key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(cmd, a.client, func(ctx context.Context, c conn) ([]api.Key, error) {
				return c.ListKeys(ctx)
			}, jsonOr(asJSON, printKeys))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) keysRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an app key: requests presenting it are refused (401) from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, a.client, func(ctx context.Context, c conn) (struct{}, error) {
				return struct{}{}, c.RevokeKey(ctx, args[0])
			}, func(io.Writer, struct{}) error {
				fmt.Fprintf(a.errw, "app key %s revoked\n", args[0])
				return nil
			})
		},
	}
}

func scopeNames(s []api.Scope) string {
	names := make([]string, len(s))
	for i, sc := range s {
		names[i] = string(sc)
	}
	return strings.Join(names, ",")
}

// labelText is "k=v,k2=v2" sorted, after prefix; "" (or "-" without a
// prefix) for none.
func labelText(l map[string]string, prefix string) string {
	if len(l) == 0 {
		if prefix == "" {
			return "-"
		}
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return prefix + strings.Join(parts, ",")
}

// printKeys prints the app keys as a table (keys list).
func printKeys(out io.Writer, keys []api.Key) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCOPES\tLABELS\tCREATED")
	for _, k := range keys {
		created := "-"
		if !k.CreatedAt.IsZero() {
			created = k.CreatedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Name, scopeNames(k.Scopes), labelText(k.Labels, ""), created)
	}
	return tw.Flush()
}

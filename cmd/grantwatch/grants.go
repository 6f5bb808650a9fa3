package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/termtext"
	"github.com/grantwatch/grantwatch/store"
)

func (a *app) grantsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "grants",
		Short: "Import, list, show, probe and fix grants",
		Long: `The grants commands talk to the running daemon over its control socket, or open
the database directly when no daemon runs.`,
	}
	cmd.AddCommand(a.grantsImportCmd(), a.grantsListCmd(), a.grantsShowCmd(),
		a.grantsSetTokenCmd(), a.grantsProbeCmd(), a.grantsRmCmd(), a.grantsLinkCmd())
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) grantsImportCmd() *cobra.Command {
	var opts store.ImportOptions
	cmd := &cobra.Command{
		Use:   "import FILE|- [--replace [--force]]",
		Short: "Import grants from JSON Lines (id, provider, refresh_token, subject, labels)",
		Long: `import reads one grant per line:

  {"id":"u1-gmail","provider":"google","refresh_token":"1//0g…","subject":"ann@example.com","labels":{"tenant":"acme"}}

A grant of a provider in observe mode may come without refresh_token.

The whole input is validated first: a bad line is reported with its line number
and field, and nothing is imported. An id that exists is refused (nothing is
imported) unless --replace is given: then its token is replaced and it is reset to
pending. A grant whose token the provider rotated since it was imported is refused
even then, each one named, unless --force is given too: the token in the input is
most likely the one rotated away (an old export), and presenting it is taken for
reuse, which revokes the grant.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Force && !opts.Replace {
				return usageError(cmd, "--force replaces rotated tokens only together with --replace")
			}
			var r io.Reader = a.in
			src := "stdin"
			if args[0] != "-" {
				f, err := openImport(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				r, src = f, args[0]
			}
			cfg, err := a.config()
			if err != nil {
				return err
			}
			// An import that fails leaves nothing behind: files this run
			// creates (a first database, its key) go again.
			created := missingFiles(cfg.Daemon.DB, cfg.Secrets.KeyFile)
			c, _, err := a.clientCreating(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			start := time.Now()
			line := a.statusLine()
			p, err := c.Import(cmd.Context(), bufio.NewReaderSize(r, 1<<20), api.ImportOptions{Source: src, Replace: opts.Replace, Force: opts.Force}, func(p api.ImportProgress) {
				if p.Phase == "validating" {
					line.update("validating: %d lines read", p.Read)
					return
				}
				line.update("importing: %d of %d grants (%.0f%%)   ", p.Done, p.Total, 100*float64(p.Done)/float64(max(p.Total, 1)))
			})
			line.end()
			if err != nil {
				if c.Local && p.Created == 0 {
					c.Close()
					for _, f := range created {
						os.Remove(f)
					}
				}
				return fmt.Errorf("%s: %w", src, err)
			}
			if p.Rotated > 0 {
				ids := make([]string, len(p.RotatedIDs))
				for i, id := range p.RotatedIDs {
					ids[i] = strconv.Quote(id)
				}
				more := ""
				if p.Rotated > len(ids) {
					more = fmt.Sprintf(" and %d more", p.Rotated-len(ids))
				}
				fmt.Fprintf(a.errw, "warning: replaced %s whose token the provider had rotated since it was imported (--force): %s%s; "+
					"if the imported tokens are the rotated-away ones, these grants turn reconnect_required at their next probe\n",
					plural(p.Rotated, "grant"), esc(strings.Join(ids, ", ")), more)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s (%d new, %d replaced) in %s\n",
				plural(p.Total, "grant"), p.Created, p.Replaced, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().BoolVar(&opts.Replace, "replace", false, "replace the tokens of grants that exist (else such an input is refused)")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "with --replace, also replace tokens the provider rotated since they were imported")
	return cmd
}

func (a *app) grantsListCmd() *cobra.Command {
	var state, provider, expiring string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--state S] [--provider P] [--expiring 7d] [--json]",
		Short: "List grants with their state and cause",
		Long: `list prints every grant, or those in --state and of --provider. With --expiring
it lists the grants whose refresh token is forecast to die within that span
(7d, 36h), soonest first per provider, with when and which rule says so
(expires_basis: idle, absolute, announced, configured, testing).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if state != "" && !store.State(state).Valid() {
				var names []string
				for _, s := range store.States() {
					names = append(names, string(s))
				}
				return fmt.Errorf("--state: unknown state %q (one of: %s)", state, strings.Join(names, ", "))
			}
			var within time.Duration
			if expiring != "" {
				var err error
				if within, err = api.ParseWithin(expiring); err != nil || within <= 0 {
					return fmt.Errorf("--expiring: want a span such as 7d or 36h, not %q", expiring)
				}
			}
			c, cfg, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			if asJSON {
				// Stream a JSON array: a million grants never sit in memory.
				out.WriteString("[")
				n := 0
				err := c.ListExpiring(cmd.Context(), within, state, provider, func(g store.Grant) error {
					if n > 0 {
						out.WriteString(",")
					}
					n++
					b, err := json.Marshal(g)
					out.WriteString("\n  ")
					out.Write(b)
					return err
				})
				if err != nil {
					return err
				}
				out.WriteString("\n]\n")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			if within > 0 {
				fmt.Fprintln(tw, "ID\tPROVIDER\tSTATE\tEXPIRES\tBASIS\tSUBJECT")
			} else {
				fmt.Fprintln(tw, "ID\tPROVIDER\tSTATE\tCAUSE\tFAILS\tLAST PROBE\tSUBJECT")
			}
			n := 0
			err = c.ListExpiring(cmd.Context(), within, state, provider, func(g store.Grant) error {
				n++
				if within > 0 {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", esc(g.ID), esc(g.Provider), shownState(g),
						g.ExpiresAt.Local().Format(time.RFC3339), g.ExpiresBasis, dash(esc(g.Subject)))
					return nil
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", esc(g.ID), esc(g.Provider), shownState(g),
					dash(g.Cause), g.Failures, ago(g.LastProbeAt), dash(esc(g.Subject)))
				return nil
			})
			tw.Flush()
			if err == nil && n == 0 {
				if provider != "" {
					fmt.Fprintf(a.errw, "no grants match --provider %q (providers in %s: %s)\n", provider, cfg.Path(), dash(strings.Join(cfg.ProviderNames(), ", ")))
				} else {
					fmt.Fprintln(a.errw, "no grants match")
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only grants in this state (pending, healthy, degraded, reconnect_required, on_hold)")
	cmd.Flags().StringVar(&provider, "provider", "", "only grants of this provider")
	cmd.Flags().StringVar(&expiring, "expiring", "", "only grants forecast to die within this span (7d, 36h), soonest first")
	cmd.RegisterFlagCompletionFunc("state", completeStates)
	cmd.RegisterFlagCompletionFunc("provider", a.completeProviders)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

// shownState is a grant's state as a person should read it: a stale grant
// (observe mode, no report for longer than its interval) is stale first,
// whatever its last report said.
func shownState(g store.Grant) string {
	if g.Stale {
		return "stale (" + string(g.State) + ")"
	}
	return string(g.State)
}

// plural is "1 grant", "2 grants".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago renders a time as an age an operator reads at a glance.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "in " + (-d).Round(time.Second).String()
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func (a *app) grantsShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "show ID [--json]",
		Short:             "Show one grant with its history",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeGrantID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, a.client, func(ctx context.Context, c conn) (api.GrantDetail, error) {
				return c.Show(ctx, args[0])
			}, jsonOr(asJSON, printDetail))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// esc makes text that came from outside (ids, subjects, labels, a
// provider's or a receiver's words) safe to print: control characters and
// bidi overrides become visible escapes (internal/termtext).
var esc = termtext.Escape

// truncate shortens s to at most n characters, marking a cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func printGrant(out io.Writer, g store.Grant) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\nprovider:\t%s\n", esc(g.ID), esc(g.Provider))
	if g.Subject != "" {
		fmt.Fprintf(tw, "subject:\t%s\n", esc(g.Subject))
	}
	if len(g.Labels) > 0 {
		var ls []string
		for k, v := range g.Labels {
			ls = append(ls, esc(k)+"="+esc(v))
		}
		sort.Strings(ls)
		fmt.Fprintf(tw, "labels:\t%s\n", strings.Join(ls, ", "))
	}
	fmt.Fprintf(tw, "state:\t%s (since %s)\n", shownState(g), ago(g.StateChangedAt))
	if g.Stale {
		fmt.Fprintf(tw, "stale:\tits app has not reported a refresh for longer than the provider's interval (last report %s)\n", ago(g.LastProbeAt))
	}
	if g.ReuseDetected {
		fmt.Fprintf(tw, "reuse:\tsomeone else used this grant's refresh token (a leak or a second refresher); stop them before the user reconnects\n")
	}
	if g.Cause != "" {
		fmt.Fprintf(tw, "cause:\t%s (action: %s)\n", g.Cause, g.Action)
	}
	if g.Error != "" || g.ErrorDescription != "" {
		fmt.Fprintf(tw, "error:\t%s %s\n", esc(g.Error), esc(g.ErrorDescription))
	}
	fmt.Fprintf(tw, "failures:\t%d\nlast probe:\t%s\nlast success:\t%s\n", g.Failures, ago(g.LastProbeAt), ago(g.LastSuccessAt))
	if g.Unreadable > 0 {
		fmt.Fprintf(tw, "unreadable:\t%d answers in a row no rule reads (grantwatch explain shows how one is read)\n", g.Unreadable)
	}
	if !g.ExpiresAt.IsZero() {
		fmt.Fprintf(tw, "expires:\t%s (%s; basis %s)\n", g.ExpiresAt.Local().Format(time.RFC3339), fromNow(g.ExpiresAt), g.ExpiresBasis)
	}
	switch {
	case g.NextDueAt.IsZero() && g.State != store.StateReconnectRequired:
		fmt.Fprintf(tw, "next probe:\tnone (observe mode: its app reports its refreshes)\n")
	case g.NextDueAt.IsZero():
		fmt.Fprintf(tw, "next probe:\tnone (waits for a new refresh token)\n")
	default:
		fmt.Fprintf(tw, "next probe:\t%s\n", g.NextDueAt.Local().Format(time.RFC3339))
	}
	tw.Flush()
}

func printReport(out io.Writer, r api.ProbeReport) {
	if r.Stale {
		fmt.Fprintln(out, "The grant's token was replaced while the probe ran; its result was dropped.")
	}
	res := r.Result
	if res.OK {
		fmt.Fprintf(out, "probe ok in %.0f ms", res.LatencyMS)
		if res.Rotated {
			fmt.Fprint(out, " (the provider rotated the refresh token; the new one is stored)")
		}
		fmt.Fprintln(out)
	} else {
		fmt.Fprintf(out, "probe failed: %s (action: %s)\n", res.Cause, res.Action)
		if res.Error != "" || res.ErrorDescription != "" {
			fmt.Fprintf(out, "provider said: HTTP %d %s %s\n", res.Status, esc(res.Error), esc(res.ErrorDescription))
		}
		fmt.Fprintf(out, "\n%s\n\n", wrap(res.Fix, 80))
	}
	printGrant(out, r.Grant)
}

// showReport prints a probe report (after a headline, if any) and returns
// exit status 1 when the probe failed.
func showReport(out io.Writer, r api.ProbeReport, asJSON bool, headline string) error {
	if asJSON {
		if err := printJSON(out, r); err != nil {
			return err
		}
	} else {
		if headline != "" {
			fmt.Fprintln(out, headline)
		}
		printReport(out, r)
	}
	if r.Result.OK {
		return nil
	}
	return exitCode(1)
}

func (a *app) grantsProbeCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "probe ID [--json]",
		Short:             "Probe one grant now and print the result, cause and fix",
		Long:              "probe refreshes the grant's token now, through the daemon when it runs, and stores the outcome like a scheduled probe. Exit status 1 when the probe failed.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeGrantID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, a.client, func(ctx context.Context, c conn) (api.ProbeReport, error) {
				return c.Probe(ctx, args[0])
			}, func(out io.Writer, r api.ProbeReport) error {
				return showReport(out, r, asJSON, "")
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) grantsSetTokenCmd() *cobra.Command {
	var file string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "set-token ID [--file F] [--json]",
		Short: "Store a new refresh token (from stdin or --file) and probe it once",
		Long: `set-token stores the refresh token a user's reconnect produced, resets the grant
and probes it once. The token is read from stdin or --file, never from the command
line, where other users could read it in the process list.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeGrantID,
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := a.readToken(file)
			if err != nil {
				return err
			}
			return call(cmd, a.client, func(ctx context.Context, c conn) (api.ProbeReport, error) {
				return c.SetToken(ctx, args[0], tok)
			}, func(out io.Writer, r api.ProbeReport) error {
				if !r.Deferred {
					return showReport(out, r, asJSON, "new refresh token stored")
				}
				if asJSON {
					return printJSON(out, r)
				}
				fmt.Fprintln(out, "new refresh token stored; this instance is a standby: the leader probes it on its next tick")
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "read the token from this file instead of stdin")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// readToken reads a refresh token from a file or stdin: the first line,
// trimmed.
func (a *app) readToken(file string) (secret.Secret, error) {
	r := a.in
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	} else if isTerminal(r) {
		fmt.Fprint(a.errw, "paste the new refresh token and press Enter: ")
	}
	line, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read token: %w", err)
	}
	tok := strings.TrimSpace(line)
	if tok == "" {
		return "", errors.New("no token given: pipe it on stdin or use --file")
	}
	return secret.Secret(tok), nil
}

// openImport opens an import file, refusing what is not one.
func openImport(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s is a directory: name a JSON Lines file of grants (or - for stdin)", path)
	}
	return f, nil
}

// missingFiles returns those of paths that do not exist now.
func missingFiles(paths ...string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			out = append(out, p)
		}
	}
	return out
}

// printDetail prints a grant, its fix and its history (grants show).
func printDetail(out io.Writer, g api.GrantDetail) error {
	printGrant(out, g.Grant)
	if g.Fix != "" && g.State != store.StateHealthy {
		fmt.Fprintf(out, "\nfix: %s\n", strings.ReplaceAll(wrap(g.Fix, 75), "\n", "\n     "))
	}
	if len(g.History) > 0 {
		fmt.Fprintln(out, "\nhistory:")
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for _, h := range g.History {
			line := fmt.Sprintf("  %s\t%s → %s\t%s", h.At.Format(time.RFC3339), dash(string(h.From)), h.To, dash(h.Cause))
			if h.Note != "" {
				line += "\t" + esc(h.Note)
			} else if h.ErrorDescription != "" {
				line += "\t" + truncate(esc(h.ErrorDescription), 60)
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
	}
	return nil
}

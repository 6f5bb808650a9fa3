package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/daemon"
	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/store"
)

func (a *app) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Is everything connected? Counts, grants to reconnect, providers, clock, backlog",
		Long: `status prints the fleet's state. Exit status 0 when nothing needs action, 1 when
something does (a grant to reconnect, a held grant or provider, a stale grant of a
provider in observe mode, a grant whose answers no rule reads, a skewed clock), 2 when status could not tell (the config
is invalid, there is no database, the daemon does not answer or serves another
database).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.status(cmd.Context())
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("status unknown: %w", err)}
			}
			if asJSON {
				err = printJSON(cmd.OutOrStdout(), st)
			} else {
				printStatus(cmd.OutOrStdout(), st)
			}
			if err == nil && st.NeedsAction {
				return exitCode(1)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// status reads the fleet's status of the config's database, from the
// daemon or the database itself.
func (a *app) status(ctx context.Context) (api.Status, error) {
	c, cfg, err := a.client(ctx)
	if err != nil {
		return api.Status{}, err
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return api.Status{}, err
	}
	if want := daemon.StoreLocation(cfg); st.DB != "" && st.DB != want {
		// Another config's daemon on this config's socket: its fleet is
		// not this one.
		return api.Status{}, fmt.Errorf("the daemon answering on %s serves the database %s, not this config's %s: give each config its own daemon.socket",
			cfg.Daemon.Socket, st.DB, want)
	}
	return st, nil
}

// printStatus renders the status as a compact table within 100 columns.
func printStatus(out io.Writer, st api.Status) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	states := store.States()
	hdr := []string{"PROVIDER", "STATE"}
	for _, s := range states {
		hdr = append(hdr, strings.ToUpper(shortState(s)))
	}
	fmt.Fprintln(tw, strings.Join(append(hdr, "TOTAL"), "\t"))
	pstate := map[string]api.ProviderStatus{}
	for _, p := range st.Providers {
		pstate[p.Name] = p
	}
	names := make([]string, 0, len(st.ByProvider))
	for n := range st.ByProvider {
		names = append(names, n)
	}
	for _, p := range st.Providers {
		if _, ok := st.ByProvider[p.Name]; !ok {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		ps := pstate[n]
		row := []string{esc(n), providerState(ps)}
		total := 0
		for _, s := range states {
			v := st.ByProvider[n][string(s)]
			total += v
			row = append(row, fmt.Sprint(v))
		}
		fmt.Fprintln(tw, strings.Join(append(row, fmt.Sprint(total)), "\t"))
	}
	row := []string{"all", ""}
	for _, s := range states {
		row = append(row, fmt.Sprint(st.ByState[string(s)]))
	}
	fmt.Fprintln(tw, strings.Join(append(row, fmt.Sprint(st.Grants)), "\t"))
	tw.Flush()

	fmt.Fprintln(out)
	clock := st.Clock.State
	var est []string
	if st.Clock.NTPOK {
		est = append(est, fmt.Sprintf("NTP %+.3fs", st.Clock.NTPOffset))
	}
	if st.Clock.DateSamples > 0 {
		est = append(est, fmt.Sprintf("Date headers %+.1fs (%d samples)", st.Clock.DateOffset, st.Clock.DateSamples))
	}
	if len(est) > 0 {
		clock += " (" + strings.Join(est, ", ") + ")"
	}
	fmt.Fprintf(out, "clock:   %s\n", clock)
	fmt.Fprintf(out, "outbox:  %d pending", st.Outbox.Pending)
	if st.Outbox.Pending > 0 {
		fmt.Fprintf(out, ", oldest %s", (time.Duration(st.Outbox.OldestAgeSeconds) * time.Second).String())
	}
	fmt.Fprintln(out)
	if st.Daemon {
		fmt.Fprintf(out, "daemon:  running, last tick %s\n", ago(st.LastTickAt))
	} else {
		fmt.Fprintln(out, "daemon:  not running (read the database directly)")
	}
	if line := configLine(st.Config); line != "" {
		fmt.Fprintf(out, "config:  %s\n", line)
	}
	if c := st.Cluster; c != nil {
		printCluster(out, c)
	}

	printImports(out, st.Imports)

	if n := st.ByState[string(store.StateReconnectRequired)]; n > 0 {
		fmt.Fprintf(out, "\n%d grant(s) need their user to reconnect:\n", n)
		printNeedy(out, st.NeedsReconnect, n)
	}
	if st.Unreadable > 0 {
		fmt.Fprintf(out, "\n%d grant(s) answered %d or more times in a row in words no rule reads (grantwatch explain shows how; report them):\n", st.Unreadable, store.UnreadableAfter)
		printNeedy(out, st.UnreadableGrants, st.Unreadable)
	}
	if st.Expiring > 0 {
		fmt.Fprintf(out, "\n%d grant(s) forecast to die within %s: grantwatch grants list --expiring %s\n",
			st.Expiring, config.Days(time.Duration(st.WarnBeforeSeconds)*time.Second), withinFlag(st.WarnBeforeSeconds))
	}
	for _, s := range st.SecretsExpiring {
		verb := "expires"
		if s.Expired {
			verb = "expired"
		}
		fmt.Fprintf(out, "\nthe client secret of provider %s %s %s (%s): create a new one, set client_secret_file and client_secret_expires_at, reload\n",
			esc(s.Provider), verb, fromNow(s.ExpiresAt), s.ExpiresAt.Local().Format(time.RFC3339))
	}
	if n := st.ByState[string(store.StateOnHold)]; n > 0 {
		fmt.Fprintf(out, "\n%d grant(s) on hold (the provider or the clock is at fault, not the user):\n", n)
		printNeedy(out, st.OnHold, n)
	}
	if n := st.Stale; n > 0 {
		fmt.Fprintf(out, "\n%d grant(s) stale: their app has not reported a refresh for longer than the provider's interval (observe mode); their state is old news:\n", n)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  ID\tPROVIDER\tSTATE\tLAST REPORT\tSUBJECT")
		for _, g := range st.StaleGrants {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", truncate(g.ID, 30), g.Provider, g.State, ago(g.LastProbeAt), truncate(dash(g.Subject), 30))
		}
		tw.Flush()
		if n > len(st.StaleGrants) {
			fmt.Fprintf(out, "  … and %d more (grantwatch grants list --json: \"stale\": true)\n", n-len(st.StaleGrants))
		}
	}
	if !st.NeedsAction {
		fmt.Fprintln(out, "\nnothing needs action")
	}
}

// configLine says how the daemon's running config stands against its file.
func configLine(c *api.ConfigStatus) string {
	if c == nil {
		return ""
	}
	line := "loaded " + ago(c.LoadedAt)
	if !c.LastReloadOK {
		line = fmt.Sprintf("the last reload (%s) FAILED, so the config loaded %s stays in force: %s",
			ago(c.LastReloadAt), ago(c.LoadedAt), strings.ReplaceAll(c.LastReloadError, "\n", "; "))
	}
	if c.FileChanged {
		line += fmt.Sprintf("; %s changed since: the daemon does not run what the file says (systemctl reload grantwatch)", c.Path)
	}
	return line
}

// withinFlag writes a span in seconds as --expiring takes it.
func withinFlag(seconds float64) string {
	d := time.Duration(seconds) * time.Second
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// fromNow renders a time ahead ("in 6 days", "in 5h3m") or past ("2d ago").
func fromNow(t time.Time) string {
	d := time.Until(t)
	switch {
	case d <= 0:
		return ago(t)
	case d >= 48*time.Hour:
		return fmt.Sprintf("in %d days", int(d.Hours()/24))
	}
	return "in " + d.Round(time.Minute).String()
}

// printImports prints one line per import being written or interrupted,
// and the outcome of the last interrupted one.
func printImports(out io.Writer, jobs []api.ImportJob) {
	for _, j := range jobs {
		src := ""
		if j.Source != "" {
			src = " of " + j.Source
		}
		fmt.Fprintf(out, "import:  %s%s %s, %d of %d lines stored", j.ID, src, j.State, j.Committed, j.Lines)
		if j.Detail != "" {
			fmt.Fprintf(out, " (%s)", j.Detail)
		}
		fmt.Fprintln(out)
	}
}

func printNeedy(out io.Writer, gs []store.Grant, total int) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tPROVIDER\tCAUSE\tSINCE\tSUBJECT")
	for _, g := range gs {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", truncate(esc(g.ID), 30), esc(g.Provider), g.Cause, ago(g.StateChangedAt), truncate(dash(esc(g.Subject)), 30))
	}
	tw.Flush()
	if total > len(gs) {
		fmt.Fprintf(out, "  … and %d more (grantwatch grants list --state %s)\n", total-len(gs), gs[0].State)
	}
}

func shortState(s store.State) string {
	if s == store.StateReconnectRequired {
		return "reconnect"
	}
	return string(s)
}

func providerState(p api.ProviderStatus) string {
	if p.State == "" {
		return "unknown"
	}
	if p.Cause != "" {
		return p.State + ": " + p.Cause
	}
	return p.State
}

// printCluster shows the fleet of an etcd store: this instance's role, the
// leader, and each member's last heartbeat.
func printCluster(out io.Writer, c *api.ClusterStatus) {
	leader := c.Leader
	switch {
	case leader == "":
		leader = "none (an election is under way)"
	case c.LeaderURL != "":
		leader += " at " + c.LeaderURL
	}
	fmt.Fprintf(out, "cluster: this instance %s is %s (lease margin %.1fs); leader %s\n", esc(c.Name), c.Role, c.LeaseMarginSeconds, esc(leader))
	for _, m := range c.Members {
		role := "standby"
		if m.Leader {
			role = "leader"
		}
		fmt.Fprintf(out, "  %-20s %-8s heartbeat %s\n", esc(m.Name), role, ago(m.Heartbeat))
	}
}

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
	"github.com/grantwatch/grantwatch/store"
)

func (a *app) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Is everything connected? Counts, grants to reconnect, providers, clock, backlog",
		Long: `status prints the fleet's state. Exit status 0 when nothing needs action, 1 when
something does (a grant to reconnect, a held grant or provider, a skewed clock),
2 when status could not tell (the config is invalid, there is no database, the
daemon does not answer or serves another database).`,
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
	if c := st.Cluster; c != nil {
		printCluster(out, c)
	}

	if n := st.ByState[string(store.StateReconnectRequired)]; n > 0 {
		fmt.Fprintf(out, "\n%d grant(s) need their user to reconnect:\n", n)
		printNeedy(out, st.NeedsReconnect, n)
	}
	if n := st.ByState[string(store.StateOnHold)]; n > 0 {
		fmt.Fprintf(out, "\n%d grant(s) on hold (the provider or the clock is at fault, not the user):\n", n)
		printNeedy(out, st.OnHold, n)
	}
	if !st.NeedsAction {
		fmt.Fprintln(out, "\nnothing needs action")
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

package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/daemon/api"
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
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeReceiver,
		RunE: func(cmd *cobra.Command, args []string) error {
			recv := ""
			if len(args) == 1 {
				recv = args[0]
			}
			return call(cmd, a.client, func(ctx context.Context, c conn) ([]api.NotifyTestResult, error) {
				if recv != "" {
					var names []string
					for _, n := range c.cfg.Notify {
						if n.Name == recv {
							names = nil
							break
						}
						names = append(names, n.Name)
					}
					if len(names) > 0 || len(c.cfg.Notify) == 0 {
						known := "none is configured"
						if len(names) > 0 {
							known = "configured: " + strings.Join(names, ", ")
						}
						return nil, fmt.Errorf("notify test: no [[notify]] entry named %q in %s (%s)", recv, c.cfg.Path(), known)
					}
				}
				return c.NotifyTest(ctx, recv)
			}, func(out io.Writer, res []api.NotifyTestResult) error {
				if asJSON {
					if err := printJSON(out, res); err != nil {
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
						fmt.Fprintf(out, "%s: FAILED: %s\n", r.Receiver, esc(r.Error))
					} else {
						fmt.Fprintf(out, "%s: delivered (HTTP %d) %s\n", r.Receiver, r.Status, esc(r.Answer))
					}
				}
				if len(res) == 0 && !asJSON {
					fmt.Fprintln(out, "no receivers are configured ([[notify]] in the config)")
				}
				if failed {
					return exitCode(1)
				}
				return nil
			})
		},
	}
	test.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(test, a.notifyDeadCmd(), a.notifyRedeliverCmd())
	return cmd
}

func (a *app) notifyDeadCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "dead [--json]",
		Short: "List the notifications no receiver accepted within its max_age",
		Long: `notify dead lists the dead letters: notifications a receiver did not accept
within its max_age (default 24h), kept with the reason and the last delivery error.
Send them again with notify redeliver once the receiver works (notify test).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(cmd, a.client, func(ctx context.Context, c conn) ([]api.DeadLetter, error) {
				return c.DeadLetters(ctx)
			}, jsonOr(asJSON, printDeadLetters))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) notifyRedeliverCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "redeliver [RECEIVER [SEQ...]] [--json]",
		Short: "Send dead letters again",
		Long: `notify redeliver puts dead letters back in the outbox, as if new: max_age
counts again and the receiver's group_wait applies. With no argument, every
configured receiver's; with RECEIVER, only its own; with SEQ numbers (from
notify dead), only those. Each keeps its notification id, so a receiver that
did get an earlier attempt can tell. A dead letter whose news no longer holds
(its grant reconnected, its provider or the clock recovered) is left alone:
sending it would reopen at the receiver what is resolved. A running daemon
sends them at once; otherwise they wait for it.`,
		ValidArgsFunction: a.completeReceiver,
		RunE: func(cmd *cobra.Command, args []string) error {
			receiver := ""
			var seqs []uint64
			if len(args) > 0 {
				receiver = args[0]
			}
			for _, s := range args[min(1, len(args)):] {
				n, err := strconv.ParseUint(s, 10, 64)
				if err != nil || n == 0 {
					return fmt.Errorf("notify redeliver: %q is no dead letter's SEQ (see grantwatch notify dead)", s)
				}
				seqs = append(seqs, n)
			}
			return call(cmd, a.client, func(ctx context.Context, c conn) (api.RedeliverResult, error) {
				return c.Redeliver(ctx, receiver, seqs)
			}, jsonOr(asJSON, func(out io.Writer, res api.RedeliverResult) error {
				fmt.Fprintf(out, "%d dead letters back in the outbox\n", res.Requeued)
				if res.Stale > 0 {
					fmt.Fprintf(out, "%d left alone: what they report has changed since (sending them would reopen what is resolved)\n", res.Stale)
				}
				return nil
			}))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printDeadLetters prints the dead letters as a table (notify dead).
func printDeadLetters(out io.Writer, dead []api.DeadLetter) error {
	if len(dead) == 0 {
		fmt.Fprintln(out, "no dead letters: every notification was delivered or is still being tried")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RECEIVER\tSEQ\tDEAD SINCE\tEVENT\tSUBJECT\tREASON")
	for _, d := range dead {
		subject := "-"
		switch {
		case d.Event.Grant != nil:
			subject = d.Event.Grant.ID
		case d.Event.Provider != nil:
			subject = d.Event.Provider.Name
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", d.Receiver, d.Seq,
			d.DeadAt.Local().Format(time.RFC3339), d.Event.Type, esc(subject), esc(d.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d dead letters; send them again with: grantwatch notify redeliver [RECEIVER [SEQ...]]\n", len(dead))
	return nil
}

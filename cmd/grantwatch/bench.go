package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"text/tabwriter"

	"github.com/grantwatch/grantwatch/daemon/bench"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, (*app).benchCmd) }

func (a *app) benchCmd() *cobra.Command {
	var (
		o       bench.Options
		asJSON  bool
		verbose bool
		cpuProf string
		broker  bool
		netHTTP bool
	)
	cmd := &cobra.Command{
		Use:   "bench [--broker] [--grants N] [--concurrency C] [--duration D] [--idle D] [--json]",
		Short: "Measure probes per second, latency, memory and CPU on this machine",
		Long: `bench sizes a machine for a fleet. It runs the real daemon — grants import, the
scheduler, workers, probes, classification, transitions, batched fsynced writes —
on a temporary database against an in-process sandbox token endpoint on
127.0.0.1, with every grant due at once, and times one full round. Right
before and right after the round it measures a bare net/http client (same
transport, same concurrency, same sandbox; half the requests each time, so a
machine whose speed drifts weighs on both alike) as the ceiling, and prints
both rates and their ratio, probe latency,
Go heap, RSS, CPU per 1000 probes and the database size.

The sandbox shares this machine's cores with grantwatch, so the figures are a
lower bound of what grantwatch does against a remote provider; a real fleet is
limited by the providers' rate limits long before (at a 24h interval, 10⁶
grants are ~12 probes/s). No config file is read.

bench --broker measures the broker: a daemon serving daemon.listen over TLS (a
certificate made for the run), every grant's access token held, and
--concurrency clients, each on its own keep-alive HTTPS connection, fetching
tokens (GET /v1/grants/{id}/token with an app key) for --duration. It prints
requests/s, latency at the client (p50, p99, max) and CPU; the clients share
the cores with the daemon. Around that run, in two halves, the same clients
fetch from a bare net/http server on the same certificate that answers a
fixed token-sized body: the ceiling of net/http and TLS on this machine, and
the ratio of the broker's rate to it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Progress = progressWriter(a.errw)
			tuneGC() // as `run` does: the figures are the daemon's
			if verbose {
				o.Logger = slog.New(slog.NewTextHandler(a.errw, &slog.HandlerOptions{Level: slog.LevelInfo}))
			}
			if cpuProf != "" {
				f, err := os.Create(cpuProf)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if broker {
				bo := bench.BrokerOptions{Clients: o.Concurrency, Duration: o.Duration, NetHTTP: netHTTP, Logger: o.Logger, Progress: o.Progress}
				if cmd.Flags().Changed("grants") {
					bo.Grants = o.Grants
				}
				r, err := bench.RunBroker(cmd.Context(), bo)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), r)
				}
				return printBrokerBench(cmd, r)
			}
			r, err := bench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			return printBench(cmd, r)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Grants, "grants", 100_000, "grants to import, all due at once")
	f.IntVar(&o.Concurrency, "concurrency", 64, "daemon workers, and the bare client's concurrent requests")
	f.DurationVar(&o.Duration, "duration", 0, "bound the bare-client measurement to this long (default: as many requests as grants)")
	f.DurationVar(&o.Idle, "idle", 0, "after the round, measure idle CPU and heap with nothing due for this long")
	f.BoolVar(&o.NoSync, "nosync", false, "turn fsync off (not how the daemon runs)")
	f.StringVar(&o.Dir, "dir", "", "directory for the database (default: a temporary one, removed after)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.BoolVar(&verbose, "verbose", false, "show the daemon's log on stderr")
	f.StringVar(&cpuProf, "cpuprofile", "", "write a CPU profile of the whole bench to this file")
	f.BoolVar(&netHTTP, "nethttp", false, "with --broker: the clients use net/http's Transport, not a minimal HTTP/1.1 client (they share the cores with the daemon)")
	f.BoolVar(&broker, "broker", false, "measure the broker instead: --concurrency clients fetching held access tokens over loopback HTTPS keep-alive for --duration (default 10s) across --grants grants (default 100)")
	return cmd
}

func printBench(cmd *cobra.Command, r bench.Result) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	p := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	p("grants", "%d (concurrency %d, GOMAXPROCS %d, load %.2f at start)", r.Grants, r.Concurrency, r.GOMAXPROCS, r.Load1)
	p("import", "%.1f s (%.0f grants/s)", r.ImportS, r.ImportPerSec)
	p("round", "%.1f s", r.DurationS)
	p("probes/s", "%.0f", r.ProbesPerSec)
	p("bare client/s", "%.0f (%d requests)", r.CeilingPerSec, r.CeilingRequests)
	p("ratio", "%.2f", r.Ratio)
	p("latency", "p50 %.2f ms, p99 %.2f ms (bare client: p50 %.2f ms, p99 %.2f ms)", r.P50Ms, r.P99Ms, r.CeilingP50Ms, r.CeilingP99Ms)
	p("Go heap", "%.1f MB at the end, %.1f MB peak during the round", r.HeapMB, r.PeakHeapMB)
	p("RSS", "%.1f MB at the end, %.1f MB peak (import included)", r.RSSMB, r.PeakRSSMB)
	p("CPU per 1000 probes", "%.3f s (bare client: %.3f s; both include the sandbox)", r.CPUSPer1000, r.CeilingCPUSPer1000)
	p("database", "%.1f MB", r.DBMB)
	if i := r.Idle; i != nil {
		p("idle", "%.3f %% of a core over %.0f s, heap %.1f MB (%.1f MB live)", i.CPUPercent, i.Seconds, i.HeapMB, i.LiveHeapMB)
	}
	return tw.Flush()
}

func printBrokerBench(cmd *cobra.Command, r bench.BrokerResult) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	p := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	p("broker", "%d %s clients over HTTPS keep-alive, %d grants (GOMAXPROCS %d, load %.2f at start)", r.Clients, r.Client, r.Grants, r.GOMAXPROCS, r.Load1)
	p("tokens/s", "%.0f (%d in %.1f s, %d errors)", r.PerSec, r.Requests, r.DurationS, r.Errors)
	p("latency", "p50 %.2f ms, p99 %.2f ms, max %.2f ms", r.P50Ms, r.P99Ms, r.MaxMs)
	p("ceiling", "%.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms (the same clients, net/http answering a fixed body)", r.CeilingPerSec, r.CeilingP50Ms, r.CeilingP99Ms, r.CeilingMaxMs)
	p("ratio", "%.2f", r.Ratio)
	p("CPU", "%.0f %% of a core, %.0f µs a request (daemon and clients)", r.CPUPercent, r.CPUMicrosPerRequest)
	p("provider requests", "%d (every token was held)", r.ProviderRequests)
	return tw.Flush()
}

package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/doctor"
	"github.com/grantwatch/grantwatch/internal/termtext"
)

func init() { extraCommands = append(extraCommands, (*app).doctorCmd) }

func (a *app) doctorCmd() *cobra.Command {
	var (
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "doctor [--json] [--timeout D]",
		Short: "Diagnose the installation: config, database, daemon, token endpoints, clock, receivers, systemd",
		Long: `doctor checks the config, the database and its key, the daemon's control socket,
each provider's token endpoint (DNS, TCP, TLS certificate, an HTTP answer — no refresh
token is sent, so no grant is spent), the clock, each receiver's configuration (nothing
is sent: see notify test) and the systemd environment. Each warning and failure comes
with its fix.

Exit status 1 when any check fails, 0 otherwise (warnings do not fail).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep := doctor.Run(cmd.Context(), config.Locate(a.configFlag), doctor.Options{Timeout: timeout})
			var err error
			if asJSON {
				err = printJSON(cmd.OutOrStdout(), rep)
			} else {
				printDoctor(cmd.OutOrStdout(), rep)
			}
			if err == nil && !rep.OK {
				return exitCode(1)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: {\"ok\": bool, \"checks\": [{\"name\", \"status\", \"detail\", \"fix\"}]}")
	cmd.Flags().DurationVar(&timeout, "timeout", doctor.DefaultTimeout, "bound on each network step (DNS, TCP, TLS, HTTP, NTP)")
	return cmd
}

// printDoctor prints one line per check, a fix line under each warn and
// fail, and a summary.
func printDoctor(out io.Writer, rep doctor.Report) {
	var ok, warn, fail int
	for _, c := range rep.Checks {
		tag := "[ ok ]"
		switch c.Status {
		case doctor.CheckWarn:
			tag, warn = "[warn]", warn+1
		case doctor.CheckFail:
			tag, fail = "[FAIL]", fail+1
		default:
			ok++
		}
		// Multi-line details (every problem of an invalid config) stay
		// under their check.
		// A detail may quote a receiver's answer or a provider's error.
		detail := strings.ReplaceAll(strings.TrimRight(termtext.EscapeText(c.Detail), "\n"), "\n", "\n         ")
		fmt.Fprintf(out, "%s %s: %s\n", tag, esc(c.Name), detail)
		if c.Fix != "" && c.Status != doctor.CheckOK {
			fmt.Fprintf(out, "       fix: %s\n", esc(c.Fix))
		}
	}
	fmt.Fprintf(out, "\n%d check(s): %d ok, %d warning(s), %d failed", len(rep.Checks), ok, warn, fail)
	switch {
	case fail > 0:
		fmt.Fprintln(out, " — fix the failures above")
	case warn > 0:
		fmt.Fprintln(out, " — grantwatch can work; see the warnings")
	default:
		fmt.Fprintln(out, " — all good")
	}
}

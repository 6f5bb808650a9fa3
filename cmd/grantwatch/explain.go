package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/probes"
)

// explanation is explain's JSON output. The field names are part of
// grantwatch's interface.
type explanation struct {
	Cause            string `json:"cause"`
	Action           string `json:"action"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	Retryable        bool   `json:"retryable"`
	Fix              string `json:"fix"`
	Summary          string `json:"summary"`
	Rule             string `json:"rule"`
	Status           int    `json:"status"`
	// Read names the members of the body the verdict was read from
	// ("error", "error_description", "errors[0].message", "body"); empty
	// when the status or the body's format decided.
	Read []string `json:"read"`
}

func (a *app) explainCmd() *cobra.Command {
	var (
		provider string
		status   int
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "explain [--provider NAME] [--status N] [--json] [FILE|-]",
		Short: "Classify a token endpoint's error answer: cause, action and fix",
		Long: `explain reads the body a token endpoint answered (from FILE, or stdin with - or
no argument) and prints what it means: the cause, who must act, and how to fix it.
It runs the same classification as the daemon's probes. --provider names a
configured provider (its preset's wording applies) or a preset.

Presets: ` + strings.Join(probes.PresetNames(), ", ") + `.`,
		Example: `  echo '{"error":"invalid_grant","error_description":"Token has been expired or revoked."}' | grantwatch explain --provider google
  grantwatch explain --status 503 page.html`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			preset, err := a.explainPreset(provider)
			if err != nil {
				return err
			}
			var r io.Reader = a.in
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			} else if isTerminal(r) {
				fmt.Fprintln(a.errw, "paste the token endpoint's answer, then press Ctrl-D (or give a FILE)")
			}
			body, err := io.ReadAll(io.LimitReader(r, 1<<20))
			if err != nil {
				return fmt.Errorf("read answer: %w", err)
			}
			h := http.Header{}
			if t := strings.TrimSpace(string(body)); strings.HasPrefix(t, "{") {
				h.Set("Content-Type", "application/json")
			}
			res := probes.Evaluate(preset, status, h, body)
			e := explanation{
				Cause: string(res.Cause), Action: string(res.Action),
				Error: res.Error, ErrorDescription: res.ErrorDescription,
				Retryable: res.Cause.Retryable(), Fix: res.Cause.Fix(), Summary: res.Cause.Summary(),
				Rule: res.Rule, Status: status, Read: res.Read,
			}
			if e.Read == nil {
				e.Read = []string{}
			}
			if res.OK {
				e.Cause, e.Summary, e.Fix = "none", "a successful token response: nothing to fix", ""
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(e)
			}
			if res.OK {
				fmt.Fprintln(out, "This is a successful token response: the grant works.")
				return nil
			}
			fmt.Fprintf(out, "cause:   %s\naction:  %s (%s)\n", e.Cause, e.Action, whoActs(res.Action))
			if e.Error != "" || e.ErrorDescription != "" {
				fmt.Fprintf(out, "error:   %s", esc(e.Error))
				if e.ErrorDescription != "" {
					fmt.Fprintf(out, ": %s", esc(e.ErrorDescription))
				}
				fmt.Fprintln(out)
			}
			read := "nothing: the HTTP status and the body's format decided"
			if len(e.Read) > 0 {
				read = strings.Join(e.Read, ", ")
			}
			fmt.Fprintf(out, "read:    %s\nrule:    %s\n\nWhat happened: %s.\n\n%s\n", read, e.Rule, e.Summary, wrap(e.Fix, 80))
			return nil
		},
	}
	cmd.Flags().StringVar(&provider, "provider", "", "a configured provider, or a preset (e.g. google, microsoft), whose wording to apply")
	cmd.RegisterFlagCompletionFunc("provider", a.completeProvidersAndPresets)
	cmd.Flags().IntVar(&status, "status", http.StatusBadRequest, "the HTTP status the answer came with")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// explainPreset is the preset whose wording explain --provider NAME
// applies: a configured provider's name (the name every other command
// shows) gives its preset; else NAME must be a preset. explain needs no
// config: one that cannot be read only narrows NAME to the presets.
func (a *app) explainPreset(name string) (string, error) {
	if name == "" {
		return "", nil
	}
	cfg, cfgErr := a.config()
	if cfgErr == nil {
		if p, ok := cfg.Provider(name); ok {
			return p.Preset, nil
		}
	}
	if _, ok := probes.LookupPreset(name); ok {
		return name, nil
	}
	configured := "no config could be read"
	if cfgErr == nil {
		configured = "configured in " + cfg.Path() + ": " + dash(strings.Join(cfg.ProviderNames(), ", "))
	}
	return "", fmt.Errorf("--provider: %q is neither a configured provider (%s) nor a preset (known: %s)",
		name, configured, strings.Join(probes.PresetNames(), ", "))
}

func whoActs(a probes.Action) string {
	switch a {
	case probes.ActionReconnect:
		return "the user must reconnect"
	case probes.ActionSyncClock:
		return "the operator must fix this host's clock"
	case probes.ActionFixConfig:
		return "the operator must fix the provider's config"
	}
	return "nobody: grantwatch retries"
}

// wrap folds text at width columns on spaces.
func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(s) {
		if i > 0 && n+1+len(w) > width {
			b.WriteByte('\n')
			n = 0
		} else if i > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

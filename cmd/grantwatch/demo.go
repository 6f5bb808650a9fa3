package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lmittmann/tint"
	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/daemon"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/termtext"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

func init() { extraCommands = append(extraCommands, (*app).demoCmd) }

func (a *app) demoCmd() *cobra.Command {
	var dur time.Duration
	cmd := &cobra.Command{
		Use:   "demo [--duration D]",
		Short: "Watch grantwatch work for ~30 s against a local sandbox (no config, no network)",
		Long: `demo runs the real daemon on a temporary database against grantwatch's loopback
sandbox: a token endpoint and an NTP server on 127.0.0.1. A dozen grants get revoked,
expire, lose their password, hit a provider outage and a clock skew; a built-in webhook
prints what on-call would receive, the daemon's log shows what an operator reads, and
the demo ends with the status table. Nothing leaves this machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), dur)
		},
	}
	cmd.Flags().DurationVar(&dur, "duration", 30*time.Second, "how long the demo runs")
	return cmd
}

// demoPrinter serialises the demo's output: narration, the operator's log
// and what on-call receives.
type demoPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (p *demoPrinter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.w.Write(b)
}

func (p *demoPrinter) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\n[%4.1fs] ▶ %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// onCall renders one notification as the on-call person would read it.
func (p *demoPrinter) onCall(n notify.Notification) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "  ┌ on-call receives (webhook, %d event(s), notification %s)\n", len(n.Events), n.ID[:min(8, len(n.ID))])
	esc := termtext.Escape // sandbox shows grants imported by anyone
	for _, e := range n.Events {
		fmt.Fprintf(p.w, "  │ %s: %s\n", e.Type, esc(e.Summary))
		if e.Grant != nil && e.Grant.Cause != "" {
			fmt.Fprintf(p.w, "  │   grant %s (%s, %s) cause %s, action %s\n", esc(e.Grant.ID), esc(e.Grant.Provider), esc(e.Grant.Subject), e.Grant.Cause, e.Grant.Action)
		}
		if e.Fix != "" {
			fmt.Fprintf(p.w, "  │   fix: %s\n", strings.ReplaceAll(wrap(e.Fix, 84), "\n", "\n  │        "))
		}
	}
	fmt.Fprintln(p.w, "  └")
}

// webhook is a loopback webhook receiver that prints what on-call would
// receive.
func (p *demoPrinter) webhook() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n notify.Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.onCall(n)
	}))
}

// demoGrant is one staged grant.
type demoGrant struct {
	id, provider, subject string
	token                 string
}

func runDemo(ctx context.Context, out io.Writer, dur time.Duration) error {
	dur = max(dur, 8*time.Second)
	p := &demoPrinter{w: out, start: time.Now()}
	at := func(frac float64) time.Duration { return time.Duration(frac * float64(dur)) }

	dir, err := os.MkdirTemp("", "grantwatch-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// Two providers, each its own sandbox token endpoint, and an NTP server.
	google, err := sandbox.Start()
	if err != nil {
		return err
	}
	defer google.Close()
	m365, err := sandbox.Start()
	if err != nil {
		return err
	}
	defer m365.Close()
	ntp, err := sandbox.StartNTP()
	if err != nil {
		return err
	}
	defer ntp.Close()

	hook := p.webhook()
	defer hook.Close()

	cfgText := fmt.Sprintf(`# grantwatch demo config (temporary)
[daemon]
db = "demo.db"
listen = ""
tick = "@every 1s"
workers = 8
probe_timeout = "2s"
backoff_min = "500ms"
backoff_max = "2s"

[clock]
servers = [%q]
schedule = "@every 1s"

[health]
window = 6

[[providers]]
name = "google"
preset = "google"
token_url = %q
client_id = "demo-client"
client_secret = "demo-secret"
interval = "2s"

[[providers]]
name = "m365"
preset = "microsoft"
token_url = %q
client_id = "demo-client"
client_secret = "demo-secret"
interval = "2s"

[[notify]]
name = "on-call"
type = "webhook"
url = %q
group_wait = "0s"
`, ntp.Addr(), google.TokenURL(), m365.TokenURL(), hook.URL)
	cfgPath := filepath.Join(dir, "grantwatch.toml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}

	grants := map[string]*demoGrant{}
	var lines []string
	add := func(sb *sandbox.Server, provider, id, subject string) {
		g := &demoGrant{id: id, provider: provider, subject: subject, token: sb.Issue(sandbox.Healthy)}
		grants[id] = g
		lines = append(lines, fmt.Sprintf(`{"id":%q,"provider":%q,"refresh_token":%q,"subject":%q,"labels":{"tenant":"acme"}}`, id, provider, g.token, subject))
	}
	for _, n := range []string{"ann", "bob", "cho", "dee", "eve", "fay"} {
		add(google, "google", n+"-gmail", n+"@acme.example")
	}
	for _, n := range []string{"gus", "hal", "ivy", "jon", "kim", "lee"} {
		add(m365, "m365", n+"-outlook", n+"@acme.example")
	}
	gs, err := daemon.ParseImport(strings.NewReader(strings.Join(lines, "\n")), cfg.Provider)
	if err != nil {
		return err
	}
	db, err := daemon.OpenStore(cfg, false)
	if err != nil {
		return err
	}
	if _, _, err := db.Import(gs, time.Now(), store.ImportOptions{}); err != nil {
		db.Close()
		return err
	}
	db.Close()

	// The operator's view: the daemon's log, warnings and errors.
	logger := slog.New(tint.NewHandler(p, &tint.Options{Level: slog.LevelWarn, TimeFormat: "15:04:05", NoColor: true}))
	d, err := daemon.Open(daemon.Options{Config: cfg, Logger: logger, ConfigPath: cfgPath})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- d.Run(runCtx, func(*daemon.Daemon) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		return err
	}
	fmt.Fprintf(out, "grantwatch demo: 12 grants of two providers (google, m365) against a loopback sandbox.\n")
	fmt.Fprintf(out, "Lines marked ▶ narrate; log lines are what an operator tails; boxes are what on-call receives.\n")
	p.say("12 grants imported; the daemon probes each every 2s. All healthy.")

	c := daemon.InProcess(d, false)
	defer c.Close()
	steps := []struct {
		at   float64
		what string
		do   func()
	}{
		{0.12, "ann revokes access at Google (Google's answer does not say why, so the cause is invalid_grant); gus changes his password; hal's token expires from disuse; ivy's tenant now demands MFA.", func() {
			google.Set(grants["ann-gmail"].token, sandbox.Revoked)
			m365.Set(grants["gus-outlook"].token, sandbox.PasswordChanged)
			m365.Set(grants["hal-outlook"].token, sandbox.Expired)
			m365.Set(grants["ivy-outlook"].token, sandbox.InteractionRequired)
		}},
		{0.30, "Microsoft's token endpoint starts failing with 503: an outage, not six dead grants.", func() {
			m365.SetAll(sandbox.Unavailable)
		}},
		{0.50, "The outage ends.", func() { m365.SetAll("") }},
		{0.56, "This server's clock jumps 5 minutes off. Bob's token is refused meanwhile: grantwatch holds the verdict instead of blaming bob.", func() {
			ntp.SetOffset(5 * time.Minute)
			time.AfterFunc(at(0.06), func() { google.Set(grants["bob-gmail"].token, sandbox.Revoked) })
		}},
		{0.76, "The operator fixes the clock (chronyc makestep). Held grants are probed at once: bob's token really was revoked.", func() {
			ntp.SetOffset(0)
		}},
		{0.86, "ann reconnects in the app, which hands grantwatch her new refresh token (grants set-token).", func() {
			tok := google.Issue(sandbox.Healthy)
			if _, err := c.SetToken(runCtx, "ann-gmail", secret.Secret(tok)); err != nil {
				p.say("set-token failed: %v", err)
			}
		}},
	}
	start := time.Now()
	for _, s := range steps {
		select {
		case <-time.After(time.Until(start.Add(at(s.at)))):
		case <-ctx.Done():
			return ctx.Err()
		}
		p.say("%s", s.what)
		s.do()
	}
	select {
	case <-time.After(time.Until(start.Add(dur))):
	case <-ctx.Done():
		return ctx.Err()
	}
	st, err := d.Status()
	if err != nil {
		return err
	}
	p.say("The demo ends. `grantwatch status` now says:")
	p.mu.Lock()
	fmt.Fprintln(out)
	printStatus(out, st)
	p.mu.Unlock()
	stop()
	if err := <-done; err != nil {
		return err
	}
	fmt.Fprintln(out, "\nNext: cp config.example.toml grantwatch.toml, add your providers, export GRANTWATCH_CONFIG=$PWD/grantwatch.toml,\nthen `grantwatch doctor`, `grantwatch grants import grants.jsonl`, `grantwatch run` (README.md, \"Install\").")
	return nil
}

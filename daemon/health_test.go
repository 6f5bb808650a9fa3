package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// TestHealthCanariesDecide: canaries, not the grants' own probes, declare
// and end an outage, one canary period apart, so a small fleet is judged as
// fast as a large one; a burst of failures that the next canary does not
// confirm is no outage, however many grants it hit. Each step is one probe
// result at a time after the start.
func TestHealthCanariesDecide(t *testing.T) {
	const period = 5 * time.Second
	fail := probes.Result{Cause: probes.CauseServerError, Action: probes.ActionRetry, Status: 502}
	ok := probes.Result{OK: true}
	revoked := probes.Result{Cause: probes.CauseRevoked, Action: probes.ActionReconnect, Error: "invalid_grant"}
	badClient := probes.Result{Cause: probes.CauseInvalidClient, Action: probes.ActionFixConfig, Error: "invalid_client"}
	type step struct {
		at time.Duration
		r  probes.Result
		// sent: the request went out this long before it is observed
		// (zero: Started unset).
		sent   time.Duration
		canary bool
		// unproven: the canary's grant never worked (pending), so its
		// failure may be the grant's own.
		unproven bool
		want     string // the state it changes to; "" for no change
	}
	burst := func(at time.Duration, n int) []step {
		var s []step
		for i := range n {
			s = append(s, step{at: at + time.Duration(i)*time.Millisecond, r: fail})
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{
			// A canary has just answered, so the next is a period away;
			// meanwhile 10 of 10 probes fail (the old rule's outage), but
			// that canary gets an answer: a blip.
			name: "a burst the canary does not confirm",
			steps: append(append([]step{{at: 0, r: fail}, {at: 0, r: ok, canary: true}}, burst(10*time.Millisecond, 10)...),
				step{at: period, r: ok, canary: true}),
		},
		{
			// Many grants fail, and the canary of a healthy one too: the
			// outage is declared at once.
			name:  "a burst a canary confirms",
			steps: append(burst(0, 10), step{at: 20 * time.Millisecond, r: fail, canary: true, want: ProviderOutage}),
		},
		{
			// A canary of a grant that never worked may fail for itself:
			// a second one, a period later, confirms.
			name: "canaries of unproven grants",
			steps: append(burst(0, 10),
				step{at: 20 * time.Millisecond, r: fail, canary: true, unproven: true},
				step{at: period + 20*time.Millisecond, r: fail, canary: true, unproven: true, want: ProviderOutage}),
		},
		{
			// One grant's failure, then two canaries a period apart fail:
			// the outage is declared one period after the first failure.
			name: "two failed canaries in a row",
			steps: []step{
				{at: 0, r: fail},
				{at: 0, r: fail, canary: true},
				{at: period, r: fail, canary: true, want: ProviderOutage},
				{at: 2 * period, r: fail, canary: true},
				{at: 3 * period, r: ok, canary: true, want: ProviderOK},
			},
		},
		{
			name: "a failed canary, then one that answers",
			steps: []step{
				{at: 0, r: fail},
				{at: 0, r: fail, canary: true},
				{at: period, r: ok, canary: true},
				{at: 2 * period, r: fail},
				{at: 2 * period, r: fail, canary: true},
			},
		},
		{
			// The canary probed a dead grant: the provider answered.
			name: "an answer about the grant clears the suspicion",
			steps: []step{
				{at: 0, r: fail},
				{at: 0, r: fail, canary: true},
				{at: period, r: revoked, canary: true},
				{at: 2 * period, r: fail},
				{at: 2 * period, r: fail, canary: true},
			},
		},
		{
			// Failures from before the recovery do not count towards a
			// new outage: one fresh failure and one failed canary are not
			// two canaries in a row.
			name: "a recovery needs fresh evidence",
			steps: []step{
				{at: 0, r: fail},
				{at: 0, r: fail, canary: true},
				{at: period, r: fail, canary: true, want: ProviderOutage},
				{at: 2 * period, r: ok, canary: true, want: ProviderOK},
				{at: 2*period + time.Second, r: fail},
				{at: 3 * period, r: fail, canary: true},
				{at: 4 * period, r: fail, canary: true, want: ProviderOutage},
			},
		},
		{
			// The failures of a suspicion that no canary could check for
			// longer than health.period are stale: a failed canary then
			// has only itself for evidence.
			name:  "failures older than the period",
			steps: append(burst(0, 10), step{at: time.Minute + time.Second, r: fail, canary: true}),
		},
		{
			// Failed canaries, while most other probes succeed, are the
			// canaries' grants' own trouble.
			name: "canaries fail but most probes succeed",
			steps: append([]step{{at: 0, r: fail}, {at: 0, r: fail, canary: true}},
				append(func() []step {
					var s []step
					for i := range 10 {
						s = append(s, step{at: time.Second + time.Duration(i)*time.Millisecond, r: ok})
					}
					return s
				}(), step{at: period, r: fail, canary: true})...),
		},
		{
			// A config answer needs no confirmation; the next canary comes
			// an interval later, not a canary period.
			name: "a config answer is misconfiguration at once",
			steps: []step{
				{at: 0, r: badClient, want: ProviderMisconfigured},
				{at: time.Minute, r: ok, canary: true, want: ProviderOK},
			},
		},
		{
			// The secret is rotated while probes are in flight: one sent
			// before was answered with a token, but is observed after the
			// first refusal. It says nothing about the client since: no
			// provider.ok, then provider.misconfigured a moment later. A
			// canary sent after the fix ends the incident.
			name: "an answer sent before the misconfiguration does not end it",
			steps: []step{
				{at: 0, r: badClient, want: ProviderMisconfigured},
				{at: 10 * time.Millisecond, sent: 50 * time.Millisecond, r: ok},
				{at: 20 * time.Millisecond, r: badClient},
				{at: time.Minute, sent: time.Second, r: ok, canary: true, want: ProviderOK},
			},
		},
		{
			// Likewise an answer sent before the confirming canary does not
			// end the outage it declared.
			name: "an answer sent before the outage does not end it",
			steps: append(burst(0, 10),
				step{at: 20 * time.Millisecond, r: fail, canary: true, want: ProviderOutage},
				step{at: 30 * time.Millisecond, sent: 25 * time.Millisecond, r: ok},
				step{at: period + 20*time.Millisecond, sent: time.Second, r: ok, canary: true, want: ProviderOK}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHealth(config.HealthConfig{Window: 20, Threshold: 0.5, Period: time.Minute, CanaryPeriod: period})
			p := Policy{Interval: time.Minute, BackoffMin: time.Minute, BackoffMax: time.Hour}
			start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
			for i, s := range tc.steps {
				now := start.Add(s.at)
				if s.canary {
					if _, due := h.canaryDue(now); !due {
						t.Fatalf("step %d (+%s): no canary due", i, s.at)
					}
				}
				r := s.r
				if s.sent > 0 {
					r.Started = now.Add(-s.sent)
				}
				var ch *healthChange
				if s.canary {
					ch = h.observeCanary(now, r, p, !s.unproven)
				} else {
					ch = h.observe(now, r, p)
				}
				got := ""
				if ch != nil {
					got = ch.To
				}
				if got != s.want {
					t.Fatalf("step %d (+%s, %s, canary %v): change to %q, want %q", i, s.at, s.r.Cause, s.canary, got, s.want)
				}
			}
		})
	}
}

// TestHealthCanarySchedule: when canaries are due. None while the provider
// is ok and nothing failed; the first at once when a probe fails, then one
// per canary period; once per interval (at most backoff_max) while
// misconfigured; at once after a restart that restored an incident.
func TestHealthCanarySchedule(t *testing.T) {
	const period = 2 * time.Second
	cfg := config.HealthConfig{Window: 20, Threshold: 0.5, Period: time.Minute, CanaryPeriod: period}
	p := Policy{Interval: 10 * time.Minute, BackoffMin: time.Minute, BackoffMax: time.Hour}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	fail := probes.Result{Cause: probes.CauseNetwork, Action: probes.ActionRetry}
	due := func(h *health, at time.Time) bool {
		t.Helper()
		_, ok := h.canaryDue(at)
		return ok
	}

	h := newHealth(cfg)
	if due(h, now) {
		t.Fatal("a canary is due for an ok provider nothing failed at")
	}
	h.observe(now, fail, p)
	if !due(h, now) {
		t.Fatal("no canary at once after the first failure")
	}
	if due(h, now) {
		t.Fatal("a second canary while one is in flight")
	}
	h.observeCanary(now, fail, p, true)
	if due(h, now.Add(period-time.Millisecond)) || !due(h, now.Add(period)) {
		t.Fatal("the next canary is not one canary period after the last")
	}
	h.observeCanary(now.Add(period), fail, p, true) // the outage
	if st, _, _, _ := h.snapshot(); st != ProviderOutage {
		t.Fatalf("state %s after two failed canaries", st)
	}
	if !due(h, now.Add(2*period)) {
		t.Fatal("in outage, no canary one period after the last")
	}
	h.observeCanary(now.Add(2*period), probes.Result{Cause: probes.CauseInvalidClient, Action: probes.ActionFixConfig}, p, true)
	if due(h, now.Add(9*time.Minute)) || !due(h, now.Add(2*period+10*time.Minute)) {
		t.Fatal("a misconfigured provider's canary is not an interval apart")
	}

	r := newHealth(cfg)
	r.restore(ProviderOutage, now, p)
	if !due(r, now) {
		t.Fatal("no canary at once for an outage restored at start")
	}
	if !r.outage() {
		t.Fatal("a restored outage does not hold the grants' verdicts")
	}
}

// openTestDaemon opens (does not run) a daemon with one sandbox provider
// "acme" and one healthy-token grant "acme-0".
func openTestDaemon(t *testing.T) (*Daemon, *sandbox.Server) {
	t.Helper()
	sb, err := sandbox.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb))
	importGrants(t, cfg, sb, "acme", 1, sandbox.Healthy)
	d, err := Open(Options{Config: cfg, ConfigPath: cfg.Path(), Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, sb
}

func setGrant(t *testing.T, d *Daemon, id string, fn func(*store.Grant)) {
	t.Helper()
	err := d.DB().Apply(id, func(cur store.Grant) (store.Change, error) {
		fn(&cur)
		return store.Change{Grant: cur}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A lease taken while the grant was due, deferred by a paused provider
// after `grants probe` made the grant reconnect_required: the dead grant
// must stay unscheduled.
func TestDeferKeepsReconnectRequiredUnscheduled(t *testing.T) {
	for _, st := range []string{ProviderOutage, ProviderMisconfigured} {
		t.Run(st, func(t *testing.T) {
			d, _ := openTestDaemon(t)
			leased, err := d.DB().GetLease("acme-0")
			if err != nil {
				t.Fatal(err)
			}
			setGrant(t, d, "acme-0", func(g *store.Grant) {
				g.State, g.Cause, g.Action = store.StateReconnectRequired, string(probes.CauseRevoked), string(probes.ActionReconnect)
				g.NextDueAt = time.Time{}
			})
			p := d.provider("acme")
			p.health.state, p.health.cause = st, probes.CauseInvalidClient
			d.deferGrant(leased.Grant, p, time.Second)
			g, err := d.DB().Get("acme-0")
			if err != nil {
				t.Fatal(err)
			}
			if g.State != store.StateReconnectRequired || !g.NextDueAt.IsZero() {
				t.Errorf("after deferral: state %s, due %v; want reconnect_required and unscheduled", g.State, g.NextDueAt)
			}
		})
	}
}

// After a restart while the provider was announced misconfigured, its
// health knows no cause: deferring a healthy grant must not count as a
// transient failure of the grant (and degrade it).
func TestDeferAfterRestartMisconfiguredDoesNotDegrade(t *testing.T) {
	d, _ := openTestDaemon(t)
	setGrant(t, d, "acme-0", func(g *store.Grant) { g.State = store.StateHealthy })
	if err := d.DB().PutMeta(metaProvider("acme"), []byte(ProviderMisconfigured)); err != nil {
		t.Fatal(err)
	}
	d.initHealth() // as Open after a restart
	p := d.provider("acme")
	for range 5 {
		g, err := d.DB().Get("acme-0")
		if err != nil {
			t.Fatal(err)
		}
		d.deferGrant(g, p, time.Second)
	}
	g, err := d.DB().Get("acme-0")
	if err != nil {
		t.Fatal(err)
	}
	if g.State == store.StateDegraded || g.Failures != 0 {
		t.Fatalf("after deferrals: state %s, failures %d; want no failure counted", g.State, g.Failures)
	}
	// The canary's answer tells the cause; later deferrals hold the grant.
	p.health.observe(time.Now(), probes.Result{Cause: probes.CauseInvalidClient, Action: probes.ActionFixConfig, Error: "invalid_client"}, p.policy)
	d.deferGrant(g, p, time.Second)
	if g, err = d.DB().Get("acme-0"); err != nil {
		t.Fatal(err)
	}
	if g.State != store.StateOnHold || g.Cause != string(probes.CauseInvalidClient) {
		t.Errorf("after the canary: state %s cause %q; want on_hold invalid_client", g.State, g.Cause)
	}
}

// A probe in flight across a reload that left its provider's config alone
// shares the provider's health: the change it causes (here: the outage
// ends) must be announced, not lost.
func TestProbeAcrossUnchangedReloadAnnounces(t *testing.T) {
	d, _ := openTestDaemon(t)
	if err := d.DB().PutMeta(metaProvider("acme"), []byte(ProviderOutage)); err != nil {
		t.Fatal(err)
	}
	d.initHealth()
	old := d.provider("acme")
	l, err := d.DB().GetLease("acme-0")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.reload(); err != nil { // the same file: nothing changed
		t.Fatal(err)
	}
	if d.provider("acme").health != old.health {
		t.Fatal("an unchanged provider's health was not carried over")
	}
	res := d.refresh(context.Background(), old, l)
	if !res.OK {
		t.Fatalf("probe failed: %+v", res)
	}
	if st, _, _, _ := d.provider("acme").health.snapshot(); st != ProviderOK {
		t.Fatalf("provider %s after a success, want ok", st)
	}
	b, err := d.DB().GetMeta(metaProvider("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != ProviderOK {
		t.Errorf("announced state %q after the outage ended: provider.ok was never sent", b)
	}
}

// A worker that leased a grant under the old config and reaches the
// provider's gate after a reload replaced it must not hold (or push back)
// the grant on the old config's verdict: the grant is due again at once,
// for the new config to decide.
func TestDeferAfterReloadRequeues(t *testing.T) {
	d, _ := openTestDaemon(t)
	old := d.provider("acme")
	old.health.observe(time.Now(), probes.Result{Cause: probes.CauseInvalidClient, Action: probes.ActionFixConfig, Error: "invalid_client"}, old.policy)
	leased, err := d.DB().GetLease("acme-0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(d.Config().Path())
	if err != nil {
		t.Fatal(err)
	}
	fixed := strings.Replace(string(b), "test-client-secret-DO-NOT-LOG", "the-fixed-secret", 1)
	if err := os.WriteFile(d.Config().Path(), []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.reload(); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	d.deferGrant(leased.Grant, old, time.Hour)
	g, err := d.DB().Get("acme-0")
	if err != nil {
		t.Fatal(err)
	}
	if g.State == store.StateOnHold || g.NextDueAt.After(before.Add(time.Second)) {
		t.Errorf("deferred under the replaced config: %s, due in %s; want it due now, not held", g.State, g.NextDueAt.Sub(before).Round(time.Second))
	}
}

// TestMisconfigDetailInvalidRequest: a provider held for invalid_request
// names token_url and what may be wrong with it.
func TestMisconfigDetailInvalidRequest(t *testing.T) {
	r := probes.Result{Cause: probes.CauseInvalidRequest, Error: "invalid_request", ErrorDescription: "The request is missing a required parameter: refresh_token."}
	if got := misconfigDetail(r); !strings.HasPrefix(got, "token_url: the endpoint did not receive refresh_token") || !strings.Contains(got, "provider said: The request is missing") {
		t.Errorf("misconfigDetail = %q", got)
	}
}

package daemon

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// TestHealthRecoveryNeedsFreshEvidence: a provider that recovers (a canary
// answers) is not declared in outage again by its next transient failure on
// the strength of failures from before the recovery: a new outage needs a
// threshold of failures seen since. Without this a provider failing about
// half the time cycles outage/ok, one announcement each way per cycle.
func TestHealthRecoveryNeedsFreshEvidence(t *testing.T) {
	h := newHealth(config.HealthConfig{Window: 10, Threshold: 0.5, Period: time.Hour})
	p := Policy{Interval: time.Hour, BackoffMin: time.Second, BackoffMax: time.Minute}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	fail := probes.Result{Cause: probes.CauseServerError, Action: probes.ActionRetry, Status: 502}
	ok := probes.Result{OK: true}
	var changes []string
	observe := func(r probes.Result) {
		now = now.Add(time.Second)
		if ch := h.observe(now, r, p); ch != nil {
			changes = append(changes, ch.To)
		}
	}
	for range 5 {
		observe(fail)
	}
	if len(changes) != 1 || changes[0] != ProviderOutage {
		t.Fatalf("after 5 of 10 failed: changes %v, want one outage", changes)
	}
	observe(ok) // the canary answers
	observe(fail)
	observe(ok)
	observe(fail)
	if want := []string{ProviderOutage, ProviderOK}; len(changes) != 2 || changes[1] != ProviderOK {
		t.Fatalf("changes %v, want %v: single failures after a recovery are no new outage", changes, want)
	}
	for range 4 {
		observe(fail)
	}
	if n := len(changes); n != 3 || changes[2] != ProviderOutage {
		t.Errorf("after 5 fresh failures: changes %v, want a second outage", changes)
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
	res := d.refresh(context.Background(), old, l.Token)
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

// TestMisconfigDetailInvalidRequest: a provider held for invalid_request
// names token_url and what may be wrong with it.
func TestMisconfigDetailInvalidRequest(t *testing.T) {
	r := probes.Result{Cause: probes.CauseInvalidRequest, Error: "invalid_request", ErrorDescription: "The request is missing a required parameter: refresh_token."}
	if got := misconfigDetail(r); !strings.HasPrefix(got, "token_url: the endpoint did not receive refresh_token") || !strings.Contains(got, "provider said: The request is missing") {
		t.Errorf("misconfigDetail = %q", got)
	}
}

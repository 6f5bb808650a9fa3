package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

const day = 24 * time.Hour

// forecastNow is the injected clock of the forecast tests.
var forecastNow = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)

func lifetimePolicy(l config.Lifetimes) Policy {
	p := testPolicy
	p.Lifetimes, p.WarnBefore = l, 7*day
	return p
}

func ok() probes.Result { return probes.Result{OK: true, Status: 200, Rule: "token"} }

// notices returns the notices of out of type typ.
func notices(out Outcome, typ string) []notify.Event {
	var evs []notify.Event
	for _, ev := range out.Notices {
		if ev.Type == typ {
			evs = append(evs, ev)
		}
	}
	return evs
}

// TestForecastBasis: after a probe the grant's forecast is the earliest of
// the idle window from the last successful use, the maximum lifetime from
// consent, the lifetime the answer announced, the entry's configured
// lifetimes and Google's Testing mode, with the basis that set it.
func TestForecastBasis(t *testing.T) {
	now := forecastNow
	healthy := store.Grant{ID: "g1", Provider: "p", State: store.StateHealthy,
		CreatedAt: now.Add(-400 * day), ConsentAt: now.Add(-300 * day), LastSuccessAt: now.Add(-day)}
	tests := []struct {
		name  string
		g     store.Grant
		l     config.Lifetimes
		r     probes.Result
		at    time.Time // zero: no forecast
		basis string
	}{
		// Microsoft: 90 days sliding, from this success.
		{"idle", healthy, config.Lifetimes{Idle: 90 * day}, ok(), now.Add(90 * day), store.BasisIdle},
		// A failure is no use: the window runs from the last success.
		{"idle after a failure", healthy, config.Lifetimes{Idle: 90 * day}, failed(probes.CauseServerError), now.Add(89 * day), store.BasisIdle},
		// Atlassian: 365 days from consent come before the 90-day window.
		{"absolute", healthy, config.Lifetimes{Idle: 90 * day, Max: 365 * day}, ok(), now.Add(65 * day), store.BasisAbsolute},
		// An older record without ConsentAt counts from its creation.
		{"absolute from creation", store.Grant{ID: "g1", Provider: "p", State: store.StateHealthy, CreatedAt: now.Add(-360 * day)},
			config.Lifetimes{Max: 365 * day}, ok(), now.Add(5 * day), store.BasisAbsolute},
		// GitHub announces 15811200 s (183 days) on each refresh.
		{"announced", healthy, config.Lifetimes{Idle: 184 * day}, probes.Result{OK: true, Status: 200, RefreshExpiresIn: 15811200 * time.Second},
			now.Add(15811200 * time.Second), store.BasisAnnounced},
		// A self-hosted provider's own policy.
		{"configured idle", healthy, config.Lifetimes{Idle: 12 * time.Hour, IdleConfigured: true}, ok(), now.Add(12 * time.Hour), store.BasisConfigured},
		{"configured max", healthy, config.Lifetimes{Idle: 90 * day, Max: 310 * day, MaxConfigured: true}, ok(), now.Add(10 * day), store.BasisConfigured},
		// Google, app in Testing: 7 days from consent.
		{"testing", store.Grant{ID: "g1", Provider: "p", State: store.StatePending, ConsentAt: now.Add(-2 * day)},
			config.Lifetimes{Idle: 180 * day, Testing: true}, ok(), now.Add(5 * day), store.BasisTesting},
		{"nothing known", healthy, config.Lifetimes{}, ok(), time.Time{}, ""},
		// A dead grant has no forecast.
		{"reconnect required", healthy, config.Lifetimes{Idle: 90 * day}, failed(probes.CauseRevoked), time.Time{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := Transition(tt.g, tt.r, Env{Now: now, Policy: lifetimePolicy(tt.l)})
			if g := out.Grant; !g.ExpiresAt.Equal(tt.at) || g.ExpiresBasis != tt.basis {
				t.Errorf("forecast %v (%q), want %v (%q)", g.ExpiresAt, g.ExpiresBasis, tt.at, tt.basis)
			}
		})
	}

	// An announced lifetime holds across failures and goes with a success
	// that announces none.
	l := config.Lifetimes{Idle: 184 * day}
	g := Transition(healthy, probes.Result{OK: true, Status: 200, RefreshExpiresIn: 10 * day}, Env{Now: now, Policy: lifetimePolicy(l)}).Grant
	g = Transition(g, failed(probes.CauseServerError), Env{Now: now.Add(time.Hour), Policy: lifetimePolicy(l)}).Grant
	if g.ExpiresBasis != store.BasisAnnounced || !g.ExpiresAt.Equal(now.Add(10*day)) {
		t.Errorf("after a failure: %v (%q), want the announced %v", g.ExpiresAt, g.ExpiresBasis, now.Add(10*day))
	}
	g = Transition(g, ok(), Env{Now: now.Add(2 * time.Hour), Policy: lifetimePolicy(l)}).Grant
	if g.ExpiresBasis != store.BasisIdle {
		t.Errorf("after a success without an announcement: basis %q, want idle", g.ExpiresBasis)
	}
}

// TestExpiringSentOnce: grant.expiring goes out once per token chain, at the
// first probe within warn_before of a death probing cannot prevent, and a
// grant probed less often than that is probed when the warning is due.
func TestExpiringSentOnce(t *testing.T) {
	now := forecastNow
	l := config.Lifetimes{Max: 30 * day} // Cognito's default
	pol := lifetimePolicy(l)
	pol.Interval = 20 * day
	g := store.Grant{ID: "g1", Provider: "cognito", State: store.StateHealthy, ConsentAt: now.Add(-20 * day), Row: 1}

	// 10 days left: not yet; the next probe comes when the warning is due.
	out := Transition(g, ok(), Env{Now: now, Policy: pol})
	warnAt := now.Add(3 * day)
	if len(out.Notices) != 0 || !out.Grant.NextDueAt.Equal(warnAt) {
		t.Fatalf("10 days ahead: notices %v, next probe %v; want none and %v", out.Notices, out.Grant.NextDueAt, warnAt)
	}
	// That probe warns, once.
	out = Transition(out.Grant, ok(), Env{Now: warnAt, Policy: pol})
	evs := notices(out, notify.TypeExpiring)
	if len(evs) != 1 || !out.Grant.ExpiryWarned {
		t.Fatalf("7 days ahead: %d grant.expiring (warned %v), want 1", len(evs), out.Grant.ExpiryWarned)
	}
	ev := evs[0]
	if !ev.Grant.ExpiresAt.Equal(now.Add(10*day)) || ev.Grant.ExpiresBasis != store.BasisAbsolute ||
		!strings.Contains(ev.Summary, "in 7d 0h") || !strings.Contains(ev.Fix, "reconnect") {
		t.Errorf("event %+v %+v", ev, ev.Grant)
	}
	for i := 1; i <= 3; i++ {
		out = Transition(out.Grant, ok(), Env{Now: warnAt.Add(time.Duration(i) * day), Policy: pol})
		if len(out.Notices) != 0 {
			t.Fatalf("probe %d after the warning: %v", i, out.Notices)
		}
	}
	// Google Testing mode warns at once (7 days is all there is), and says
	// to publish the app.
	out = Transition(store.Grant{ID: "g2", Provider: "google", State: store.StatePending, ConsentAt: now},
		ok(), Env{Now: now, Policy: lifetimePolicy(config.Lifetimes{Idle: 180 * day, Testing: true})})
	if evs := notices(out, notify.TypeExpiring); len(evs) != 1 || !strings.Contains(evs[0].Fix, "Publish the app") {
		t.Errorf("testing mode: %+v", out.Notices)
	}
}

// TestExpiringIdleWindow: the schedule keeps an idle window alive, so a
// grant probed successfully is never warned of it and its next probe comes
// before the window ends; a grant whose probes keep failing is warned
// within warn_before of dying of disuse.
func TestExpiringIdleWindow(t *testing.T) {
	now := forecastNow
	l := config.Lifetimes{Idle: 90 * day}
	pol := lifetimePolicy(l)
	pol.Interval = 80 * day // allowed (below 90 days); an off-phase probe may schedule 1.5 intervals ahead
	g := store.Grant{ID: "g1", Provider: "microsoft", State: store.StateHealthy, ConsentAt: now.Add(-100 * day), LastSuccessAt: now.Add(-85 * day), Row: 12345}

	out := Transition(g, ok(), Env{Now: now, Policy: pol})
	if len(out.Notices) != 0 {
		t.Errorf("a success warned: %v", out.Notices)
	}
	if !out.Grant.NextDueAt.Before(out.Grant.ExpiresAt) {
		t.Errorf("next probe %v is not before the idle window ends at %v", out.Grant.NextDueAt, out.Grant.ExpiresAt)
	}
	out = Transition(g, failed(probes.CauseServerError), Env{Now: now, Policy: pol})
	evs := notices(out, notify.TypeExpiring)
	if len(evs) != 1 || evs[0].Grant.ExpiresBasis != store.BasisIdle || !strings.Contains(evs[0].Fix, "one successful probe") {
		t.Fatalf("a failing grant 5 days from dying of disuse: %+v", out.Notices)
	}
	// 20 days from its end, failing: too early to warn.
	g.LastSuccessAt = now.Add(-70 * day)
	if out := Transition(g, failed(probes.CauseServerError), Env{Now: now, Policy: pol}); len(out.Notices) != 0 {
		t.Errorf("20 days ahead: %v", out.Notices)
	}
}

// TestUnreadableStreak: a 4xx no rule reads, answered to the same grant
// over store.UnreadableAfter consecutive probes, raises grant.unreadable
// once, with the answer's status and words and how to read it; the grant
// is not made reconnect_required, and any readable answer ends the streak.
func TestUnreadableStreak(t *testing.T) {
	now := forecastNow
	unreadable := probes.Evaluate("reddit", 400, nil, []byte(`{"message":"Bad Request","error":400}`))
	if !unreadable.Unreadable() {
		t.Fatalf("the fixture is read: %+v", unreadable)
	}
	env := Env{Now: now, Policy: testPolicy}
	g := store.Grant{ID: "g1", Provider: "reddit", State: store.StateHealthy}
	var sent int
	for i := 1; i <= 4; i++ {
		env.Now = now.Add(time.Duration(i) * time.Minute)
		out := Transition(g, unreadable, env)
		g = out.Grant
		evs := notices(out, notify.TypeUnreadable)
		sent += len(evs)
		if g.Unreadable != i || g.State == store.StateReconnectRequired {
			t.Fatalf("probe %d: count %d, state %s", i, g.Unreadable, g.State)
		}
		if want := map[bool]int{true: 1, false: 0}[i == store.UnreadableAfter]; len(evs) != want {
			t.Fatalf("probe %d: %d grant.unreadable, want %d", i, len(evs), want)
		}
		if len(evs) == 1 {
			ev := evs[0]
			if ev.Grant.HTTPStatus != 400 || ev.Grant.ErrorDescription != "Bad Request" ||
				!strings.Contains(ev.Summary, "HTTP 400: Bad Request") || !strings.Contains(ev.Fix, "grantwatch explain --provider reddit --status 400") ||
				!strings.Contains(ev.Fix, "Report the answer") {
				t.Errorf("event %+v %+v", ev, ev.Grant)
			}
		}
	}
	if sent != 1 {
		t.Fatalf("%d grant.unreadable over 4 probes, want 1", sent)
	}
	// No answer at all says nothing: the streak stands.
	g = Transition(g, probes.Result{Cause: probes.CauseNetwork, Action: probes.ActionRetry, Rule: "dns"}, env).Grant
	if g.Unreadable != 4 {
		t.Errorf("after a DNS failure: count %d, want 4", g.Unreadable)
	}
	// A readable answer ends it, and a new streak is announced again.
	g = Transition(g, probes.Result{Cause: probes.CauseServerError, Action: probes.ActionRetry, Status: 503, Rule: "5xx"}, env).Grant
	if g.Unreadable != 0 {
		t.Errorf("after a 503: count %d, want 0", g.Unreadable)
	}
	for i := 1; i <= store.UnreadableAfter; i++ {
		out := Transition(g, unreadable, env)
		g = out.Grant
		if i == store.UnreadableAfter && len(notices(out, notify.TypeUnreadable)) != 1 {
			t.Error("a second streak was not announced")
		}
	}
	if g = Transition(g, ok(), env).Grant; g.Unreadable != 0 {
		t.Errorf("after a success: count %d", g.Unreadable)
	}
	// An unreadable 2xx (an empty 200) is not counted; nor is a streak
	// announced while the provider is in outage (its own event speaks).
	empty := probes.Evaluate("", 200, nil, nil)
	if g = Transition(g, empty, env).Grant; g.Unreadable != 0 {
		t.Errorf("an empty 200 counted: %d", g.Unreadable)
	}
	env.ProviderOutage = true
	for range store.UnreadableAfter {
		out := Transition(g, unreadable, env)
		g = out.Grant
		if len(out.Notices) != 0 {
			t.Errorf("announced in an outage: %v", out.Notices)
		}
	}
}

// TestUnreadableReachesOnCallOnce: through the daemon and the sandbox, a
// grant whose token endpoint answers a 400 no rule reads is announced once:
// nothing after two probes, one grant.unreadable after the third, none
// again on the fourth; status lists it; the grant is not made
// reconnect_required; and the receiver gets the one notification, however
// long the answers stay unreadable.
func TestUnreadableReachesOnCallOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for a few seconds")
	}
	sb := testutil.Sandbox(t)
	in := newInbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("reddit", "reddit", sb)+in.config())
	importLines(t, cfg, []string{fmt.Sprintf(`{"id":"u1","provider":"reddit","refresh_token":%q}`, sb.Issue(sandbox.Unreadable))})

	// Not running: `grantwatch grants probe` on the database, probe by probe.
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	queued := func() []notify.Event { return queuedOf(t, d.DB(), "hook", notify.TypeUnreadable) }
	for i := 1; i <= 4; i++ {
		rep, err := d.ProbeNow(context.Background(), "u1")
		if err != nil {
			t.Fatal(err)
		}
		if rep.Result.Status != 400 || rep.Grant.Unreadable != i || rep.Grant.State == store.StateReconnectRequired {
			t.Fatalf("probe %d: status %d, count %d, state %s", i, rep.Result.Status, rep.Grant.Unreadable, rep.Grant.State)
		}
		want := 0
		if i >= store.UnreadableAfter {
			want = 1
		}
		if got := queued(); len(got) != want {
			t.Fatalf("after probe %d: %d grant.unreadable queued, want %d", i, len(got), want)
		}
	}
	ev := queued()[0]
	if ev.Grant.ID != "u1" || ev.Grant.HTTPStatus != 400 || ev.Grant.ErrorDescription != "Bad Request" || ev.Fix == "" {
		t.Errorf("event %+v %+v", ev, ev.Grant)
	}
	st, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Unreadable != 1 || len(st.UnreadableGrants) != 1 || st.UnreadableGrants[0].ID != "u1" || !st.NeedsAction {
		t.Errorf("status: unreadable %d %v, needs action %v", st.Unreadable, st.UnreadableGrants, st.NeedsAction)
	}
	d.Close()

	// Running: the receiver gets it once while the grant keeps being probed.
	startDaemon(t, cfg, &testutil.LogBuffer{}, nil)
	testutil.WaitFor(t, 10*time.Second, "grant.unreadable delivered", func() bool { return in.count()[notify.TypeUnreadable] >= 1 })
	before := sb.Stats().Requests
	testutil.WaitFor(t, 10*time.Second, "five more probes", func() bool { return sb.Stats().Requests >= before+5 })
	if n := in.count()[notify.TypeUnreadable]; n != 1 {
		t.Errorf("%d grant.unreadable delivered, want 1", n)
	}
}

// queuedOf decodes the events of type typ waiting in receiver's outbox.
func queuedOf(t *testing.T, db store.Store, receiver, typ string) []notify.Event {
	t.Helper()
	entries, err := db.PendingOutbox(receiver, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var evs []notify.Event
	for _, e := range entries {
		var ev notify.Event
		if err := json.Unmarshal(e.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type == typ {
			evs = append(evs, ev)
		}
	}
	return evs
}

// TestExpiringThroughTheDaemon: a Spotify grant (180 days from consent,
// which refreshing does not extend) probed 175 days after its import gets
// its forecast, one grant.expiring, a place in status's count, in `grants
// list --expiring 7d` and in grantwatch_grants_expiring.
func TestExpiringThroughTheDaemon(t *testing.T) {
	sb := testutil.Sandbox(t)
	const ahead = 175 * day
	sb.SetDateSkew(ahead) // the provider's clock agrees with the daemon's
	cfg := testConfig(t, t.TempDir(), sandboxProvider("spotify", "spotify", sb)+sandboxProvider("box", "box", sb)+`
[[notify]]
name = "hook"
type = "webhook"
url = "https://hooks.example.com/x"
`)
	importLines(t, cfg, []string{
		fmt.Sprintf(`{"id":"s1","provider":"spotify","refresh_token":%q}`, sb.Issue(sandbox.Healthy)),
		fmt.Sprintf(`{"id":"b1","provider":"box","refresh_token":%q}`, sb.Issue(sandbox.Healthy)),
	})
	imported := time.Now()
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return time.Now().Add(ahead) }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for range 2 {
		for _, id := range []string{"s1", "b1"} {
			if _, err := d.ProbeNow(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}
	}
	g, err := d.DB().Get("s1")
	if err != nil {
		t.Fatal(err)
	}
	if g.ExpiresBasis != store.BasisAbsolute || g.ExpiresAt.Sub(imported).Round(time.Hour) != 180*day {
		t.Errorf("forecast %v (%q), want 180 days after the import (absolute)", g.ExpiresAt, g.ExpiresBasis)
	}
	if b, _ := d.DB().Get("b1"); b.ExpiresBasis != store.BasisIdle {
		t.Errorf("box forecast %v (%q), want its idle window", b.ExpiresAt, b.ExpiresBasis)
	}
	if evs := queuedOf(t, d.DB(), "hook", notify.TypeExpiring); len(evs) != 1 || evs[0].Grant.ID != "s1" {
		t.Errorf("grant.expiring queued: %+v, want one for s1", evs)
	}
	st, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Expiring != 1 || st.WarnBeforeSeconds != (7*day).Seconds() {
		t.Errorf("status: %d expiring within %vs, want 1 within 7 days", st.Expiring, st.WarnBeforeSeconds)
	}
	var listed []string
	if err := d.ExpiringGrants(7*day, "", func(g store.Grant) error { listed = append(listed, g.ID); return nil }); err != nil || len(listed) != 1 || listed[0] != "s1" {
		t.Errorf("expiring within 7d: %v, %v", listed, err)
	}
	mfs, err := d.MetricsGatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "grantwatch_grants_expiring" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	if got["spotify"] != 1 || got["box"] != 0 || len(got) != 2 {
		t.Errorf("grantwatch_grants_expiring = %v, want spotify 1, box 0", got)
	}
}

// TestSecretExpiringSentOnce: a client secret expiring within warn_before
// raises provider.secret_expiring once, across checks and restarts, is in
// status, and one further away raises nothing yet.
func TestSecretExpiringSentOnce(t *testing.T) {
	now := forecastNow
	dir := t.TempDir()
	entry := func(name, expires string) string {
		return fmt.Sprintf("\n[[providers]]\nname = %q\npreset = \"microsoft\"\nclient_id = \"x\"\nclient_secret_expires_at = %q\n", name, expires)
	}
	cfg := testConfig(t, dir, entry("m365", now.Add(3*day).Format(time.DateOnly))+entry("later", now.Add(30*day).Format(time.DateOnly))+`
[[notify]]
name = "hook"
type = "webhook"
url = "https://hooks.example.com/x"
`)
	for run := range 2 {
		d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now.Add(time.Duration(run) * time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		d.checkSecrets()
		d.checkSecrets()
		evs := queuedOf(t, d.DB(), "hook", notify.TypeSecretExpiring)
		if len(evs) != 1 || evs[0].Provider.Name != "m365" || !strings.Contains(evs[0].Summary, "expires in 2d 12h") {
			t.Errorf("run %d: provider.secret_expiring queued %+v, want one for m365", run, evs)
		}
		st, err := d.Status()
		if err != nil {
			t.Fatal(err)
		}
		if len(st.SecretsExpiring) != 1 || st.SecretsExpiring[0].Provider != "m365" || st.SecretsExpiring[0].Expired {
			t.Errorf("status: %+v", st.SecretsExpiring)
		}
		d.Close()
	}
}

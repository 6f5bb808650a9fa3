package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// observeProvider is a provider in observe mode, for an app that refreshes
// its own tokens at the sandbox.
func observeProvider(name, preset string) string {
	return fmt.Sprintf(`
[[providers]]
name = %q
preset = %q
mode = "observe"
interval = "1s"
`, name, preset)
}

// app is the app of observe mode: it holds its own refresh tokens,
// refreshes them at the sandbox as x/oauth2 would, and reports each outcome
// to grantwatch as the contract says: a success as {"status": 200}, any
// other answer with its body and headers as received.
type app struct {
	t      *testing.T
	sb     *sandbox.Server
	c      *api.Client
	tokens map[string]string // grant id → the app's current refresh token
}

func (a *app) refresh(id string) api.Observation {
	a.t.Helper()
	resp, err := http.PostForm(a.sb.TokenURL(), url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {a.tokens[id]},
		"client_id": {"test-client"}, "client_secret": {"test-client-secret-DO-NOT-LOG"},
	})
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	obs := api.Observation{Status: resp.StatusCode, Headers: map[string]string{"Date": resp.Header.Get("Date")}}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		obs.Headers["Retry-After"] = ra
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if resp.StatusCode/100 == 2 && json.Unmarshal(body, &tok) == nil && tok.AccessToken != "" {
		if tok.RefreshToken != "" {
			a.tokens[id] = tok.RefreshToken // rotated: the app keeps the new one
		}
		return obs
	}
	b := string(body)
	obs.Body = &b
	return obs
}

// report refreshes grant id the app's way and posts the outcome.
func (a *app) report(id string) (api.ProbeReport, error) {
	return a.c.Observe(context.Background(), id, a.refresh(id))
}

// judged is one side of TestObservationsJudgedLikeProbes: a daemon (opened,
// not run, so that nothing but the test sends a request), its log, and how
// it learns of a refresh of a grant.
type judged struct {
	d    *Daemon
	logs *testutil.LogBuffer
	next func(id string) (api.ProbeReport, error)
}

// TestObservationsJudgedLikeProbes: the same answers, reported by an app in
// observe mode, give the same grants, verdicts, events, log lines and clock
// evidence as grantwatch's own probes. Two daemons with the same grants and
// providers, one probing the sandbox, one told by an app that refreshes its
// own tokens there, go through every answer the sandbox gives (the
// providers' real wording), several rounds (degraded after 3), then through
// skewed Date headers until the clock is judged skewed and an invalid_grant
// is held for it.
func TestObservationsJudgedLikeProbes(t *testing.T) {
	sb := testutil.Sandbox(t)
	sb.SetClient("test-client", "test-client-secret-DO-NOT-LOG")
	presets := map[string]string{"google": "google", "microsoft": "microsoft", "hydra": "hydra", "github": "github", "generic": ""}
	// The behaviours with an answer an app can report (Hang and Slow give
	// none), with the provider whose wording they are. The transient
	// failures (5xx) are spread over three providers, each between answers
	// about grants themselves: three in a row at one provider would be an
	// outage for the observing daemon, whose reports are its canaries,
	// while the probing one here runs no canary loop
	// (TestObserveReportsDeclareOutage).
	cases := []struct {
		b        sandbox.Behavior
		provider string
	}{
		{sandbox.Healthy, "google"}, {sandbox.Rotate, "hydra"}, {sandbox.Revoked, "google"},
		{sandbox.Expired, "microsoft"}, {sandbox.PasswordChanged, "microsoft"}, {sandbox.InteractionRequired, "microsoft"},
		{sandbox.FormError, "generic"}, {sandbox.Error200, "github"}, {sandbox.ServerError, "google"},
		{sandbox.BadGateway, "microsoft"}, {sandbox.Unavailable, "hydra"}, {sandbox.RateLimited, "generic"},
		{sandbox.Empty, "generic"}, {sandbox.ClockWindow, "google"},
	}
	var answerIDs, clockIDs []string
	for _, c := range cases {
		answerIDs = append(answerIDs, "g-"+string(c.b))
	}
	// Enough answers of each provider to fill its ring of Date samples:
	// skew is concluded when at least half the providers agree.
	for i := range 16 {
		for _, p := range []string{"google", "microsoft", "hydra", "github", "generic"} {
			clockIDs = append(clockIDs, fmt.Sprintf("clock-%s-%d", p, i))
		}
	}
	const hook = `
[[notify]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
`
	open := func(observe bool) judged {
		t.Helper()
		dir := t.TempDir()
		toml := hook
		for name, preset := range presets {
			if observe {
				toml += observeProvider(name, preset)
			} else {
				toml += sandboxProvider(name, preset, sb)
			}
		}
		cfg := testConfig(t, dir, toml)
		var lines []string
		tokens := map[string]string{}
		add := func(id, provider string, b sandbox.Behavior) {
			tokens[id] = sb.Issue(b)
			if observe {
				lines = append(lines, fmt.Sprintf(`{"id":%q,"provider":%q}`, id, provider))
			} else {
				lines = append(lines, fmt.Sprintf(`{"id":%q,"provider":%q,"refresh_token":%q}`, id, provider, tokens[id]))
			}
		}
		for _, c := range cases {
			add("g-"+string(c.b), c.provider, c.b)
		}
		for _, id := range clockIDs {
			add(id, strings.Split(id, "-")[1], sandbox.Revoked) // a verdict the clock can explain
		}
		importLines(t, cfg, lines)
		logs := &testutil.LogBuffer{}
		d, err := Open(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		c := InProcess(d, true)
		t.Cleanup(func() { c.Close() })
		j := judged{d: d, logs: logs}
		if observe {
			a := &app{t: t, sb: sb, c: c, tokens: tokens}
			j.next = a.report
		} else {
			j.next = func(id string) (api.ProbeReport, error) { return c.Probe(context.Background(), id) }
		}
		return j
	}
	probing, told := open(false), open(true)

	step := func(id string) {
		t.Helper()
		rp, errP := probing.next(id)
		ra, errA := told.next(id)
		if errP != nil || errA != nil {
			t.Fatalf("%s: probe %v, observation %v", id, errP, errA)
		}
		if got, want := verdict(ra), verdict(rp); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: observed\n  %+v\nprobed\n  %+v", id, got, want)
		}
		if got, want := clockView(told.d), clockView(probing.d); got != want {
			t.Errorf("%s: clock observed %+v, probed %+v", id, got, want)
		}
	}
	for range 4 {
		for _, id := range answerIDs {
			step(id)
		}
	}
	// The provider's clock runs 2 minutes ahead: the Date headers of the
	// answers, probed or reported, make this host's clock skewed, and then
	// an invalid_grant is the clock's, not the user's.
	sb.SetDateSkew(2 * time.Minute)
	for _, id := range clockIDs {
		step(id)
	}
	if st := clockView(told.d); st.State != string(ClockSkewed) {
		t.Errorf("clock after skewed Date headers: %+v, want skewed", st)
	}
	for _, id := range clockIDs[len(clockIDs)-5:] {
		if g, _ := told.d.DB().Get(id); g.State != store.StateOnHold || g.Cause != "clock_skew" {
			t.Errorf("%s with a skewed clock: %s/%s, want on_hold/clock_skew", id, g.State, g.Cause)
		}
	}

	events := outbox(t, probing.d)
	sameLines(t, "event", outbox(t, told.d), events)
	if len(events) < 10 {
		t.Errorf("only %d events: the answers did not exercise the transitions", len(events))
	}
	sameLines(t, "log line", loudLines(t, told.logs), loudLines(t, probing.logs))
	for _, tok := range []string{"test-client-secret-DO-NOT-LOG", "at_", "rt_"} {
		if strings.Contains(told.logs.String(), tok) {
			t.Errorf("the observing daemon's log holds %q", tok)
		}
	}
}

// sameLines reports the first difference between what observations gave
// and what probes gave.
func sameLines(t *testing.T, what string, observed, probed []string) {
	t.Helper()
	for i := range max(len(observed), len(probed)) {
		var o, p string
		if i < len(observed) {
			o = observed[i]
		}
		if i < len(probed) {
			p = probed[i]
		}
		if o != p {
			t.Errorf("%s %d of %d/%d differs:\nobserved %s\nprobed   %s", what, i, len(observed), len(probed), o, p)
			return
		}
	}
}

// offsets are clock offsets in summaries: the Date header is read a few
// milliseconds apart by a probe and by an app's report.
var offsets = regexp.MustCompile(`-?\d+\.\d+s`)

// verdict is what a probe or a report did to a grant, without the times
// and due dates (an observed grant is never due).
func verdict(r api.ProbeReport) [2]any {
	g := r.Grant
	g.LastProbeAt, g.LastSuccessAt, g.StateChangedAt, g.NextDueAt, g.CreatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	g.TokenGen, g.Rotated = 0, false // the app's tokens are its own
	// Each daemon imported its grants at its own instant: the forecast is
	// compared by basis and by whether it is set, not by its time.
	if !g.ExpiresAt.IsZero() {
		g.ExpiresAt = time.Unix(1, 0)
	}
	g.ConsentAt = time.Time{}
	res := r.Result
	res.LatencyMS, res.Rotated = 0, false
	return [2]any{g, res}
}

type clockState struct {
	State, Source string
	Samples       int
	OffsetSeconds int
}

func clockView(d *Daemon) clockState {
	s := d.clock.Snapshot()
	return clockState{string(s.State), s.Source, s.DateSamples, int(s.DateOffset.Round(10 * time.Second).Seconds())}
}

// outbox lists the events a daemon queued, in order, without their ids and
// times.
func outbox(t *testing.T, d *Daemon) []string {
	t.Helper()
	es, err := d.DB().PendingOutbox("hook", 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		var ev notify.Event
		if err := json.Unmarshal(e.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		ev.ID, ev.OccurredAt = "", time.Time{}
		if ev.Clock != nil {
			ev.Clock.OffsetSeconds = (time.Duration(ev.Clock.OffsetSeconds * float64(time.Second))).Round(10 * time.Second).Seconds()
			ev.Summary = offsets.ReplaceAllString(ev.Summary, "Ns")
		}
		b, _ := json.Marshal(ev)
		out = append(out, string(b))
	}
	return out
}

// loudLines lists a daemon's log records above DEBUG by level, message and
// what they are about.
func loudLines(t *testing.T, logs *testutil.LogBuffer) []string {
	t.Helper()
	var out []string
	for _, m := range logs.Lines(t) {
		if m["level"] == "DEBUG" {
			continue
		}
		out = append(out, fmt.Sprint(m["level"], " ", m["msg"], " grant=", m["grant"], " provider=", m["provider"],
			" state=", m["state"], " cause=", m["cause"], " error=", m["error"]))
	}
	return out
}

// TestObserveModeNeverRefreshes: a provider switched to observe mode by a
// reload is never sent another request, its grants leave the schedule, and
// probing or setting a token is refused; switched back, its grants are
// probed again.
func TestObserveModeNeverRefreshes(t *testing.T) {
	sb := testutil.Sandbox(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, sandboxProvider("acme", "google", sb))
	importGrants(t, cfg, sb, "acme", 3, sandbox.Healthy)
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, nil)
	healthy := func() bool {
		for _, g := range grantsByID(t, td.d.DB()) {
			if g.State != store.StateHealthy {
				return false
			}
		}
		return true
	}
	testutil.WaitFor(t, 10*time.Second, "the grants probed", healthy)

	setMode := func(mode string) {
		t.Helper()
		b, err := os.ReadFile(cfg.Path())
		if err != nil {
			t.Fatal(err)
		}
		text := regexp.MustCompile(`\nmode = "[a-z]+"`).ReplaceAllString(string(b), "")
		text = strings.Replace(text, `interval = "1s"`, `interval = "1s"`+"\nmode = \""+mode+"\"", 1)
		if err := os.WriteFile(cfg.Path(), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := td.d.reload(); err != nil {
			t.Fatal(err)
		}
	}
	setMode(config.ModeObserve)
	// Probes that were running when the config changed finish first.
	testutil.WaitFor(t, 5*time.Second, "probes in flight to end", func() bool {
		n := 0
		td.d.inflight.Range(func(any, any) bool { n++; return true })
		return n == 0
	})
	before := sb.Stats().Requests
	testutil.WaitFor(t, 10*time.Second, "the grants to leave the schedule", func() bool {
		for _, g := range grantsByID(t, td.d.DB()) {
			if !g.NextDueAt.IsZero() {
				return false
			}
		}
		return true
	})
	// Two more due scans, with every grant's interval passed.
	tick := td.d.lastTick.Load()
	testutil.WaitFor(t, 10*time.Second, "two more ticks", func() bool {
		return td.d.lastTick.Load() > tick+int64(time.Second)
	})
	if n := sb.Stats().Requests - before; n != 0 {
		t.Errorf("%d requests to a provider in observe mode", n)
	}
	if _, err := td.d.ProbeNow(t.Context(), "acme-0"); err == nil || !strings.Contains(err.Error(), "observe mode") {
		t.Errorf("grants probe in observe mode: %v, want a refusal naming observe mode", err)
	}
	if _, err := td.d.SetToken(t.Context(), "acme-0", secret.Secret(sb.Issue(sandbox.Healthy))); err == nil || !strings.Contains(err.Error(), "observe mode") {
		t.Errorf("set-token in observe mode: %v, want a refusal naming observe mode", err)
	}
	var te *api.TokenError
	if _, err := td.d.Token(t.Context(), api.TokenRequest{ID: "acme-0", Force: true}); !errors.As(err, &te) || te.Code != api.CodeObserveMode || te.Status() != http.StatusConflict {
		t.Errorf("a broker token request in observe mode: %v, want a 409 %s", err, api.CodeObserveMode)
	}
	if n := sb.Stats().Requests - before; n != 0 {
		t.Errorf("%d requests to a provider in observe mode after probe, set-token and token", n)
	}

	setMode(config.ModeRefresh)
	testutil.WaitFor(t, 10*time.Second, "the grants probed again", func() bool {
		return sb.Stats().Requests >= before+3
	})
}

// TestStale: stale is a grant of a provider in observe mode with no report
// for longer than the interval (since its import, if it never had one); a
// reconnect_required grant is never stale (its state is the news), nor a
// grant grantwatch probes itself.
func TestStale(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		g    store.Grant
		pol  Policy
		want bool
	}{
		{"reported within the interval", store.Grant{State: store.StateHealthy, LastProbeAt: now.Add(-23 * time.Hour)}, observePolicy, false},
		{"no report for longer", store.Grant{State: store.StateHealthy, LastProbeAt: now.Add(-25 * time.Hour)}, observePolicy, true},
		{"degraded and silent", store.Grant{State: store.StateDegraded, LastProbeAt: now.Add(-25 * time.Hour)}, observePolicy, true},
		{"never reported since import", store.Grant{State: store.StatePending, CreatedAt: now.Add(-25 * time.Hour)}, observePolicy, true},
		{"imported just now", store.Grant{State: store.StatePending, CreatedAt: now.Add(-time.Minute)}, observePolicy, false},
		{"dead", store.Grant{State: store.StateReconnectRequired, LastProbeAt: now.Add(-25 * time.Hour)}, observePolicy, false},
		{"probed by grantwatch", store.Grant{State: store.StateHealthy, LastProbeAt: now.Add(-25 * time.Hour)}, testPolicy, false},
	} {
		if got := stale(tc.g, tc.pol, now); got != tc.want {
			t.Errorf("%s: stale = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestObserveStale: a stale grant shows as such in grants list, grants show
// and status (which then needs action), whatever its state says; a report
// makes it fresh.
func TestObserveStale(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), strings.Replace(observeProvider("app", "google"), `"1s"`, `"1h"`, 1)+sandboxProvider("probed", "google", sb))
	importLines(t, cfg, []string{
		`{"id":"fresh","provider":"app"}`, `{"id":"silent","provider":"app"}`,
		fmt.Sprintf(`{"id":"probed","provider":"probed","refresh_token":%q}`, sb.Issue(sandbox.Healthy)),
	})
	var off atomic.Int64
	base := time.Now()
	now := func() time.Time { return base.Add(time.Duration(off.Load())) }
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	c := InProcess(d, true)
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()

	off.Store(int64(90 * time.Minute))
	if _, err := c.Observe(ctx, "fresh", api.Observation{Status: 200}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Probe(ctx, "probed"); err != nil {
		t.Fatal(err)
	}
	off.Store(int64(2 * time.Hour))
	stale := map[string]bool{}
	if err := c.List(ctx, "", "", func(g store.Grant) error { stale[g.ID] = g.Stale; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"fresh": false, "silent": true, "probed": false}; !reflect.DeepEqual(stale, want) {
		t.Errorf("grants list stale = %v, want %v", stale, want)
	}
	if g, err := c.Show(ctx, "silent"); err != nil || !g.Stale || g.State != store.StatePending {
		t.Errorf("grants show silent: stale %v state %s, %v; want stale pending", g.Stale, g.State, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Stale != 1 || len(st.StaleGrants) != 1 || st.StaleGrants[0].ID != "silent" || !st.NeedsAction {
		t.Errorf("status: stale %d %v, needs action %v, %v; want silent, needs action", st.Stale, st.StaleGrants, st.NeedsAction, err)
	}
	if rep, err := c.Observe(ctx, "silent", api.Observation{Status: 200}); err != nil || rep.Grant.State != store.StateHealthy {
		t.Fatalf("report of silent: %+v, %v", rep.Grant, err)
	}
	if g, _ := c.Show(ctx, "silent"); g.Stale {
		t.Error("a grant just reported is stale")
	}
	if st, _ := c.Status(ctx); st.Stale != 0 || st.NeedsAction {
		t.Errorf("status after the report: stale %d, needs action %v", st.Stale, st.NeedsAction)
	}
}

// TestObservationRefusals: a report is judged only for a grant of a
// provider in observe mode, with a real HTTP status; a grant grantwatch
// refreshes itself has one holder, and a report about it is refused.
func TestObservationRefusals(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), observeProvider("app", "google")+sandboxProvider("probed", "google", sb))
	importLines(t, cfg, []string{`{"id":"a","provider":"app"}`,
		fmt.Sprintf(`{"id":"p","provider":"probed","refresh_token":%q}`, sb.Issue(sandbox.Healthy))})
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	c := InProcess(d, true)
	t.Cleanup(func() { c.Close() })
	for _, tc := range []struct {
		id   string
		obs  api.Observation
		want string
	}{
		{"p", api.Observation{Status: 200}, `mode = "refresh"`},
		{"a", api.Observation{Status: 0}, "status: want the HTTP status"},
		{"a", api.Observation{Status: 1200}, "status: want the HTTP status"},
		{"nope", api.Observation{Status: 200}, "not found"},
	} {
		if _, err := c.Observe(context.Background(), tc.id, tc.obs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Observe(%s, %+v) = %v, want an error with %q", tc.id, tc.obs, err, tc.want)
		}
	}
	if g, _ := d.DB().Get("p"); g.State != store.StatePending || sb.Stats().Requests != 0 {
		t.Errorf("a refused report changed %s to %s, or sent %d requests", g.ID, g.State, sb.Stats().Requests)
	}
}

// TestObserveModeSendsNoCanary: apps' reports of a failing provider in
// observe mode make it suspect, as probes would; where grantwatch would then
// judge the provider with canary probes of its own, it sends nothing, even
// for grants imported with a token.
func TestObserveModeSendsNoCanary(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), observeProvider("app", "google")+"token_url = \""+sb.TokenURL()+"\"\n[health]\ncanary_period = \"50ms\"\n")
	var lines []string
	for i := range 5 {
		lines = append(lines, fmt.Sprintf(`{"id":"g%d","provider":"app","refresh_token":%q}`, i, sb.Issue(sandbox.Healthy)))
	}
	importLines(t, cfg, lines)
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, nil)
	c := InProcess(td.d, false)
	defer c.Close()
	unavailable := "<html><body><h1>503 Service Unavailable</h1></body></html>"
	for i := range 5 {
		if _, err := c.Observe(t.Context(), fmt.Sprintf("g%d", i), api.Observation{Status: 503, Body: &unavailable}); err != nil {
			t.Fatal(err)
		}
	}
	p := td.d.provider("app")
	if _, ok := p.health.canaryDue(time.Now().Add(time.Hour)); !ok {
		t.Fatal("the reports did not make the provider suspect: the test proves nothing")
	}
	p.health.skipCanary(time.Now().Add(-time.Hour), p.policy) // give the canary back, due at once
	tick := td.d.lastTick.Load()
	testutil.WaitFor(t, 10*time.Second, "two ticks with canaries due", func() bool {
		return td.d.lastTick.Load() > tick+int64(time.Second)
	})
	if n := sb.Stats().Requests; n != 0 {
		t.Errorf("%d requests (canaries) to a provider in observe mode", n)
	}
}

// TestObserveReportsDeclareOutage: in observe mode the apps' reports are
// the provider's canaries. Transient failures reported for healthy grants
// make one provider.outage, not a degraded grant each; the first report of
// an answer about a grant ends it with one provider.ok.
func TestObserveReportsDeclareOutage(t *testing.T) {
	const hook = `
[[notify]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
`
	cfg := testConfig(t, t.TempDir(), hook+observeProvider("app", "google"))
	var lines []string
	for i := range 5 {
		lines = append(lines, fmt.Sprintf(`{"id":"g%d","provider":"app"}`, i))
	}
	importLines(t, cfg, lines)
	logs := &testutil.LogBuffer{}
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := InProcess(d, true)
	defer c.Close()
	report := func(id string, obs api.Observation) api.ProbeReport {
		t.Helper()
		r, err := c.Observe(t.Context(), id, obs)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := range 5 {
		report(fmt.Sprintf("g%d", i), api.Observation{Status: 200})
	}
	unavailable := "<html><body><h1>503 Service Unavailable</h1></body></html>"
	for round := range 3 {
		for i := range 5 {
			if r := report(fmt.Sprintf("g%d", i), api.Observation{Status: 503, Body: &unavailable}); r.Grant.State == store.StateDegraded {
				t.Errorf("round %d: g%d degraded: the provider's outage was taken for the grant's", round, i)
			}
		}
	}
	state, cause, detail, _ := d.provider("app").health.snapshot()
	if state != ProviderOutage || cause != "server_error" || !strings.Contains(detail, "reported refreshes") {
		t.Errorf("provider after 15 reported 503s: %s (%s: %q), want outage (server_error), judged by the reports", state, cause, detail)
	}
	report("g0", api.Observation{Status: 200})
	if state, _, _, _ := d.provider("app").health.snapshot(); state != ProviderOK {
		t.Errorf("provider after a reported success: %s, want ok", state)
	}

	var types []string
	for _, e := range outbox(t, d) {
		var ev notify.Event
		if err := json.Unmarshal([]byte(e), &ev); err != nil {
			t.Fatal(err)
		}
		types = append(types, ev.Type)
	}
	if want := []string{"provider.outage", "provider.ok"}; !reflect.DeepEqual(types, want) {
		t.Errorf("events %q, want %q: one outage and its end, no grant's own", types, want)
	}
	if n := strings.Count(logs.String(), "provider outage"); n != 1 {
		t.Errorf("%d log lines of the outage, want 1", n)
	}
}

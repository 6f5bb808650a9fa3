package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// inbox is a webhook receiver that records every event it is sent.
type inbox struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []notify.Event
	ids    map[string]int
}

func newInbox(t *testing.T) *inbox {
	in := &inbox{ids: map[string]int{}}
	in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n notify.Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		in.ids[n.ID]++
		in.events = append(in.events, n.Events...)
	}))
	t.Cleanup(in.srv.Close)
	return in
}

func (in *inbox) config() string {
	return fmt.Sprintf(`
[[notify]]
name = "hook"
type = "webhook"
url = %q
group_wait = "0s"
`, in.srv.URL)
}

// count returns how many events of each type arrived.
func (in *inbox) count() map[string]int {
	in.mu.Lock()
	defer in.mu.Unlock()
	m := map[string]int{}
	for _, e := range in.events {
		m[e.Type]++
	}
	return m
}

// importGrants imports n grants of one provider with tokens of behaviour b.
func importGrants(t *testing.T, cfg *config.Config, sb *sandbox.Server, provider string, n int, b sandbox.Behavior) {
	t.Helper()
	var lines []string
	for i := range n {
		lines = append(lines, fmt.Sprintf(`{"id":"%s-%d","provider":%q,"refresh_token":%q}`, provider, i, provider, sb.Issue(b)))
	}
	importLines(t, cfg, lines)
}

func countStates(t *testing.T, db store.Store) map[store.State]int {
	t.Helper()
	counts, err := db.Counts()
	if err != nil {
		t.Fatal(err)
	}
	m := map[store.State]int{}
	for _, pm := range counts {
		for s, n := range pm {
			m[s] += n
		}
	}
	return m
}

// TestProviderOutageIsOneIncident: the sandbox answers 503 to everything for
// a while over 200 grants. On-call hears one provider.outage and one
// provider.ok, not 200 grant notifications, and no grant is left degraded.
func TestProviderOutageIsOneIncident(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for several seconds")
	}
	sb := testutil.Sandbox(t)
	in := newInbox(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, sandboxProvider("acme", "", sb)+in.config())
	importGrants(t, cfg, sb, "acme", 200, sandbox.Healthy)
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, nil)

	testutil.WaitFor(t, 20*time.Second, "200 healthy grants", func() bool {
		return countStates(t, td.d.DB())[store.StateHealthy] == 200
	})
	sb.SetAll(sandbox.Unavailable)
	testutil.WaitFor(t, 20*time.Second, "provider.outage", func() bool { return in.count()[notify.TypeProviderOutage] == 1 })
	time.Sleep(2 * time.Second) // the outage lasts: grants keep coming due
	sb.SetAll("")
	testutil.WaitFor(t, 30*time.Second, "provider.ok and every grant probed ok again", func() bool {
		if in.count()[notify.TypeProviderOK] != 1 {
			return false
		}
		n := 0
		err := td.d.DB().Each(func(g store.Grant) error {
			if g.State == store.StateHealthy && g.Failures == 0 {
				n++
			}
			return nil
		})
		return err == nil && n == 200
	})
	td.stop()
	got := in.count()
	want := map[string]int{notify.TypeProviderOutage: 1, notify.TypeProviderOK: 1}
	for typ, n := range got {
		if n != want[typ] {
			t.Errorf("%d %s events, want %d (all: %v)", n, typ, want[typ], got)
		}
	}
	db, err := OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := countStates(t, db)[store.StateDegraded]; n != 0 {
		t.Errorf("%d grants left degraded after the outage", n)
	}
}

// TestWrongClientSecretIsOneIncident: a wrong client secret over 200 grants
// gives one provider.misconfigured and no reconnect_required; after the
// config is fixed and reloaded, every grant is healthy.
func TestWrongClientSecretIsOneIncident(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for several seconds")
	}
	sb := testutil.Sandbox(t)
	sb.SetClient("test-client", "the-right-secret")
	in := newInbox(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, sandboxProvider("acme", "", sb)+in.config())
	// A loaded test machine must neither time probes out (a transient
	// failure, which can make an outage and its WARN) nor cut probes off at
	// shutdown (a WARN): the log must hold the provider's line alone.
	cfg = editConfig(t, cfg, `probe_timeout = "500ms"`, `probe_timeout = "5s"`,
		`shutdown_timeout = "2s"`, `shutdown_timeout = "30s"`)
	importGrants(t, cfg, sb, "acme", 200, sandbox.Healthy)
	reload := make(chan struct{}, 1)
	logs := &testutil.LogBuffer{}
	td := startDaemon(t, cfg, logs, func(o *Options) { o.Reload = reload })

	// The notification is delivered after the commit that holds the
	// grants, so wait for both.
	testutil.WaitFor(t, time.Minute, "provider.misconfigured and every grant on hold for invalid_client", func() bool {
		return in.count()[notify.TypeProviderMisconfigured] > 0 && countStates(t, td.d.DB())[store.StateOnHold] == 200
	})
	if got := in.count(); got[notify.TypeProviderMisconfigured] != 1 || got[notify.TypeReconnectRequired] != 0 {
		t.Fatalf("events %v, want one provider.misconfigured and no grant.reconnect_required", got)
	}
	st, err := td.d.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Providers) != 1 || st.Providers[0].State != ProviderMisconfigured || !st.NeedsAction {
		t.Errorf("status providers %+v needs_action %v", st.Providers, st.NeedsAction)
	}

	// Fix the secret in the config file and reload (SIGHUP).
	b, err := os.ReadFile(cfg.Path())
	if err != nil {
		t.Fatal(err)
	}
	fixed := strings.Replace(string(b), "test-client-secret-DO-NOT-LOG", "the-right-secret", 1)
	if err := os.WriteFile(cfg.Path(), []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	testutil.WaitFor(t, time.Minute, "every grant healthy after the reload", func() bool {
		return countStates(t, td.d.DB())[store.StateHealthy] == 200
	})
	testutil.WaitFor(t, time.Minute, "provider.ok", func() bool { return in.count()[notify.TypeProviderOK] > 0 })
	td.stop()
	got := in.count()
	if got[notify.TypeProviderMisconfigured] != 1 || got[notify.TypeReconnectRequired] != 0 || got[notify.TypeProviderOK] != 1 {
		t.Errorf("events %v, want one provider.misconfigured, one provider.ok, no grant.reconnect_required", got)
	}
	// One ERROR line for the provider, none per grant.
	loud := 0
	for _, m := range logs.Lines(t) {
		if m["level"] == "ERROR" || m["level"] == "WARN" {
			loud++
			t.Log(m)
		}
	}
	if loud != 1 {
		t.Errorf("%d WARN/ERROR lines, want 1 (the provider's)", loud)
	}
}

// TestBadReloadKeepsOldConfig: a broken config file on SIGHUP keeps the old
// config running and logs one error naming the problem.
func TestBadReloadKeepsOldConfig(t *testing.T) {
	sb := testutil.Sandbox(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, sandboxProvider("acme", "", sb))
	reload := make(chan struct{}, 1)
	logs := &testutil.LogBuffer{}
	td := startDaemon(t, cfg, logs, func(o *Options) { o.Reload = reload })
	if err := os.WriteFile(cfg.Path(), []byte("[daemon]\nworkers = \"many\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	testutil.WaitFor(t, 5*time.Second, "the reload error", func() bool {
		return strings.Contains(logs.String(), "config reload failed")
	})
	if td.d.Config() != cfg {
		t.Error("a bad config replaced the running one")
	}
	if !strings.Contains(logs.String(), "workers") {
		t.Errorf("the reload error does not name the problem: %s", logs.String())
	}
}

// TestReloadNamesRestartOnlyChanges: a reload applies provider changes and
// says which changed settings need a restart.
func TestReloadNamesRestartOnlyChanges(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb))
	reload := make(chan struct{}, 1)
	logs := &testutil.LogBuffer{}
	td := startDaemon(t, cfg, logs, func(o *Options) { o.Reload = reload })
	b, _ := os.ReadFile(cfg.Path())
	changed := strings.Replace(string(b), `level = "debug"`, `level = "info"`, 1)
	changed = strings.Replace(changed, `interval = "1s"`, `interval = "2s"`, 1)
	os.WriteFile(cfg.Path(), []byte(changed), 0o600)
	reload <- struct{}{}
	testutil.WaitFor(t, 5*time.Second, "the reload", func() bool { return strings.Contains(logs.String(), "config reloaded") })
	if !strings.Contains(logs.String(), `"keys":"log"`) {
		t.Errorf("the reload did not say that [log] needs a restart: %s", logs.String())
	}
	if p, _ := td.d.Config().Provider("acme"); p.Interval != 2*time.Second {
		t.Errorf("provider interval after reload: %s, want 2s", p.Interval)
	}
}

// TestReconnectSendsRecovered: a dead grant gets a new token (the user
// reconnected); its first good probe sends grant.recovered, once, naming the
// problem it resolves.
func TestReconnectSendsRecovered(t *testing.T) {
	sb := testutil.Sandbox(t)
	in := newInbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "google", sb)+in.config())
	importGrants(t, cfg, sb, "acme", 1, sandbox.Revoked)
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, nil)
	testutil.WaitFor(t, 10*time.Second, "grant.reconnect_required", func() bool { return in.count()[notify.TypeReconnectRequired] == 1 })
	rep, err := td.d.SetToken(t.Context(), "acme-0", secret.Secret(sb.Issue(sandbox.Healthy)))
	if err != nil || !rep.Result.OK {
		t.Fatalf("set-token: %v %+v", err, rep)
	}
	testutil.WaitFor(t, 10*time.Second, "grant.recovered", func() bool { return in.count()[notify.TypeRecovered] == 1 })
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, e := range in.events {
		if e.Type == notify.TypeRecovered && (e.PreviousState != "reconnect_required" || e.PreviousCause != "invalid_grant") {
			t.Errorf("recovered event names the problem %s/%s", e.PreviousState, e.PreviousCause)
		}
	}
}

// TestShutdownIsBounded: with probes hanging on a provider that never
// answers, SIGTERM still ends Run within shutdown_timeout, and every grant
// is intact afterwards (still due, to be probed after a restart).
func TestShutdownIsBounded(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb))
	cfg.Daemon.ProbeTimeout = time.Minute
	cfg.Daemon.ShutdownTimeout = 500 * time.Millisecond
	importGrants(t, cfg, sb, "acme", 20, sandbox.Hang)
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, nil)
	testutil.WaitFor(t, 10*time.Second, "probes hanging", func() bool { return sb.Stats().Concurrent >= 16 })
	start := time.Now()
	td.stop()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %s with shutdown_timeout 500ms", d)
	}
	db, err := OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := countStates(t, db)[store.StatePending]; n != 20 {
		t.Errorf("%d of 20 grants still pending after an interrupted first probe", n)
	}
	// A probe cut off by the shutdown is not a failure of the grant.
	for id, g := range grantsByID(t, db) {
		if g.Failures != 0 {
			t.Errorf("%s: %d failures recorded for a probe our shutdown cut off", id, g.Failures)
		}
	}
}

// TestVerdictOnReplacedTokenIsDropped: a probe of the old token answers
// invalid_grant after a new token was stored (set-token raced it): the
// verdict is dropped, the grant stays pending with the new token, due now.
func TestVerdictOnReplacedTokenIsDropped(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb))
	importGrants(t, cfg, sb, "acme", 1, sandbox.Healthy)
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	leased, err := d.DB().GetLease("acme-0") // the probe of the old token begins
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB().SetToken("acme-0", secret.Secret(sb.Issue(sandbox.Healthy)), time.Now()); err != nil {
		t.Fatal(err)
	}
	revoked := probes.Result{Cause: probes.CauseRevoked, Action: probes.ActionReconnect, Error: "invalid_grant"}
	out, stale, err := d.apply(leased.Grant, d.provider("acme"), revoked)
	if err != nil || !stale || out.Event != nil {
		t.Fatalf("apply: stale=%v err=%v event=%v, want a dropped verdict", stale, err, out.Event)
	}
	g, err := d.DB().Get("acme-0")
	if err != nil {
		t.Fatal(err)
	}
	if g.State != store.StatePending || g.NextDueAt.IsZero() || g.NextDueAt.After(time.Now()) {
		t.Errorf("after a dropped verdict: %s, due %v; want pending and due now", g.State, g.NextDueAt)
	}
}

package daemon

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// reloadWith rewrites the config file with one substitution and asks the
// daemon to reload (SIGHUP), waiting for it to be done.
func (td *testDaemon) reloadWith(reload chan<- struct{}, from, to string) {
	td.t.Helper()
	b, err := os.ReadFile(td.cfg.Path())
	if err != nil {
		td.t.Fatal(err)
	}
	if !strings.Contains(string(b), from) {
		td.t.Fatalf("config has no %q", from)
	}
	if err := os.WriteFile(td.cfg.Path(), []byte(strings.Replace(string(b), from, to, 1)), 0o600); err != nil {
		td.t.Fatal(err)
	}
	n := strings.Count(td.logs.String(), `"msg":"config reload`)
	reload <- struct{}{}
	testutil.WaitFor(td.t, 5*time.Second, "the reload", func() bool {
		return strings.Count(td.logs.String(), `"msg":"config reload`) > n
	})
}

// TestReloadAfterFixingSecret follows issue 12's steps: a wrong client
// secret is put in the file and reloaded, the provider is announced
// misconfigured; the secret is restored and reloaded. On-call must then get
// exactly one provider.ok and no provider.misconfigured after it, every held
// grant must be healthy again, and a later real breakage must be announced
// again. Before the fix the reload
// released the held grants before it swapped the new provider in: probes
// with the old secret re-marked the provider misconfigured ("provider.ok
// then, 2 ms later, provider.misconfigured") and the stored announced state
// swallowed the next breakage. That is a race: with grants whose holds
// keep coming due (backoff_max 300ms) it failed one run in three to five
// before the fix; TestReloadThatDoesNotFixAnnouncesNothing and
// TestDeferAfterReloadRequeues fail every time.
func TestReloadAfterFixingSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for several seconds")
	}
	const n = 500
	sb := testutil.Sandbox(t)
	sb.SetClient("test-client", "test-client-secret-DO-NOT-LOG")
	in := newInbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb)+in.config()+`
[health]
canary_period = "200ms"
`)
	// A loaded test machine must not time probes out: that is an outage.
	cfg = editConfig(t, cfg, `probe_timeout = "500ms"`, `probe_timeout = "5s"`)
	importGrants(t, cfg, sb, "acme", n, sandbox.Healthy)
	reload := make(chan struct{}, 1)
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, func(o *Options) { o.Reload = reload })
	states := func() map[store.State]int { return countStates(t, td.d.DB()) }
	testutil.WaitFor(t, 10*time.Second, "every grant healthy", func() bool { return states()[store.StateHealthy] == n })

	td.reloadWith(reload, "test-client-secret-DO-NOT-LOG", "a-wrong-secret")
	testutil.WaitFor(t, 10*time.Second, "provider.misconfigured and every grant on hold", func() bool {
		return in.count()[notify.TypeProviderMisconfigured] == 1 && states()[store.StateOnHold] == n
	})

	td.reloadWith(reload, "a-wrong-secret", "test-client-secret-DO-NOT-LOG")
	testutil.WaitFor(t, 10*time.Second, "provider.ok and every grant healthy", func() bool {
		return in.count()[notify.TypeProviderOK] == 1 && states()[store.StateHealthy] == n
	})
	time.Sleep(time.Second) // time for a wrong announcement to arrive
	if got := in.count(); got[notify.TypeProviderMisconfigured] != 1 || got[notify.TypeProviderOK] != 1 {
		t.Fatalf("after the fixing reload: events %v, want the one provider.misconfigured and one provider.ok", got)
	}
	if st, _, _, _ := td.d.provider("acme").health.snapshot(); st != ProviderOK {
		t.Fatalf("provider %s after the fixing reload", st)
	}

	// The provider's admin rotates the secret: a real breakage.
	sb.SetClient("test-client", "rotated-by-the-admin")
	testutil.WaitFor(t, 10*time.Second, "the second provider.misconfigured", func() bool {
		return in.count()[notify.TypeProviderMisconfigured] == 2
	})
}

// TestReloadThatDoesNotFixAnnouncesNothing: a reload that replaces one wrong
// secret with another neither closes the incident (provider.ok) nor opens
// it again; the canary of the new config finds it still misconfigured.
// Before the fix a reload announced provider.ok for any change of the
// provider, before anything had probed the new config.
func TestReloadThatDoesNotFixAnnouncesNothing(t *testing.T) {
	sb := testutil.Sandbox(t)
	sb.SetClient("test-client", "the-right-secret")
	in := newInbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb)+in.config()+`
[health]
canary_period = "200ms"
`)
	importGrants(t, cfg, sb, "acme", 5, sandbox.Healthy)
	reload := make(chan struct{}, 1)
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, func(o *Options) { o.Reload = reload })
	testutil.WaitFor(t, 10*time.Second, "provider.misconfigured", func() bool {
		return in.count()[notify.TypeProviderMisconfigured] == 1
	})
	td.reloadWith(reload, "test-client-secret-DO-NOT-LOG", "another-wrong-secret")
	canaries := sb.Stats().Requests
	testutil.WaitFor(t, 5*time.Second, "the new config's canary", func() bool { return sb.Stats().Requests > canaries })
	time.Sleep(500 * time.Millisecond)
	if got := in.count(); got[notify.TypeProviderOK] != 0 || got[notify.TypeProviderMisconfigured] != 1 {
		t.Errorf("events %v after a reload that fixed nothing, want only the first provider.misconfigured", got)
	}
	if st, cause, _, _ := td.d.provider("acme").health.snapshot(); st != ProviderMisconfigured || cause != "invalid_client" {
		t.Errorf("provider %s (%s) after a reload that fixed nothing, want misconfigured (invalid_client)", st, cause)
	}
}

// TestReloadReleasesHeldGrantsAtOnce: once the canary of the fixed config
// answers, the held grants are probed again at once, not when their hold
// (backoff_max, here a minute) runs out.
func TestReloadReleasesHeldGrantsAtOnce(t *testing.T) {
	sb := testutil.Sandbox(t)
	sb.SetClient("test-client", "the-right-secret")
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb)+`
[health]
canary_period = "200ms"
`)
	cfg = editConfig(t, cfg, `backoff_max = "300ms"`, `backoff_max = "1m"`)
	importGrants(t, cfg, sb, "acme", 5, sandbox.Healthy)
	reload := make(chan struct{}, 1)
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, func(o *Options) { o.Reload = reload })
	testutil.WaitFor(t, 10*time.Second, "every grant on hold", func() bool { return countStates(t, td.d.DB())[store.StateOnHold] == 5 })
	td.reloadWith(reload, "test-client-secret-DO-NOT-LOG", "the-right-secret")
	testutil.WaitFor(t, 3*time.Second, "every grant healthy, long before its hold runs out", func() bool {
		return countStates(t, td.d.DB())[store.StateHealthy] == 5
	})
}

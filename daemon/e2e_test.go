package daemon

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// TestDaemonEndToEnd runs the daemon in-process against the sandbox with 50
// grants of mixed behaviours for several probe rounds, then checks every
// grant's final state and cause, the persistence of rotated tokens, that no
// outage-like answer produced reconnect_required, and that each failing
// grant logged exactly one WARN-or-above line.
func TestDaemonEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for several seconds")
	}
	sb := testutil.Sandbox(t)
	sb.SetClient("test-client", "test-client-secret-DO-NOT-LOG")

	type kind struct {
		b         sandbox.Behavior
		n         int
		provider  string
		wantState store.State
		wantCause string // "" = any retry cause
	}
	kinds := []kind{
		{sandbox.Healthy, 10, "google", store.StateHealthy, ""},
		{sandbox.Rotate, 6, "hydra", store.StateHealthy, ""},
		{sandbox.Revoked, 4, "google", store.StateReconnectRequired, "invalid_grant"},
		{sandbox.Expired, 3, "microsoft", store.StateReconnectRequired, "expired"},
		{sandbox.PasswordChanged, 3, "microsoft", store.StateReconnectRequired, "password_changed"},
		{sandbox.InteractionRequired, 3, "microsoft", store.StateReconnectRequired, "interaction_required"},
		{sandbox.FormError, 3, "generic", store.StateReconnectRequired, "invalid_grant"},
		{sandbox.Error200, 3, "github", store.StateReconnectRequired, "invalid_grant"},
		{sandbox.ServerError, 3, "google", store.StateDegraded, "server_error"},
		{sandbox.BadGateway, 3, "google", store.StateDegraded, ""},
		{sandbox.Unavailable, 3, "google", store.StateDegraded, ""},
		{sandbox.RateLimited, 2, "google", store.StateDegraded, "rate_limited"},
		{sandbox.Hang, 2, "google", store.StateDegraded, "server_error"},
		{sandbox.Empty, 2, "generic", store.StateDegraded, "malformed"},
	}
	dir := t.TempDir()
	providers := ""
	for _, p := range [][2]string{{"google", "google"}, {"microsoft", "microsoft"}, {"hydra", "hydra"}, {"github", "github"}, {"generic", ""}} {
		providers += sandboxProvider(p[0], p[1], sb)
	}
	cfg := testConfig(t, dir, providers)

	// Import through the same parser as `grants import`.
	var lines []string
	want := map[string]kind{}
	tokens := map[string]string{}
	for _, k := range kinds {
		for i := range k.n {
			id := fmt.Sprintf("%s-%d", k.b, i)
			tok := sb.Issue(k.b)
			tokens[id] = tok
			want[id] = k
			lines = append(lines, fmt.Sprintf(`{"id":%q,"provider":%q,"refresh_token":%q,"subject":"%s@example.com","labels":{"tenant":"acme"}}`, id, k.provider, tok, id))
		}
	}
	if len(want) != 50 {
		t.Fatalf("fixture has %d grants, want 50", len(want))
	}
	importLines(t, cfg, lines)

	logs := &testutil.LogBuffer{}
	td := startDaemon(t, cfg, logs, nil)

	// Several rounds: every healthy grant probed at least 4 times (so the
	// rotating ones rotated 4 times), every transient one degraded.
	testutil.WaitFor(t, 90*time.Second, "4 rounds and all verdicts", func() bool {
		if sb.Stats().Requests < 50*4 {
			return false
		}
		for id, g := range grantsByID(t, td.d.DB()) {
			if g.State != want[id].wantState {
				return false
			}
			if g.State == store.StateHealthy && g.LastSuccessAt.Sub(g.CreatedAt) < 3*time.Second {
				return false
			}
		}
		return true
	})
	td.stop()

	db, err := OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := grantsByID(t, db)
	for id, k := range want {
		g := got[id]
		if g.State != k.wantState {
			t.Errorf("%s: state %s (cause %s: %s), want %s", id, g.State, g.Cause, g.ErrorDescription, k.wantState)
		}
		if k.wantCause != "" && g.Cause != k.wantCause {
			t.Errorf("%s: cause %s, want %s", id, g.Cause, k.wantCause)
		}
		if k.wantState != store.StateReconnectRequired && g.State == store.StateReconnectRequired {
			t.Errorf("%s: a %s answer made the grant reconnect_required", id, k.b)
		}
	}

	// Rotated tokens were persisted: the stored token is the chain's
	// current one, not the imported one, and it still works.
	for id, k := range want {
		if k.b != sandbox.Rotate {
			continue
		}
		l, err := db.GetLease(id)
		if err != nil {
			t.Fatal(err)
		}
		if l.Token.Reveal() == tokens[id] {
			t.Errorf("%s: stored token is still the imported one after several rotations", id)
		}
		if cur := sb.Current(tokens[id]); l.Token.Reveal() != cur {
			t.Errorf("%s: stored token is not the chain's current token", id)
		}
	}
	if st := sb.Stats(); st.Reused != 0 {
		t.Errorf("sandbox saw %d reused refresh tokens: a rotated token was lost", st.Reused)
	}

	// Log each failure once: exactly one WARN-or-above line per failing
	// grant, none for healthy ones.
	loud := map[string]int{}
	for _, m := range logs.Lines(t) {
		lvl, _ := m["level"].(string)
		if lvl != slog.LevelWarn.String() && lvl != slog.LevelError.String() {
			continue
		}
		if id, ok := m["grant"].(string); ok {
			loud[id]++
		}
	}
	for id, k := range want {
		wantN := 1
		if k.wantState == store.StateHealthy {
			wantN = 0
		}
		if loud[id] != wantN {
			t.Errorf("%s: %d WARN/ERROR lines, want %d", id, loud[id], wantN)
		}
	}

	if testing.Verbose() {
		for _, m := range logs.Lines(t) {
			if m["level"] != "DEBUG" {
				t.Log(m)
			}
		}
	}
	// No secret in any log line.
	all := logs.String()
	for id, tok := range tokens {
		if strings.Contains(all, tok) {
			t.Fatalf("the refresh token of %s appears in the log", id)
		}
	}
	for _, s := range []string{"test-client-secret-DO-NOT-LOG", secret.Secret("x").String() + "x"} {
		if strings.Contains(all, s) {
			t.Fatalf("%q appears in the log", s)
		}
	}
}

// TestReuseDetected runs the daemon against the sandbox's strict rotation
// and reuse detection. A second holder refreshes a grant's token behind
// grantwatch's back: grantwatch's next probe presents the rotated-away
// token, the sandbox revokes the chain, and on-call gets
// grant.reuse_detected, whose fix names a leak or a second refresher, not a
// plain grant.reconnect_required. A reuse grantwatch can explain (its
// previous answer was lost in transit, and the provider has no grace) is
// the plain reconnect it is.
func TestReuseDetected(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for a few seconds")
	}
	sb := testutil.Sandbox(t)
	sb.SetClient("test-client", "test-client-secret-DO-NOT-LOG")
	gw := newLossyGateway(t, sb)
	in := newInbox(t)
	lossy := strings.Replace(sandboxProvider("lossy", "hydra", sb), sb.TokenURL(), gw.URL, 1) + "rotation_grace = \"0s\"\n"
	cfg := testConfig(t, t.TempDir(), sandboxProvider("hydra", "hydra", sb)+lossy+in.config())
	shared, lost := sb.Issue(sandbox.Rotate), sb.Issue(sandbox.Rotate)
	importLines(t, cfg, []string{
		fmt.Sprintf(`{"id":"shared","provider":"hydra","refresh_token":%q}`, shared),
		fmt.Sprintf(`{"id":"lost","provider":"lossy","refresh_token":%q}`, lost),
	})
	logs := &testutil.LogBuffer{}
	td := startDaemon(t, cfg, logs, nil)
	testutil.WaitFor(t, 10*time.Second, "both grants healthy", func() bool {
		gs := grantsByID(t, td.d.DB())
		return gs["shared"].State == store.StateHealthy && gs["lost"].State == store.StateHealthy
	})

	// The second holder: an app with its own copy of the grant refreshes it.
	resp, err := http.PostForm(sb.TokenURL(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {sb.Current(shared)},
		"client_id": {"test-client"}, "client_secret": {"test-client-secret-DO-NOT-LOG"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The gateway in front of the other grant's provider loses the
	// answer of its next refresh, after the provider rotated the token.
	gw.lose.Store(1)

	testutil.WaitFor(t, 15*time.Second, "both grants dead", func() bool {
		gs := grantsByID(t, td.d.DB())
		return gs["shared"].State == store.StateReconnectRequired && gs["lost"].State == store.StateReconnectRequired
	})
	testutil.WaitFor(t, 10*time.Second, "their notifications", func() bool {
		c := in.count()
		return c[notify.TypeReuseDetected]+c[notify.TypeReconnectRequired] >= 2
	})
	gs := grantsByID(t, td.d.DB())
	td.stop()
	in.mu.Lock()
	defer in.mu.Unlock()
	types := map[string]string{}
	for _, ev := range in.events {
		if ev.Grant == nil {
			continue
		}
		types[ev.Grant.ID] += ev.Type + " "
		if ev.Type == notify.TypeReuseDetected && (!strings.Contains(ev.Fix, "leaked") || !strings.Contains(ev.Fix, "second refresher")) {
			t.Errorf("reuse fix %q names no leak and no second refresher", ev.Fix)
		}
	}
	if types["shared"] != notify.TypeReuseDetected+" " {
		t.Errorf("the grant refreshed behind grantwatch's back: events %q, want one grant.reuse_detected", types["shared"])
	}
	if types["lost"] != notify.TypeReconnectRequired+" " {
		t.Errorf("the grant whose answer was lost: events %q, want one grant.reconnect_required", types["lost"])
	}
	if !gs["shared"].ReuseDetected || gs["lost"].ReuseDetected || !strings.Contains(gs["lost"].ErrorDescription, "lost in transit") {
		t.Errorf("reuse_detected shared %v lost %v; lost's description %q", gs["shared"].ReuseDetected, gs["lost"].ReuseDetected, gs["lost"].ErrorDescription)
	}
	loud := 0
	for _, m := range logs.Lines(t) {
		if m["grant"] == "shared" && (m["level"] == "ERROR" || m["level"] == "WARN") {
			loud++
		}
	}
	if loud != 1 {
		t.Errorf("%d WARN/ERROR lines for the reused grant, want 1", loud)
	}
	if st := sb.Stats(); st.Reused != 2 {
		t.Errorf("the sandbox detected %d reuses, want 2", st.Reused)
	}
}

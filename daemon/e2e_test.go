package daemon

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

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

package daemon

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

var testPolicy = Policy{
	Interval:      24 * time.Hour,
	DegradedAfter: 3,
	BackoffMin:    time.Minute,
	BackoffMax:    time.Hour,
}

// observePolicy is testPolicy for a provider in observe mode.
var observePolicy = func() Policy { p := testPolicy; p.Observe = true; return p }()

func failed(c probes.Cause) probes.Result {
	return probes.Result{Cause: c, Action: c.Action(), Error: "err", ErrorDescription: "desc"}
}

// everyResult is a success and a failure of every cause.
func everyResult() []probes.Result {
	results := []probes.Result{{OK: true}}
	for _, c := range probes.Causes() {
		results = append(results, failed(c))
	}
	return results
}

// TestTransitionEveryCauseAndState runs every cause (and success) against
// every state, with the clock good and skewed, and checks the rules of
// DESIGN.md that hold for every combination.
func TestTransitionEveryCauseAndState(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	results := everyResult()
	for _, prev := range store.States() {
		for _, failures := range []int{0, 2} {
			for _, skewed := range []bool{false, true} {
				for _, r := range results {
					name := fmt.Sprintf("%s/failures=%d/skewed=%v/%s", prev, failures, skewed, r.Cause)
					if r.OK {
						name = fmt.Sprintf("%s/failures=%d/skewed=%v/ok", prev, failures, skewed)
					}
					t.Run(name, func(t *testing.T) {
						g := store.Grant{ID: "g1", Provider: "google", State: prev, Failures: failures}
						if prev == store.StateReconnectRequired {
							g.Cause = string(probes.CauseRevoked)
						}
						if prev == store.StateOnHold {
							g.Cause = string(probes.CauseClockSkew)
						}
						out := Transition(g, r, Env{Now: now, ClockSkewed: skewed, Policy: testPolicy})
						checkTransition(t, g, r, skewed, out)
					})
				}
			}
		}
	}
}

func checkTransition(t *testing.T, g store.Grant, r probes.Result, skewed bool, out Outcome) {
	t.Helper()
	ng := out.Grant
	if ng.ID != g.ID || ng.Provider != g.Provider {
		t.Fatalf("identity changed: %+v", ng)
	}
	if !ng.LastProbeAt.Equal(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("LastProbeAt = %v", ng.LastProbeAt)
	}
	changed := ng.State != g.State
	if changed != (out.History != nil) && !(ng.State == store.StateOnHold && ng.Cause != g.Cause) {
		t.Errorf("history %v for a state change %v", out.History != nil, changed)
	}
	if out.Level >= slog.LevelWarn && !changed {
		t.Errorf("logged at %v without a state change (%s → %s): repeats must be DEBUG", out.Level, g.State, ng.State)
	}
	if ev := out.Event; ev != nil {
		if ev.Grant == nil || ev.Grant.ID != g.ID || ev.ID == "" {
			t.Errorf("event without grant or id: %+v", ev)
		}
	}
	action := r.Cause.Action()
	switch {
	case r.OK:
		if ng.State != store.StateHealthy || ng.Failures != 0 || ng.Cause != "" {
			t.Errorf("success gave %s failures=%d cause=%q", ng.State, ng.Failures, ng.Cause)
		}
		wantRecovered := g.State == store.StateReconnectRequired || g.State == store.StateDegraded
		if got := out.Event != nil && out.Event.Type == notify.TypeRecovered; got != wantRecovered {
			t.Errorf("recovered event = %v, want %v", got, wantRecovered)
		}
		if ng.NextDueAt.IsZero() {
			t.Error("a healthy grant must be scheduled")
		}
	case action == probes.ActionReconnect && skewed:
		// The clock may be why the provider refused: held, never flagged.
		if ng.State != store.StateOnHold || ng.Cause != string(probes.CauseClockSkew) {
			t.Errorf("with a skewed clock %s gave %s/%s, want on_hold/clock_skew", r.Cause, ng.State, ng.Cause)
		}
		if out.Event != nil {
			t.Errorf("event %s while the clock is skewed", out.Event.Type)
		}
	case action == probes.ActionReconnect:
		if ng.State != store.StateReconnectRequired || ng.Cause != string(r.Cause) {
			t.Errorf("%s gave %s/%s, want reconnect_required/%s", r.Cause, ng.State, ng.Cause, r.Cause)
		}
		if !ng.NextDueAt.IsZero() {
			t.Error("a reconnect_required grant must not be probed again until a new token is stored")
		}
		wantEvent := g.State != store.StateReconnectRequired
		// A reuse nothing here explains (no lost answer, no token just
		// stored) is announced as such.
		wantType := notify.TypeReconnectRequired
		if r.Cause == probes.CauseCodeReused && !g.LostAnswer && g.State != store.StatePending {
			wantType = notify.TypeReuseDetected
		}
		if got := out.Event != nil && out.Event.Type == wantType; got != wantEvent {
			t.Errorf("%s event = %v, want %v (exactly once)", wantType, got, wantEvent)
		}
		if wantEvent && ng.ReuseDetected != (wantType == notify.TypeReuseDetected) {
			t.Errorf("ReuseDetected = %v for a %s", ng.ReuseDetected, wantType)
		}
		if wantEvent && out.Level != slog.LevelError {
			t.Errorf("level %v, want ERROR on entering reconnect_required", out.Level)
		}
	case action == probes.ActionSyncClock || action == probes.ActionFixConfig:
		if ng.State != store.StateOnHold || ng.Cause != string(r.Cause) {
			t.Errorf("%s gave %s/%s, want on_hold/%s", r.Cause, ng.State, ng.Cause, r.Cause)
		}
		if out.Event != nil {
			t.Errorf("event %s for a held grant (the provider or clock is announced instead)", out.Event.Type)
		}
	default: // transient
		if ng.State == store.StateReconnectRequired && g.State != store.StateReconnectRequired {
			t.Errorf("transient %s made the grant reconnect_required", r.Cause)
		}
		if ng.Failures != g.Failures+1 {
			t.Errorf("failures = %d, want %d", ng.Failures, g.Failures+1)
		}
		wantDegraded := (g.State == store.StateHealthy || g.State == store.StatePending) && g.Failures+1 >= 3
		if got := ng.State == store.StateDegraded && g.State != store.StateDegraded; got != wantDegraded {
			t.Errorf("became degraded = %v, want %v", got, wantDegraded)
		}
		if g.State == store.StateReconnectRequired || g.State == store.StateOnHold {
			if ng.State != g.State || ng.Cause != g.Cause {
				t.Errorf("transient failure changed %s/%s to %s/%s", g.State, g.Cause, ng.State, ng.Cause)
			}
		}
		if g.State != store.StateReconnectRequired && ng.NextDueAt.IsZero() {
			t.Error("a transiently failing grant must be retried")
		}
	}
}

func TestTransitionCases(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	env := Env{Now: now, Policy: testPolicy}
	tests := []struct {
		name      string
		g         store.Grant
		r         probes.Result
		env       Env
		wantState store.State
		wantCause string
		wantEvent string
		wantLevel slog.Level
	}{
		// A user revoked access: on-call hears once, loudly.
		{"revoked from healthy", store.Grant{State: store.StateHealthy}, failed(probes.CauseRevoked), env,
			store.StateReconnectRequired, "revoked", notify.TypeReconnectRequired, slog.LevelError},
		// A new token was stored and works: the grant recovered.
		{"ok after reconnect", store.Grant{State: store.StateReconnectRequired, Cause: "revoked"}, probes.Result{OK: true}, env,
			store.StateHealthy, "", notify.TypeRecovered, slog.LevelInfo},
		// The first 5xx of a streak: INFO, no state change, no event.
		{"first 503", store.Grant{State: store.StateHealthy}, failed(probes.CauseServerError), env,
			store.StateHealthy, "server_error", "", slog.LevelInfo},
		// The second one in a row: DEBUG.
		{"second 503", store.Grant{State: store.StateHealthy, Failures: 1, Cause: "server_error"}, failed(probes.CauseServerError), env,
			store.StateHealthy, "server_error", "", slog.LevelDebug},
		// The third one: degraded, one WARN.
		{"third 503 degrades", store.Grant{State: store.StateHealthy, Failures: 2, Cause: "server_error"}, failed(probes.CauseServerError), env,
			store.StateDegraded, "server_error", notify.TypeDegraded, slog.LevelWarn},
		// During a provider outage the grant says nothing about itself.
		{"outage never degrades", store.Grant{State: store.StateHealthy, Failures: 9}, failed(probes.CauseNetwork),
			Env{Now: now, ProviderOutage: true, Policy: testPolicy},
			store.StateHealthy, "network", "", slog.LevelInfo},
		// A degraded grant failing again stays quiet.
		{"degraded again", store.Grant{State: store.StateDegraded, Failures: 5, Cause: "server_error"}, failed(probes.CauseServerError), env,
			store.StateDegraded, "server_error", "", slog.LevelDebug},
		// A classified time-window answer holds the grant whatever NTP says.
		// Logged once by the clock checker; per grant INFO.
		{"clock_skew answer", store.Grant{State: store.StateHealthy}, failed(probes.CauseClockSkew), env,
			store.StateOnHold, "clock_skew", "", slog.LevelInfo},
		// A wrong client secret is the operator's, not the user's.
		// Announced once for the provider; per grant INFO.
		{"invalid_client", store.Grant{State: store.StateHealthy}, failed(probes.CauseInvalidClient), env,
			store.StateOnHold, "invalid_client", "", slog.LevelInfo},
		// Held for the clock, then the clock is fixed and the grant works.
		{"held grant recovers", store.Grant{State: store.StateOnHold, Cause: "clock_skew"}, probes.Result{OK: true}, env,
			store.StateHealthy, "", "", slog.LevelInfo},
		// The user reconnected (set-token left the grant pending and
		// remembered the problem): the first good probe resolves it.
		{"new token works after reconnect_required", store.Grant{State: store.StatePending, PreviousState: store.StateReconnectRequired, PreviousCause: "revoked"},
			probes.Result{OK: true}, env, store.StateHealthy, "", notify.TypeRecovered, slog.LevelInfo},
		// The new token is dead too: that is news, announced again.
		{"new token dead too", store.Grant{State: store.StatePending, PreviousState: store.StateReconnectRequired, PreviousCause: "revoked"},
			failed(probes.CauseRevoked), env, store.StateReconnectRequired, "revoked", notify.TypeReconnectRequired, slog.LevelError},
		// The previous probe's answer was lost, and now the provider says
		// the token was already used: a rotation lost in transit.
		{"reuse after a lost answer", store.Grant{State: store.StateHealthy, LostAnswer: true, Failures: 1, Cause: "server_error"},
			failed(probes.CauseCodeReused), env, store.StateReconnectRequired, "code_reused", notify.TypeReconnectRequired, slog.LevelError},
		// The provider says the token was already used, and nothing here
		// presented it twice: someone else holds it. Its own event.
		{"reuse without explanation", store.Grant{State: store.StateHealthy},
			failed(probes.CauseCodeReused), env, store.StateReconnectRequired, "code_reused", notify.TypeReuseDetected, slog.LevelError},
		// A token just imported (an old export over a rotated token) is
		// the explanation: a plain reconnect, with a note saying so.
		{"reuse of a token just stored", store.Grant{State: store.StatePending},
			failed(probes.CauseCodeReused), env, store.StateReconnectRequired, "code_reused", notify.TypeReconnectRequired, slog.LevelError},
		// In observe mode grantwatch never presents the token: an import
		// explains nothing.
		{"reuse reported for an observed grant just imported", store.Grant{State: store.StatePending},
			failed(probes.CauseCodeReused), Env{Now: now, Policy: observePolicy}, store.StateReconnectRequired, "code_reused", notify.TypeReuseDetected, slog.LevelError},
		// Its recovery closes it.
		{"recovers after reuse", store.Grant{State: store.StateReconnectRequired, Cause: "code_reused", ReuseDetected: true},
			probes.Result{OK: true}, env, store.StateHealthy, "", notify.TypeRecovered, slog.LevelInfo},
		// Held for the clock, clock fixed, and the token really is dead.
		{"held grant really revoked", store.Grant{State: store.StateOnHold, Cause: "clock_skew"}, failed(probes.CauseInvalidGrant), env,
			store.StateReconnectRequired, "invalid_grant", notify.TypeReconnectRequired, slog.LevelError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.g.ID, tt.g.Provider = "g1", "google"
			out := Transition(tt.g, tt.r, tt.env)
			if out.Grant.State != tt.wantState || out.Grant.Cause != tt.wantCause {
				t.Errorf("got %s/%s, want %s/%s", out.Grant.State, out.Grant.Cause, tt.wantState, tt.wantCause)
			}
			gotEvent := ""
			if out.Event != nil {
				gotEvent = out.Event.Type
			}
			if gotEvent != tt.wantEvent {
				t.Errorf("event %q, want %q", gotEvent, tt.wantEvent)
			}
			if out.Level != tt.wantLevel {
				t.Errorf("level %v, want %v", out.Level, tt.wantLevel)
			}
			lostNote := strings.Contains(out.Grant.ErrorDescription, "lost in transit")
			if want := tt.g.LostAnswer && tt.r.Cause == probes.CauseCodeReused; lostNote != want {
				t.Errorf("lost-rotation note %v, want %v: %q", lostNote, want, out.Grant.ErrorDescription)
			}
			if ev := out.Event; ev != nil && ev.Type == notify.TypeReuseDetected {
				if !strings.Contains(ev.Fix, "leaked") || !strings.Contains(ev.Fix, "second refresher") {
					t.Errorf("reuse fix %q does not name a leak and a second refresher", ev.Fix)
				}
				if !out.Grant.ReuseDetected {
					t.Error("ReuseDetected not set with grant.reuse_detected")
				}
			}
			wantPrev := tt.g.Cause
			if tt.g.State == store.StatePending {
				wantPrev = tt.g.PreviousCause
			}
			if ev := out.Event; ev != nil && ev.Type == notify.TypeRecovered && (out.Grant.ReuseDetected || ev.PreviousCause != wantPrev) {
				t.Errorf("recovery: ReuseDetected %v, previous cause %q; want false, %q", out.Grant.ReuseDetected, ev.PreviousCause, wantPrev)
			}
		})
	}
}

func TestTransitionIsDeterministic(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	g := store.Grant{ID: "g1", Provider: "p", State: store.StateHealthy}
	a := Transition(g, failed(probes.CauseRevoked), Env{Now: now, Policy: testPolicy})
	b := Transition(g, failed(probes.CauseRevoked), Env{Now: now, Policy: testPolicy})
	if a.Event.ID != b.Event.ID {
		t.Fatalf("event ids differ across runs: %s %s (a retried transaction must write the same id)", a.Event.ID, b.Event.ID)
	}
}

func TestNextRegularSpreadsAndKeepsPhase(t *testing.T) {
	iv := time.Hour
	p := Policy{Interval: iv}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	buckets := make([]int, 10)
	for i := range 10000 {
		g := &store.Grant{ID: fmt.Sprintf("grant-%d", i), Row: uint64(i + 1)}
		id := g.ID
		next := nextRegular(g, now, p)
		d := next.Sub(now)
		if d < iv/2 || d >= iv/2+iv {
			t.Fatalf("%s: first due in %s, want within [%s, %s)", id, d, iv/2, iv/2+iv)
		}
		// Probed on time, the next probe is exactly one interval later.
		if again := nextRegular(g, next, p); again.Sub(next) != iv {
			t.Fatalf("%s: consecutive probes %s apart, want %s", id, again.Sub(next), iv)
		}
		buckets[int(next.Sub(now.Add(iv/2))*10/iv)]++
	}
	// A fleet imported at once spreads over the interval: each tenth of it
	// gets a tenth of the grants, give or take three granules.
	for i, n := range buckets {
		if n < 1000-3*phaseGranule || n > 1000+3*phaseGranule {
			t.Errorf("tenth %d of the interval has %d of 10000 grants", i, n)
		}
	}
}

// TestNextRegularGranules: grants imported together (consecutive rows) share
// a phase per granule, so their first round writes one place of the due
// index per granule; neighbouring granules are far apart.
func TestNextRegularGranules(t *testing.T) {
	iv := 24 * time.Hour
	p := Policy{Interval: iv}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	at := func(row uint64) time.Time { return nextRegular(&store.Grant{Row: row}, now, p) }
	for row := uint64(1000 * phaseGranule); row < 1001*phaseGranule; row++ {
		if !at(row).Equal(at(1000 * phaseGranule)) {
			t.Fatalf("row %d: due %v, its granule's first row %v", row, at(row), at(1000*phaseGranule))
		}
	}
	if d := at(1001 * phaseGranule).Sub(at(1000 * phaseGranule)).Abs(); d < time.Hour {
		t.Errorf("neighbouring granules only %s apart", d)
	}
}

func TestNextRegularSchedule(t *testing.T) {
	s, err := cron.ParseStandard("0 3 * * *")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	next := nextRegular(&store.Grant{ID: "g", Row: 12345}, now, Policy{Schedule: s})
	base := time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)
	if next.Before(base) || next.After(base.Add(5*time.Minute)) {
		t.Fatalf("next = %v, want within 5m after %v", next, base)
	}
}

func TestBackoff(t *testing.T) {
	p := Policy{BackoffMin: time.Minute, BackoffMax: time.Hour}
	prev := time.Duration(0)
	for n := 1; n <= 10; n++ {
		d := backoff("g", n, 0, p)
		if d < p.BackoffMin*8/10 || d > p.BackoffMax {
			t.Fatalf("failure %d: backoff %s out of [%s, %s]", n, d, p.BackoffMin*8/10, p.BackoffMax)
		}
		if n <= 5 && d < prev {
			t.Fatalf("failure %d: backoff %s shrank from %s", n, d, prev)
		}
		prev = d
	}
	if d := backoff("g", 1, 2*time.Hour, p); d < 2*time.Hour || d > 2*time.Hour+30*time.Minute {
		t.Fatalf("Retry-After 2h gave backoff %s, want a little more than 2h", d)
	}
}

// TestTransitionObserveNeverSchedules: whatever an app reports, a grant of
// a provider in observe mode is never due (grantwatch never refreshes it).
func TestTransitionObserveNeverSchedules(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	results := everyResult()
	for _, prev := range store.States() {
		for _, r := range results {
			for _, skewed := range []bool{false, true} {
				g := store.Grant{ID: "g1", Provider: "app", State: prev}
				out := Transition(g, r, Env{Now: now, ClockSkewed: skewed, Policy: observePolicy})
				if !out.Grant.NextDueAt.IsZero() {
					t.Errorf("%s + %s (skewed %v): due at %v, want never", prev, r.Cause, skewed, out.Grant.NextDueAt)
				}
				if ref := Transition(g, r, Env{Now: now, ClockSkewed: skewed, Policy: testPolicy}); ref.Grant.State != out.Grant.State ||
					ref.Grant.Cause != out.Grant.Cause || (ref.Event == nil) != (out.Event == nil) {
					t.Errorf("%s + %s: observe mode decided %s/%s, refresh mode %s/%s", prev, r.Cause,
						out.Grant.State, out.Grant.Cause, ref.Grant.State, ref.Grant.Cause)
				}
			}
		}
	}
}

package daemon

import (
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/probes"
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

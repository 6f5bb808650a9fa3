package daemon

import (
	"fmt"
	"sync"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/probes"
)

// Provider states. The names are part of grantwatch's interface.
const (
	ProviderOK            = "ok"
	ProviderOutage        = "outage"
	ProviderMisconfigured = "misconfigured"
)

// health tracks one provider's recent probes and decides whether it is in
// outage (most recent probes failed transiently) or misconfigured (it
// rejected the client), so that such an incident is reported once for the
// provider and not once per grant. It also holds the provider's pause: after
// a 429, until its Retry-After; in outage, between canary probes.
type health struct {
	cfg config.HealthConfig

	mu     sync.Mutex
	recent []sample // ring of the last cfg.Window probes
	next   int
	state  string
	cause  probes.Cause
	detail string
	since  time.Time
	// pausedUntil: no probe of this provider before then (429, outage).
	pausedUntil time.Time
	// canary: a probe in outage or misconfiguration is in flight.
	canary bool
	// strikes counts failed canaries, for the outage backoff.
	strikes int
}

type sample struct {
	at        time.Time
	transient bool
}

// healthChange is a provider state change to announce.
type healthChange struct {
	From, To string
	Cause    probes.Cause
	Detail   string
}

func newHealth(cfg config.HealthConfig) *health {
	return &health{cfg: cfg, recent: make([]sample, cfg.Window), state: ProviderOK}
}

// gate decides whether a due grant of the provider may be probed now. It
// returns 0 to probe (the caller must then call observe), or how long to
// wait. In outage or misconfiguration only one canary probe is in flight at a
// time.
func (h *health) gate(now time.Time, p Policy) (wait time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Before(h.pausedUntil) {
		return h.pausedUntil.Sub(now)
	}
	if h.state == ProviderOK {
		return 0
	}
	if h.canary {
		// The canary decides; the others wait as long as the next pause
		// would be, so a long incident does not rewrite every due grant
		// each backoff_min.
		if h.state == ProviderMisconfigured {
			return max(min(p.Interval, p.BackoffMax), time.Second)
		}
		return outageBackoff(h.strikes+1, p)
	}
	h.canary = true
	return 0
}

// release gives back a canary slot taken by gate when the probe did not run.
func (h *health) release() {
	h.mu.Lock()
	h.canary = false
	h.mu.Unlock()
}

// observe records a probe's result and reports a state change, if any.
func (h *health) observe(now time.Time, r probes.Result, p Policy) *healthChange {
	h.mu.Lock()
	defer h.mu.Unlock()
	wasCanary := h.canary
	h.canary = false
	action := r.Cause.Action()
	if r.Cause == probes.CauseRateLimited {
		// The provider asked us to slow down: pause all its probes.
		wait := r.RetryAfter
		if wait <= 0 {
			wait = p.BackoffMin
		}
		if until := now.Add(wait); until.After(h.pausedUntil) {
			h.pausedUntil = until
		}
		return nil
	}
	transient := !r.OK && action == probes.ActionRetry
	h.recent[h.next] = sample{at: now, transient: transient}
	h.next = (h.next + 1) % len(h.recent)

	switch {
	case !r.OK && action == probes.ActionFixConfig:
		if wasCanary || h.state != ProviderMisconfigured {
			// Probe again once per interval (at most backoff_max): the
			// provider may have been fixed on its side.
			h.pausedUntil = now.Add(min(p.Interval, p.BackoffMax))
		}
		if h.state == ProviderMisconfigured {
			if h.cause == "" {
				// Restored from before a restart: now the cause is known.
				h.cause, h.detail = r.Cause, misconfigDetail(r)
			}
			return nil
		}
		return h.set(now, ProviderMisconfigured, r.Cause, misconfigDetail(r))
	case h.state == ProviderOutage && transient:
		// A failed canary: back off further.
		h.strikes++
		h.pausedUntil = now.Add(outageBackoff(h.strikes, p))
		return nil
	case h.state != ProviderOK && (r.OK || action == probes.ActionReconnect || action == probes.ActionSyncClock):
		// An answer about the grant itself: the provider works again.
		h.strikes = 0
		h.pausedUntil = time.Time{}
		return h.set(now, ProviderOK, "", "")
	case h.state == ProviderOK && transient && h.failingLocked(now):
		h.strikes = 1
		h.pausedUntil = now.Add(outageBackoff(h.strikes, p))
		return h.set(now, ProviderOutage, r.Cause, fmt.Sprintf("%d of the last %d probes failed (%s)", h.failures(now), h.cfg.Window, r.Cause))
	}
	return nil
}

// failingLocked reports whether at least Threshold of the last Window probes
// within Period failed transiently.
func (h *health) failingLocked(now time.Time) bool {
	need := int(float64(h.cfg.Window)*h.cfg.Threshold + 0.999)
	return h.failures(now) >= max(need, 1)
}

func (h *health) failures(now time.Time) int {
	n := 0
	for _, s := range h.recent {
		if s.transient && now.Sub(s.at) <= h.cfg.Period {
			n++
		}
	}
	return n
}

func (h *health) set(now time.Time, state string, cause probes.Cause, detail string) *healthChange {
	ch := &healthChange{From: h.state, To: state, Cause: cause, Detail: detail}
	h.state, h.cause, h.detail, h.since = state, cause, detail, now
	if state == ProviderOK {
		// Forget the failures of the incident, so the first failure after
		// it does not declare a new outage at once.
		clear(h.recent)
	}
	return ch
}

// outage reports whether the provider is in outage: its grants' transient
// failures say nothing about the grants.
func (h *health) outage() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state == ProviderOutage
}

// snapshot returns the provider's state for status and metrics.
func (h *health) snapshot() (state string, cause probes.Cause, detail string, since time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state, h.cause, h.detail, h.since
}

// reset returns the provider to ok (its config was fixed).
func (h *health) reset(now time.Time) *healthChange {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pausedUntil, h.canary, h.strikes = time.Time{}, false, 0
	if h.state == ProviderOK {
		return nil
	}
	return h.set(now, ProviderOK, "", "config changed")
}

func outageBackoff(strikes int, p Policy) time.Duration {
	d := max(p.BackoffMin, time.Second)
	for i := 1; i < strikes && d < p.BackoffMax; i++ {
		d *= 2
	}
	return min(d, max(p.BackoffMax, time.Second))
}

// misconfigDetail names the config field an operator must fix.
func misconfigDetail(r probes.Result) string {
	what := ""
	switch r.Cause {
	case probes.CauseInvalidClient:
		what = "client_id / client_secret: the provider rejects the client (secret wrong or expired, or the app was deleted)"
	case probes.CauseUnauthorizedClient:
		what = "client_id: the app may not use the refresh_token grant (app registration disabled or of the wrong type)"
	case probes.CauseInvalidScope:
		what = "scopes: a scope is not allowed for this app"
	case probes.CauseInvalidRequest:
		what = "token_url: the endpoint did not receive refresh_token (a wrong token_url, or a proxy drops the body)"
	}
	if r.ErrorDescription != "" {
		what += " — provider said: " + r.ErrorDescription
	} else if r.Error != "" {
		what += " — provider said: " + r.Error
	}
	return what
}

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

// An outage needs outageFailures transient failures since the suspicion
// began (the canaries' included), and a failed canary of a healthy grant, or
// confirmCanaries failed canaries in a row: a grant that never worked may
// be failing for itself.
const (
	outageFailures  = 3
	confirmCanaries = 2
)

// health tracks one provider's recent probes and decides whether it is ok,
// in outage or misconfigured, so that such an incident is reported once for
// the provider and not once per grant.
//
// Canaries decide, not the grants' own schedules: a transient failure makes
// an ok provider suspect, and the canary loop probes one of its grants at
// once, then every health.canary_period, whatever the grants' intervals and
// backoff. A canary that fails declares an outage when at least
// outageFailures of the provider's probes since the suspicion began failed
// transiently, and at least health.threshold of them; at once if the
// canary's grant was healthy, else at the confirmCanaries-th failed canary
// in a row. A canary that gets an answer clears the suspicion. In outage a
// canary runs every canary_period, and the first answer about a grant
// itself (a success, a dead grant, a clock answer) ends it. A config answer
// (invalid_client, ...) makes the provider misconfigured at once; then a
// canary runs once per misconfigPeriod. So a fleet of 5 grants is judged as
// fast as one of 10⁵, and no outage is declared without a canary failing
// now. health also holds the provider's pause after a 429.
type health struct {
	cfg config.HealthConfig

	mu     sync.Mutex
	recent []sample // ring of the last cfg.Window probes
	next   int
	state  string
	cause  probes.Cause
	detail string
	since  time.Time
	// onset is when the provider became suspect: its first transient
	// failure since it last answered. Zero while it is not suspect.
	onset time.Time
	// strikes counts the canaries in a row that failed transiently since
	// onset; goodStrike: one of them probed a healthy grant.
	strikes    int
	goodStrike bool
	// hold: a grant's transient failure says nothing about the grant now
	// (in outage, or suspect and a canary of a healthy grant failed).
	hold bool
	// held: grants were put on hold for this provider's config; they are
	// released once it is ok again (takeHeld).
	held bool
	// pausedUntil: no probe of this provider before then (429).
	pausedUntil time.Time
	// canary: a canary is in flight. lastCanary: when the last one (or the
	// answer that made the provider misconfigured) came back. nextCanary:
	// when the next is due; zero when none is needed.
	canary     bool
	lastCanary time.Time
	nextCanary time.Time
	canaries   uint64
	// retired: a reload replaced the provider's config; a probe begun under
	// it judges nothing.
	retired bool
}

type sample struct {
	at        time.Time
	transient bool
}

// healthChange is a provider state change to announce.
type healthChange struct {
	From, To string
	// FromCause is the cause of the state left; Cause of the one entered.
	FromCause, Cause probes.Cause
	Detail           string
}

func newHealth(cfg config.HealthConfig) *health {
	return &health{cfg: cfg, recent: make([]sample, cfg.Window), state: ProviderOK}
}

// gate decides whether a due grant of the provider may be probed now. It
// returns 0 to probe, or how long to defer the grant: in outage or
// misconfiguration the grants wait and canaries probe for them.
func (h *health) gate(now time.Time, p Policy) (wait time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Before(h.pausedUntil) {
		return h.pausedUntil.Sub(now)
	}
	switch h.state {
	case ProviderMisconfigured:
		return misconfigPeriod(h.cfg, p)
	case ProviderOutage:
		// As long as the outage has lasted, within the grants' backoff: a
		// long incident does not rewrite every due grant each second, and
		// a short one does not push them far.
		return min(max(now.Sub(h.since), p.BackoffMin, time.Second), max(p.BackoffMax, time.Second))
	}
	return 0
}

// misconfigPeriod is the time between canaries of a misconfigured provider:
// once per interval (at most backoff_max), since only the operator (or the
// provider's admin) can fix it.
func misconfigPeriod(cfg config.HealthConfig, p Policy) time.Duration {
	iv := p.BackoffMax
	if p.Interval > 0 {
		iv = min(p.Interval, iv)
	}
	return max(iv, cfg.CanaryPeriod, time.Second)
}

// canaryDue reports whether a canary of the provider should start now; if
// so it is marked in flight, and n numbers it (to vary the grant probed).
// The caller must end it with observeCanary or skipCanary.
func (h *health) canaryDue(now time.Time) (n uint64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.canary || h.nextCanary.IsZero() || now.Before(h.nextCanary) || now.Before(h.pausedUntil) {
		return 0, false
	}
	h.canary = true
	h.canaries++
	return h.canaries, true
}

// skipCanary ends a canary that probed nothing (no grant to probe,
// shutdown); the next is due a period later.
func (h *health) skipCanary(now time.Time, p Policy) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.canary = false
	h.lastCanary = now
	h.planCanary(p)
}

// observe records the result of a grant's own probe (scheduled or on
// demand) and reports a state change, if any. It can make the provider
// suspect, misconfigured, or end an incident; it never declares an outage.
func (h *health) observe(now time.Time, r probes.Result, p Policy) *healthChange {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.observeLocked(now, r, p, false, false)
}

// observeCanary records a canary's result. knownGood tells that the
// canary's grant was healthy (its last probe succeeded): only then does its
// failure confirm an outage at once and hold the grants' verdicts, since a
// grant that never worked may be failing for itself.
func (h *health) observeCanary(now time.Time, r probes.Result, p Policy, knownGood bool) *healthChange {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.canary = false
	h.lastCanary = now
	return h.observeLocked(now, r, p, true, knownGood)
}

func (h *health) observeLocked(now time.Time, r probes.Result, p Policy, canary, knownGood bool) *healthChange {
	if h.retired {
		return nil
	}
	defer h.planCanary(p)
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

	var ch *healthChange
	switch {
	case !r.OK && action == probes.ActionFixConfig:
		if h.state != ProviderMisconfigured {
			ch = h.set(now, ProviderMisconfigured, r.Cause, misconfigDetail(r))
		} else if h.cause == "" {
			// Restored from before a restart: now the cause is known.
			h.cause, h.detail = r.Cause, misconfigDetail(r)
		}
	case !transient:
		// An answer about the grant itself: the provider works.
		switch {
		case h.state != ProviderOK && !r.Started.IsZero() && r.Started.Before(h.since):
			// Sent before the incident began (in flight when the secret
			// was rotated or the outage declared), observed after: it says
			// nothing about the provider since, and must not announce
			// provider.ok with the incident announced again a moment later.
		case h.state != ProviderOK:
			ch = h.set(now, ProviderOK, "", "")
		case canary:
			h.onset, h.strikes, h.goodStrike = time.Time{}, 0, false
		}
	case h.state == ProviderOK:
		if h.onset.IsZero() {
			h.onset = now
		}
		if canary {
			h.strikes++
			h.goodStrike = h.goodStrike || knownGood
			if (h.goodStrike || h.strikes >= confirmCanaries) && h.failingLocked(now) {
				f, n := h.evidence(now)
				what, last := "probes", "canary"
				if p.Observe {
					what, last = "reported refreshes", "report" // its app's reports are its canaries
				}
				ch = h.set(now, ProviderOutage, r.Cause, fmt.Sprintf("%d of the %d %s since %s failed (%s), the last %s included",
					f, n, what, h.onset.UTC().Format(time.TimeOnly), r.Cause, last))
			}
		}
	}
	h.hold = h.state == ProviderOutage || (h.state == ProviderOK && h.goodStrike && h.failingLocked(now))
	return ch
}

// evidence counts the probes since the suspicion began (and within
// Period) and how many of them failed transiently.
func (h *health) evidence(now time.Time) (failed, probed int) {
	for _, s := range h.recent {
		if s.at.IsZero() || s.at.Before(h.onset) || now.Sub(s.at) > h.cfg.Period {
			continue
		}
		probed++
		if s.transient {
			failed++
		}
	}
	return failed, probed
}

// failingLocked reports whether the evidence makes an outage: at least
// outageFailures failures, and at least Threshold of the probes.
func (h *health) failingLocked(now time.Time) bool {
	f, n := h.evidence(now)
	return f >= outageFailures && float64(f) >= h.cfg.Threshold*float64(n)
}

// planCanary sets when the next canary is due: a period after the last one
// (at once when none ran yet), or never while the provider is ok and not
// suspect.
func (h *health) planCanary(p Policy) {
	var period time.Duration
	switch {
	case h.retired:
	case h.state == ProviderMisconfigured:
		period = misconfigPeriod(h.cfg, p)
	case h.state == ProviderOutage || !h.onset.IsZero():
		period = h.cfg.CanaryPeriod
	}
	if period == 0 {
		h.nextCanary = time.Time{}
		return
	}
	h.nextCanary = h.lastCanary.Add(period)
}

func (h *health) set(now time.Time, state string, cause probes.Cause, detail string) *healthChange {
	ch := &healthChange{From: h.state, FromCause: h.cause, To: state, Cause: cause, Detail: detail}
	h.state, h.cause, h.detail, h.since = state, cause, detail, now
	h.onset, h.strikes, h.goodStrike = time.Time{}, 0, false
	switch state {
	case ProviderOK:
		// Forget the failures of the incident, so the first failure after
		// it does not count towards a new outage.
		clear(h.recent)
	case ProviderMisconfigured:
		h.held = true
		h.lastCanary = now // the answer that said so was as good as a canary
	}
	return ch
}

// restore starts the health at a state announced before a restart: the
// cause is unknown until a canary, due at once, answers.
func (h *health) restore(state string, now time.Time, p Policy) {
	if state != ProviderOutage && state != ProviderMisconfigured {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.state, h.since = state, now
	h.held = state == ProviderMisconfigured
	h.hold = state == ProviderOutage
	h.planCanary(p)
}

// handOver retires h, whose config a reload replaced, and starts to (the
// new config's health) where h was: an open incident stays open, neither
// closed nor announced again, until a canary of the new config answers, at
// once. Probes begun under the old config judge nothing from now on.
func (h *health) handOver(to *health, p Policy) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.retired = true
	to.mu.Lock()
	defer to.mu.Unlock()
	to.held = h.held
	if h.state == ProviderOK {
		return
	}
	to.state, to.cause, to.detail, to.since = h.state, h.cause, h.detail, h.since
	to.hold = h.state == ProviderOutage
	to.planCanary(p)
}

// retire marks h as belonging to a provider a reload removed.
func (h *health) retire() {
	h.mu.Lock()
	h.retired = true
	h.nextCanary = time.Time{}
	h.mu.Unlock()
}

// takeHeld reports, once, that the provider is ok again after grants were
// held for its config: they may be released.
func (h *health) takeHeld() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state != ProviderOK || !h.held {
		return false
	}
	h.held = false
	return true
}

// outage reports whether a grant's transient failure must not be judged as
// the grant's: the provider is in outage, or suspect and a canary failed.
func (h *health) outage() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hold
}

// snapshot returns the provider's state for status and metrics.
func (h *health) snapshot() (state string, cause probes.Cause, detail string, since time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state, h.cause, h.detail, h.since
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

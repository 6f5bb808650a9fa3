package daemon

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"math/bits"
	"strconv"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// Policy is what the transition function needs of a provider's config.
type Policy struct {
	// Interval between probes of a healthy grant; each grant keeps a fixed
	// phase within it, so a fleet imported at once is spread out after one
	// round.
	Interval time.Duration
	// Schedule, when set, replaces Interval.
	Schedule cron.Schedule
	// DegradedAfter consecutive transient failures make a grant degraded.
	DegradedAfter int
	// BackoffMin and BackoffMax bound the retry delay after a transient
	// failure; it doubles per failure, with per-grant jitter.
	BackoffMin, BackoffMax time.Duration
	// Observe: the provider is in observe mode. Its grants are never
	// scheduled (their app reports each refresh), and a token just
	// imported explains no reuse, since grantwatch never presents it.
	Observe bool
	// Lifetimes are the provider's refresh token lifetimes and WarnBefore
	// is forecast.warn_before, for the expiry forecast (forecast.go).
	Lifetimes  config.Lifetimes
	WarnBefore time.Duration
}

// Env is the world a transition sees besides the grant and the result.
type Env struct {
	Now time.Time
	// ClockSkewed: this host's clock is known to be off, so an invalid_grant
	// verdict cannot be trusted.
	ClockSkewed bool
	// ProviderOutage: most recent probes of the provider failed transiently;
	// a grant's own transient failure then says nothing about the grant.
	ProviderOutage bool
	Policy         Policy
}

// Outcome is what a probe result does to a grant.
type Outcome struct {
	Grant store.Grant
	// History is set when the state changed.
	History *store.HistoryEntry
	// Event is set when on-call must hear about it.
	Event *notify.Event
	// Notices are events besides the state change's (grant.unreadable,
	// grant.expiring: forecast.go), stored and sent with it.
	Notices []notify.Event
	// Level is how loudly the outcome is logged: WARN or ERROR once when the
	// grant enters a failing state, INFO for a recovery or the first failure
	// of a streak, DEBUG for repeats.
	Level slog.Level
}

// Transition decides what a probe result (or an app's report of its own
// refresh, in observe mode) does to a grant. It is pure: the same inputs
// give the same outcome, so it can run inside a retried transaction.
func Transition(g store.Grant, r probes.Result, env Env) Outcome {
	out := watch(decide(g, r, env), g, r, env)
	if env.Policy.Observe {
		out.Grant.NextDueAt = time.Time{} // its app refreshes it, never grantwatch
	}
	return out
}

// decide is the state a probe result leaves a grant in; watch adds what the
// result says of the grant's answers and lifetime.
func decide(g store.Grant, r probes.Result, env Env) Outcome {
	now := env.Now
	ng := g
	ng.LastProbeAt = now
	// A verdict on a new token ends the memory of the problem it replaced.
	ng.PreviousState, ng.PreviousCause = "", ""
	prev := g.State
	prevCause := g.Cause

	if r.OK {
		ng.LostAnswer, ng.ReuseDetected = false, false
		ng.State = store.StateHealthy
		ng.Cause, ng.Action, ng.Error, ng.ErrorDescription = "", "", "", ""
		ng.Failures = 0
		ng.LastSuccessAt = now
		ng.NextDueAt = nextRegular(&g, now, env.Policy)
		out := Outcome{Grant: ng, Level: slog.LevelDebug}
		if prev != store.StateHealthy && prev != store.StatePending {
			out.Level = slog.LevelInfo
		} else if g.Failures > 0 {
			out.Level = slog.LevelInfo // a streak of transient failures ended
		}
		from, fromCause := prev, prevCause
		if prev == store.StatePending && g.PreviousState != "" {
			// A new token replaced a dead one and works: the problem
			// announced for the old token is resolved.
			from, fromCause = g.PreviousState, g.PreviousCause
			out.Level = slog.LevelInfo
		}
		if from == store.StateReconnectRequired || from == store.StateDegraded {
			out.Event = grantEvent(notify.TypeRecovered, ng, from, now,
				"grant "+g.ID+" works again", "")
			out.Event.PreviousCause = fromCause
		}
		return finish(out, g, prevCause)
	}

	cause := r.Cause
	ng.Error = r.Error
	ng.ErrorDescription = r.ErrorDescription
	ng.Failures = g.Failures + 1
	ng.LostAnswer = r.Lost
	reuse := false
	if cause == probes.CauseCodeReused {
		switch {
		case g.LostAnswer:
			ng.ErrorDescription += lostRotationNote
		case g.State == store.StatePending && !env.Policy.Observe:
			ng.ErrorDescription += storedTokenNote
		default:
			// Nothing here presented the token twice: someone else did.
			reuse = true
		}
	}

	switch cause.Action() {
	case probes.ActionReconnect:
		if env.ClockSkewed {
			// The clock may be why the provider refused: hold the verdict
			// until the clock is good; the clock checker releases the grant.
			return finish(hold(ng, probes.CauseClockSkew, now, env), g, prevCause)
		}
		ng.State = store.StateReconnectRequired
		ng.Cause, ng.Action = string(cause), string(probes.ActionReconnect)
		ng.NextDueAt = time.Time{} // not probed again until a new token is stored
		out := Outcome{Grant: ng, Level: slog.LevelError}
		if prev != store.StateReconnectRequired {
			ng.ReuseDetected = reuse
			out.Grant = ng
			out.Event = reconnectEvent(ng, prev, now)
		}
		return finish(out, g, prevCause)

	case probes.ActionSyncClock, probes.ActionFixConfig:
		return finish(hold(ng, cause, now, env), g, prevCause)

	default: // retry: an outage, a rate limit, a broken answer
		ng.Cause, ng.Action = string(cause), string(probes.ActionRetry)
		ng.NextDueAt = now.Add(backoff(g.ID, ng.Failures, r.RetryAfter, env.Policy))
		out := Outcome{Grant: ng, Level: slog.LevelDebug}
		if g.Failures == 0 || prevCause != string(cause) {
			out.Level = slog.LevelInfo
		}
		if prev == store.StatePending {
			// Still no verdict on the new token.
			ng.PreviousState, ng.PreviousCause = g.PreviousState, g.PreviousCause
			out.Grant = ng
		}
		switch prev {
		case store.StateHealthy, store.StatePending:
			if !env.ProviderOutage && ng.Failures >= env.Policy.DegradedAfter {
				ng.State = store.StateDegraded
				out.Grant = ng
				out.Level = slog.LevelWarn
				out.Event = grantEvent(notify.TypeDegraded, ng, prev, now,
					"grant "+g.ID+" keeps failing: "+cause.Summary(), cause.Fix())
			}
		case store.StateOnHold, store.StateReconnectRequired:
			// A transient failure says nothing new: keep the verdict and
			// its cause.
			ng.Cause, ng.Action = g.Cause, g.Action
			if prev == store.StateReconnectRequired {
				ng.NextDueAt = time.Time{}
			}
			out.Grant = ng
		}
		return finish(out, g, prevCause)
	}
}

// reconnectEvent announces g entering reconnect_required from prev:
// grant.reuse_detected when its token's reuse has no local explanation
// (g.ReuseDetected), else grant.reconnect_required.
func reconnectEvent(g store.Grant, prev store.State, at time.Time) *notify.Event {
	cause := probes.Cause(g.Cause)
	if g.ReuseDetected {
		return grantEvent(notify.TypeReuseDetected, g, prev, at,
			"grant "+g.ID+": its refresh token was used by someone else, and the provider revoked it", reuseFix)
	}
	return grantEvent(notify.TypeReconnectRequired, g, prev, at,
		"grant "+g.ID+" needs its user to reconnect: "+cause.Summary(), cause.Fix())
}

// reuseFix is the fix of grant.reuse_detected: a reconnect alone would
// leave the second holder in place to kill the next token too.
const reuseFix = "The provider saw this grant's refresh token a second time and revoked it, and grantwatch " +
	"did not present it twice: its last answer was not lost and the token was not just stored. Someone else " +
	"holds and uses this refresh token: either it leaked (find where copies of it live, revoke the grant and " +
	"rotate the client secret if the leak may reach it) or a second refresher uses it, such as an app that " +
	"refreshes the same grant itself (let grantwatch be the one holder, or put the provider in observe mode " +
	"and have the app report its refreshes). Stop the second holder first, then ask the user to reconnect."

// storedTokenNote explains a reuse verdict on a token just stored from
// outside.
const storedTokenNote = " (grantwatch: this token was stored from outside (import or set-token) and presented " +
	"for the first time: it had probably been used already, as a token from an old export is once the provider " +
	"has rotated it)"

// lostRotationNote explains a reuse verdict right after a lost answer.
const lostRotationNote = " (grantwatch: the answer to the previous probe of this grant was lost in transit, " +
	"so the provider probably rotated the refresh token and the new one never arrived; " +
	"enable the provider's rotation grace period / reuse interval so a lost answer is survivable)"

// hold puts a grant on hold for a cause the user cannot fix.
func hold(ng store.Grant, cause probes.Cause, now time.Time, env Env) Outcome {
	prevState := ng.State
	ng.State = store.StateOnHold
	ng.Cause, ng.Action = string(cause), string(cause.Action())
	// Held grants are released by the clock checker or a config reload; the
	// due time is a safety net in case that release is missed.
	ng.NextDueAt = now.Add(env.Policy.BackoffMax)
	// The provider or the clock is announced once (WARN/ERROR) by its own
	// checker; each held grant is one INFO line.
	out := Outcome{Grant: ng, Level: slog.LevelInfo}
	if prevState == store.StateOnHold {
		out.Level = slog.LevelDebug
	}
	return out
}

// finish fills the history entry and demotes the log level of a repeat.
func finish(out Outcome, prev store.Grant, prevCause string) Outcome {
	g := out.Grant
	if g.State != prev.State || (g.State == store.StateOnHold && g.Cause != prevCause) {
		out.Grant.StateChangedAt = g.LastProbeAt
		out.History = &store.HistoryEntry{
			At: g.LastProbeAt, From: prev.State, To: g.State,
			Cause: g.Cause, Error: g.Error, ErrorDescription: g.ErrorDescription,
		}
		return out
	}
	if out.Level > slog.LevelInfo {
		out.Level = slog.LevelDebug // same failing state again
	}
	return out
}

func grantEvent(typ string, g store.Grant, prev store.State, now time.Time, summary, fix string) *notify.Event {
	return &notify.Event{
		ID:         eventID(typ, g.ID, now),
		Type:       typ,
		OccurredAt: now,
		Grant: &notify.Grant{
			ID: g.ID, Provider: g.Provider, Subject: g.Subject, Labels: g.Labels,
			State: string(g.State), Cause: g.Cause, Action: g.Action,
			Error: g.Error, ErrorDescription: g.ErrorDescription,
		},
		PreviousState: string(prev),
		Summary:       summary,
		Fix:           fix,
	}
}

// eventID is deterministic so that a retried transaction writes the same id.
func eventID(parts ...any) string {
	h := sha256.New()
	for _, p := range parts {
		switch v := p.(type) {
		case time.Time:
			h.Write(strconv.AppendInt(nil, v.UnixNano(), 10))
		case string:
			h.Write([]byte(v))
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// phaseHash is a stable per-grant number for phases and jitter.
func phaseHash(id string, salt uint64) uint64 {
	h := sha256.Sum256([]byte(id))
	return binary.BigEndian.Uint64(h[:8]) ^ (salt * 0x9e3779b97f4a7c15)
}

// nextRegular is when a healthy grant is probed next: with an interval, the
// first time at least half an interval away that falls on the grant's own
// phase, so that consecutive probes are one interval apart and a fleet
// imported at once spreads evenly over the interval.
func nextRegular(g *store.Grant, now time.Time, p Policy) time.Time {
	frac := phaseFraction(g.Row)
	if p.Schedule != nil {
		next := p.Schedule.Next(now)
		gap := p.Schedule.Next(next).Sub(next)
		spread := min(gap/10, 5*time.Minute)
		if spread <= 0 {
			return next
		}
		return next.Add(scale(frac, spread))
	}
	iv := p.Interval
	if iv <= 0 {
		iv = config.DefaultInterval
	}
	phase := int64(scale(frac, iv))
	base := now.Add(iv / 2).UnixNano()
	rem := ((base-phase)%int64(iv) + int64(iv)) % int64(iv)
	if rem == 0 {
		return time.Unix(0, base)
	}
	return time.Unix(0, base+int64(iv)-rem)
}

// phaseGranule consecutive rows share a phase.
const phaseGranule = 16

// phaseFraction is where in its interval the grant stored in row is probed,
// as a fraction of 2⁶⁴. Rows go in granules of phaseGranule, and granule k
// takes the k-th point of the van der Corput sequence (k's bits reversed),
// which spreads any number of granules evenly: a fleet of 100 grants or of
// 10⁶ is probed evenly over the interval. Grants imported together have
// consecutive rows and are probed together in their first round; a granule
// of them lands in one place of the due index, so that round writes one
// index page per granule rather than one per grant.
func phaseFraction(row uint64) uint64 { return bits.Reverse64(row / phaseGranule) }

// scale returns frac/2⁶⁴ of d (d >= 0).
func scale(frac uint64, d time.Duration) time.Duration {
	hi, _ := bits.Mul64(frac, uint64(d))
	return time.Duration(hi)
}

// backoff is the delay after the n-th consecutive transient failure:
// BackoffMin doubled per failure up to BackoffMax, minus up to 20 % jitter
// fixed per grant and failure, and never less than the provider asked for.
// A grant that was told to wait (Retry-After) waits a fifth longer than the
// provider's pause, so the grants deferred by that pause go first and it
// cannot starve them.
func backoff(id string, n int, retryAfter time.Duration, p Policy) time.Duration {
	d := p.BackoffMin
	for i := 1; i < n && d < p.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.BackoffMax)
	if d > 0 {
		d -= time.Duration(phaseHash(id, uint64(n)+2) % uint64(d/5+1))
	}
	return max(d, retryAfter+retryAfter/5)
}

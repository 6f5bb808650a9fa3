package config

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/grantwatch/grantwatch/probes"
)

// ForecastConfig is the [forecast] table: how far ahead a death is announced.
type ForecastConfig struct {
	// WarnBefore is how long before a grant's refresh token dies of
	// something probing cannot prevent (an absolute or announced lifetime,
	// a configured max_lifetime, Google's Testing mode) grant.expiring is
	// sent, and how long before a client secret expires
	// (client_secret_expires_at) provider.secret_expiring is. Status counts
	// the grants forecast to die within it. Default 168h (7 days).
	WarnBefore time.Duration `toml:"warn_before"`
}

// DefaultWarnBefore is forecast.warn_before's default.
const DefaultWarnBefore = 7 * 24 * time.Hour

// GoogleTestingLifetime is how long Google's refresh tokens live for an app
// whose OAuth consent screen is in "Testing" publishing status: 7 days from
// consent (developers.google.com/identity/protocols/oauth2, "Refresh token
// expiration").
const GoogleTestingLifetime = 7 * 24 * time.Hour

// Lifetimes is what the forecast knows of a provider's refresh tokens: the
// preset's documented lifetimes, or the provider entry's own.
type Lifetimes struct {
	// Idle is how long a refresh token may go unused; Max the most it lives
	// from consent. 0: none known.
	Idle, Max time.Duration
	// IdleConfigured and MaxConfigured report that the value is the
	// provider entry's (idle_lifetime, max_lifetime), not the preset's.
	IdleConfigured, MaxConfigured bool
	// Testing is google_testing: GoogleTestingLifetime from consent.
	Testing bool
}

// Lifetimes returns p's refresh token lifetimes: idle_lifetime and
// max_lifetime where set, else the preset's.
func (p ProviderConfig) Lifetimes() Lifetimes {
	var l Lifetimes
	if pr, ok := probes.LookupPreset(p.Preset); ok {
		l.Idle, l.Max = pr.IdleLifetime, pr.MaxLifetime
	}
	if p.IdleLifetime > 0 {
		l.Idle, l.IdleConfigured = p.IdleLifetime, true
	}
	if p.MaxLifetime > 0 {
		l.Max, l.MaxConfigured = p.MaxLifetime, true
	}
	l.Testing = p.GoogleTesting
	return l
}

// SecretExpiresAt returns when p's client secret expires
// (client_secret_expires_at); ok is false when it is not set. A date alone
// is its first instant in UTC.
func (p ProviderConfig) SecretExpiresAt() (t time.Time, ok bool) {
	t, err := parseExpiry(p.ClientSecretExpiresAt)
	return t, err == nil && !t.IsZero()
}

func parseExpiry(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, s)
}

// validateLifetimes checks p's lifetime keys. key is how p is named in
// errors (providers.NAME).
func (p ProviderConfig) validateLifetimes(key string) []error {
	var errs []error
	bad := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", key, k, fmt.Sprintf(format, args...)))
	}
	if p.IdleLifetime < 0 {
		bad("idle_lifetime", "must not be negative")
	}
	if p.MaxLifetime < 0 {
		bad("max_lifetime", "must not be negative")
	}
	if p.GoogleTesting && p.Preset != "google" {
		bad("google_testing", "is for a Google provider (preset = \"google\"); for another provider's fixed lifetime set max_lifetime")
	}
	if _, err := parseExpiry(p.ClientSecretExpiresAt); err != nil {
		bad("client_secret_expires_at", "must be an RFC 3339 date or time, such as \"2026-03-31\" or \"2026-03-31T12:00:00Z\", not %q", p.ClientSecretExpiresAt)
	}
	// A grant probed less often than its idle window dies of disuse: the
	// schedule that should keep it alive would let it expire.
	l := p.Lifetimes()
	if l.Idle <= 0 {
		return errs
	}
	whose := "its preset's"
	if l.IdleConfigured {
		whose = "idle_lifetime,"
	}
	if p.Schedule != "" {
		sched, err := cron.ParseStandard(p.Schedule)
		if err != nil {
			return errs // reported by validate
		}
		if gap := longestGap(sched); gap > l.Idle {
			bad("schedule", "leaves up to %s between probes, longer than the idle lifetime of its refresh tokens (%s %s): grants probed this rarely die of disuse; probe more often (or set idle_lifetime if this provider's policy differs)",
				Days(gap), whose, Days(l.Idle))
		}
	} else if p.Interval > l.Idle {
		bad("interval", "%s is longer than the idle lifetime of its refresh tokens (%s %s): grants probed this rarely die of disuse; make interval shorter (or set idle_lifetime if this provider's policy differs)",
			Days(p.Interval), whose, Days(l.Idle))
	}
	return errs
}

// longestGap is the longest time between two runs of sched among its first
// 400 runs (more than a year of a daily schedule), or a century when it
// stops running (a spec such as February 30th).
func longestGap(sched cron.Schedule) time.Duration {
	const never = 100 * 365 * 24 * time.Hour
	t := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var gap time.Duration
	for range 400 {
		next := sched.Next(t)
		if next.IsZero() {
			return never
		}
		gap = max(gap, next.Sub(t))
		t = next
	}
	return gap
}

// Days renders a lifetime for people: "90 days" when it is whole days,
// else as a Go duration.
func Days(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d > 0 && d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}

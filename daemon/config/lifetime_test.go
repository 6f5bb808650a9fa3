package config

import (
	"strings"
	"testing"
	"time"
)

const day = 24 * time.Hour

// provider is one [[providers]] entry named p with the given extra keys.
func provider(preset, extra string) string {
	return "[[providers]]\nname = \"p\"\nclient_id = \"x\"\ntoken_url = \"https://auth.example.com/token\"\npreset = \"" + preset + "\"\n" + extra
}

// TestIntervalLongerThanIdleIsRefused: a provider probed less often than its
// refresh tokens' idle window is a config error at load, whether the window
// is the preset's or the entry's own, and whether it probes by interval or
// by schedule.
func TestIntervalLongerThanIdleIsRefused(t *testing.T) {
	tests := []struct {
		name, toml string
		want       string // "" = valid
	}{
		{"microsoft, 100 days", provider("microsoft", "interval = \"2400h\"\n"),
			"providers.p.interval: 100 days is longer than the idle lifetime of its refresh tokens (its preset's 90 days)"},
		{"microsoft, 90 days", provider("microsoft", "interval = \"2160h\"\n"), ""},
		{"configured window", provider("okta", "idle_lifetime = \"1h\"\ninterval = \"2h\"\n"),
			"providers.p.interval: 2h0m0s is longer than the idle lifetime of its refresh tokens (idle_lifetime, 1h0m0s)"},
		{"configured window wider than the preset's", provider("box", "idle_lifetime = \"2400h\"\ninterval = \"1800h\"\n"), ""},
		{"schedule every six months", provider("google", "schedule = \"0 3 1 */6 *\"\n"),
			"providers.p.schedule: leaves up to 184 days between probes, longer than the idle lifetime of its refresh tokens (its preset's 180 days)"},
		{"schedule that never runs", provider("xero", "schedule = \"0 0 30 2 *\"\n"), "providers.p.schedule: leaves up to"},
		{"daily schedule", provider("xero", "schedule = \"0 3 * * *\"\n"), ""},
		{"no idle window", provider("spotify", "interval = \"8760h\"\n"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("/tmp/x/grantwatch.toml", []byte(tt.toml))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// TestLifetimeKeys: the forecast keys are checked at load and read as the
// forecast needs them.
func TestLifetimeKeys(t *testing.T) {
	for _, tt := range []struct{ name, toml, want string }{
		{"google_testing off google", provider("microsoft", "google_testing = true\n"), "providers.p.google_testing: is for a Google provider"},
		{"bad secret expiry", provider("microsoft", "client_secret_expires_at = \"31.03.2026\"\n"), "providers.p.client_secret_expires_at: must be an RFC 3339 date"},
		{"negative lifetime", provider("okta", "max_lifetime = \"-1h\"\n"), "providers.p.max_lifetime: must not be negative"},
		{"bare number lifetime", provider("okta", "idle_lifetime = 90\n"), "idle_lifetime: a duration is a string with a unit"},
		{"warn_before", "[forecast]\nwarn_before = \"-1h\"\n", "forecast.warn_before: must be positive"},
	} {
		t.Run(tt.name, func(t *testing.T) { wantErrors(t, tt.toml, tt.want) })
	}

	c, err := Parse("/tmp/x/grantwatch.toml", []byte(provider("google", "google_testing = true\nclient_secret_expires_at = \"2026-03-31\"\n")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Forecast.WarnBefore != 7*day {
		t.Errorf("warn_before default %s, want 168h", c.Forecast.WarnBefore)
	}
	p := c.Providers[0]
	if l := p.Lifetimes(); l.Idle != 180*day || l.IdleConfigured || l.Max != 0 || !l.Testing {
		t.Errorf("google testing lifetimes %+v", l)
	}
	if at, ok := p.SecretExpiresAt(); !ok || !at.Equal(time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("SecretExpiresAt = %v, %v", at, ok)
	}
	p = ProviderConfig{Preset: "atlassian", MaxLifetime: 30 * day, ClientSecretExpiresAt: "2026-03-31T12:00:00+02:00"}
	if l := p.Lifetimes(); l.Idle != 90*day || l.IdleConfigured || l.Max != 30*day || !l.MaxConfigured {
		t.Errorf("atlassian with max_lifetime: %+v", l)
	}
	if at, ok := p.SecretExpiresAt(); !ok || !at.Equal(time.Date(2026, 3, 31, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("SecretExpiresAt = %v, %v", at, ok)
	}
	if _, ok := (ProviderConfig{}).SecretExpiresAt(); ok {
		t.Error("SecretExpiresAt of an entry without it")
	}
}

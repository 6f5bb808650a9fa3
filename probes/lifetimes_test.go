package probes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPresetLifetimes checks the lifetime data every preset carries against
// what a forecast built on it assumes: lifetimes in days, not seconds; an
// idle window inside the maximum lifetime; a rotation grace shorter than
// either.
func TestPresetLifetimes(t *testing.T) {
	const (
		shortest = day            // no provider documents a refresh token living less
		longest  = 10 * 365 * day // Cognito's ceiling, the longest documented
		maxGrace = 24 * time.Hour // the longest documented grace is Xero's 30 minutes
	)
	inRange := func(d time.Duration) bool { return d == 0 || shortest <= d && d <= longest }
	for _, name := range PresetNames() {
		p, _ := LookupPreset(name)
		if !inRange(p.IdleLifetime) || !inRange(p.MaxLifetime) {
			t.Errorf("%s: idle %v, max %v: want 0 or between %v and %v", name, p.IdleLifetime, p.MaxLifetime, shortest, longest)
		}
		if p.IdleLifetime != 0 && p.MaxLifetime != 0 && p.IdleLifetime > p.MaxLifetime {
			t.Errorf("%s: idle %v is longer than max %v", name, p.IdleLifetime, p.MaxLifetime)
		}
		if p.RotationGrace < 0 || p.RotationGrace > maxGrace {
			t.Errorf("%s: rotation grace %v, want 0 to %v", name, p.RotationGrace, maxGrace)
		}
	}
}

// TestPresetLifetimesConfigurable: where the tenant or the app sets the
// lifetimes, the preset claims none, so that nothing is forecast from a
// default the tenant may have changed.
func TestPresetLifetimesConfigurable(t *testing.T) {
	for _, name := range []string{"auth0", "keycloak", "hydra", "salesforce"} {
		p, ok := LookupPreset(name)
		if !ok {
			t.Fatalf("no preset %q", name)
		}
		if p.IdleLifetime != 0 || p.MaxLifetime != 0 || p.RotationGrace != 0 {
			t.Errorf("%s: idle %v, max %v, grace %v; want all zero (set per tenant)", name, p.IdleLifetime, p.MaxLifetime, p.RotationGrace)
		}
	}
}

// TestREADMEListsPresets keeps the README true to the presets: its preset
// sentence names every preset, and its "Expiry forecast" table has a row for
// every preset that documents a lifetime.
func TestREADMEListsPresets(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	sentence, _, _ := strings.Cut(readme[strings.Index(readme, "Providers are classified in their own words"):], "are all understood")
	_, forecast, ok := strings.Cut(readme, "## Expiry forecast")
	if !ok {
		t.Fatal(`README.md has no section "Expiry forecast"`)
	}
	forecast, _, _ = strings.Cut(forecast, "\n## ")
	for _, name := range PresetNames() {
		if !strings.Contains(sentence, "`"+name+"`") {
			t.Errorf("the README's preset sentence does not name %s", name)
		}
		p, _ := LookupPreset(name)
		if (p.IdleLifetime != 0 || p.MaxLifetime != 0) && !strings.Contains(forecast, "| `"+name+"` |") {
			t.Errorf("the README's Expiry forecast table has no row for %s (idle %v, max %v)", name, p.IdleLifetime, p.MaxLifetime)
		}
	}
}

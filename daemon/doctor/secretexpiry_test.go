package doctor

import (
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
)

// TestSecretExpiry: doctor warns about a client secret expiring within
// forecast.warn_before, fails one that has expired, and reports one further
// away as ok.
func TestSecretExpiry(t *testing.T) {
	now := time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC)
	cfg := config.Default()
	cfg.Providers = []config.ProviderConfig{
		{Name: "soon", ClientSecretExpiresAt: "2026-03-23"},
		{Name: "past", ClientSecretExpiresAt: "2026-03-01"},
		{Name: "far", ClientSecretExpiresAt: "2026-09-01T00:00:00Z"},
		{Name: "unset"},
	}
	got := map[string]Check{}
	for _, c := range secretExpiry(cfg, now) {
		got[c.Name] = c
	}
	for name, want := range map[string]string{"soon": CheckWarn, "past": CheckFail, "far": CheckOK} {
		c, ok := got["provider/"+name+"/secret_expiry"]
		if !ok || c.Status != want || (want != CheckOK && c.Fix == "") {
			t.Errorf("%s: %+v, want status %s with a fix", name, c, want)
		}
	}
	if len(got) != 3 {
		t.Errorf("%d checks, want 3 (none for a provider without client_secret_expires_at)", len(got))
	}
}

package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/store"
)

// TestGrantsListExpiring: a probed grant of a provider whose refresh tokens
// live 48 hours from consent (max_lifetime) shows its forecast in `grants
// show` and `grants list --json`, is listed by `grants list --expiring 7d`
// (text and JSON) and counted by `status`; a grant not probed yet has no
// forecast and is not listed.
func TestGrantsListExpiring(t *testing.T) {
	s := newCLISetup(t, "max_lifetime = \"48h\"\n")
	if out, _, err := cli(t, s.cfgPath, "", "grants", "probe", "g0"); err != nil || !strings.Contains(out, "probe ok") {
		t.Fatalf("probe: %v %s", err, out)
	}

	out, _, err := cli(t, s.cfgPath, "", "grants", "show", "g0", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var g api.GrantDetail
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatal(err)
	}
	if g.ExpiresBasis != store.BasisConfigured || time.Until(g.ExpiresAt) < 47*time.Hour || time.Until(g.ExpiresAt) > 48*time.Hour {
		t.Errorf("grants show --json: expires_at %v, expires_basis %q; want in 48h, configured", g.ExpiresAt, g.ExpiresBasis)
	}
	for _, key := range []string{`"expires_at"`, `"expires_basis": "configured"`} {
		if !strings.Contains(out, key) {
			t.Errorf("grants show --json lacks %s:\n%s", key, out)
		}
	}
	if out, _, _ := cli(t, s.cfgPath, "", "grants", "show", "g0"); !strings.Contains(out, "basis configured") {
		t.Errorf("grants show has no forecast line:\n%s", out)
	}

	out, _, err = cli(t, s.cfgPath, "", "grants", "list", "--expiring", "7d", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var gs []store.Grant
	if err := json.Unmarshal([]byte(out), &gs); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(gs) != 1 || gs[0].ID != "g0" || gs[0].ExpiresBasis != store.BasisConfigured {
		t.Errorf("grants list --expiring 7d --json = %+v, want g0 alone", gs)
	}
	out, _, err = cli(t, s.cfgPath, "", "grants", "list", "--expiring", "7d")
	if err != nil || !strings.Contains(out, "EXPIRES") || !strings.Contains(out, "g0") || strings.Contains(out, "g1") {
		t.Errorf("grants list --expiring 7d: %v\n%s", err, out)
	}
	if out, _, _ := cli(t, s.cfgPath, "", "grants", "list", "--expiring", "1h", "--json"); strings.Contains(out, "g0") {
		t.Errorf("grants list --expiring 1h lists g0:\n%s", out)
	}
	if _, _, err := cli(t, s.cfgPath, "", "grants", "list", "--expiring", "soon"); err == nil {
		t.Error("--expiring soon accepted")
	}

	out, _, _ = cli(t, s.cfgPath, "", "status", "--json")
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if st.Expiring != 1 || st.WarnBeforeSeconds != (7*24*time.Hour).Seconds() {
		t.Errorf("status --json: expiring %d within %vs, want 1 within 7 days", st.Expiring, st.WarnBeforeSeconds)
	}
	if out, _, _ := cli(t, s.cfgPath, "", "status"); !strings.Contains(out, "1 grant(s) forecast to die within 7 days: grantwatch grants list --expiring 7d") {
		t.Errorf("status does not show the expiring grant:\n%s", out)
	}
}

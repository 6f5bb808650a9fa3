package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
)

// TestImportCountsOneGrant: "imported 1 grant", not "1 grants" (issue 12
// item 15).
func TestImportCountsOneGrant(t *testing.T) {
	s := newCLISetup(t, "")
	out, _, err := cli(t, s.cfgPath, `{"id":"one","provider":"acme","refresh_token":"`+s.sb.Issue(sandbox.Healthy)+`"}`, "grants", "import", "-")
	if err != nil || !strings.HasPrefix(out, "imported 1 grant (1 new, 0 replaced) in ") {
		t.Errorf("import of one grant: %v %q", err, out)
	}
}

// TestGrantsShowFix: grants show tells what to do about the grant's cause,
// in its text and its JSON (issue 12 item 15).
func TestGrantsShowFix(t *testing.T) {
	s := newCLISetup(t, "")
	cli(t, s.cfgPath, "", "grants", "probe", "g2") // revoked: fails
	out, _, err := cli(t, s.cfgPath, "", "grants", "show", "g2", "--json")
	var g api.GrantDetail
	if err != nil || json.Unmarshal([]byte(out), &g) != nil || g.Cause == "" {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	fix := probes.Cause(g.Cause).Fix()
	if fix == "" || g.Fix != fix {
		t.Errorf("show --json fix = %q, want %q", g.Fix, fix)
	}
	out, _, err = cli(t, s.cfgPath, "", "grants", "show", "g2")
	first := strings.Join(strings.Fields(fix)[:6], " ")
	if err != nil || !strings.Contains(out, "\nfix: "+first) {
		t.Errorf("show lacks the fix %q:\n%s", first, out)
	}
	// A healthy grant has nothing to fix.
	cli(t, s.cfgPath, "", "grants", "probe", "g0")
	if out, _, _ := cli(t, s.cfgPath, "", "grants", "show", "g0"); strings.Contains(out, "fix:") {
		t.Errorf("show of a healthy grant:\n%s", out)
	}
}

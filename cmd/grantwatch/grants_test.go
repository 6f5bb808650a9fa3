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

// TestImportReplaceAndForce: the operator of issue 15 re-imports an old
// export after a grant's token rotated. Without --replace nothing is
// imported and the existing grants are named; with --replace the rotated
// grant is named and nothing is imported; with --replace --force it is
// imported with a warning naming it, and its first probe presents the
// rotated-away token: the provider revokes it, and grantwatch explains the
// reuse by the import (a plain reconnect, not grant.reuse_detected).
func TestImportReplaceAndForce(t *testing.T) {
	s := newCLISetup(t, "")
	old := s.sb.Issue(sandbox.Rotate)
	export := `{"id":"rot","provider":"acme","refresh_token":"` + old + `"}` + "\n" +
		`{"id":"g0","provider":"acme","refresh_token":"` + s.tokens["g0"] + `"}`
	if _, _, err := cli(t, s.cfgPath, `{"id":"rot","provider":"acme","refresh_token":"`+old+`"}`, "grants", "import", "-"); err != nil {
		t.Fatal(err)
	}
	if out, _, err := cli(t, s.cfgPath, "", "grants", "probe", "rot"); err != nil || !strings.Contains(out, "rotated") {
		t.Fatalf("probe of the rotating grant: %v %s", err, out)
	}

	_, _, err := cli(t, s.cfgPath, export, "grants", "import", "-")
	if err == nil || !strings.Contains(err.Error(), `2 grants exist: "rot", "g0"`) || !strings.Contains(err.Error(), "--replace") ||
		!strings.Contains(err.Error(), `"rot"`) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("import over existing grants: %v; want them named, --replace, and the rotated one needing --force", err)
	}
	_, _, err = cli(t, s.cfgPath, export, "grants", "import", "--replace", "-")
	if err == nil || !strings.Contains(err.Error(), `1 grant's token rotated since it was stored from outside: "rot"`) || strings.Contains(err.Error(), `"g0"`) {
		t.Errorf("import --replace over a rotated token: %v; want rot named, g0 not", err)
	}
	if g := showJSON(t, s, "rot"); !g.Rotated || g.TokenGen != 1 {
		t.Errorf("after refused imports: rotated %v token_gen %d; want the grant untouched", g.Rotated, g.TokenGen)
	}
	if _, _, err := cli(t, s.cfgPath, export, "grants", "import", "--force", "-"); exitStatus(err) != 2 {
		t.Errorf("--force without --replace: %v, want a usage error", err)
	}

	out, errw, err := cli(t, s.cfgPath, export, "grants", "import", "--replace", "--force", "-")
	if err != nil || !strings.Contains(out, "imported 2 grants (0 new, 2 replaced)") || !strings.Contains(errw, `warning: replaced 1 grant whose token the provider had rotated since it was imported (--force): "rot"`) {
		t.Fatalf("import --replace --force: %v\nstdout %s\nstderr %s", err, out, errw)
	}
	if strings.Contains(out+errw, old) {
		t.Error("the import's output quotes a token")
	}
	out, _, _ = cli(t, s.cfgPath, "", "grants", "probe", "--json", "rot")
	var rep api.ProbeReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Grant.State != "reconnect_required" || rep.Grant.Cause != string(probes.CauseCodeReused) || rep.Grant.ReuseDetected ||
		!strings.Contains(rep.Grant.ErrorDescription, "stored from outside") {
		t.Errorf("the forced old token: %s/%s reuse_detected %v %q; want a reconnect explained by the import",
			rep.Grant.State, rep.Grant.Cause, rep.Grant.ReuseDetected, rep.Grant.ErrorDescription)
	}
}

// showJSON is grants show --json of id.
func showJSON(t *testing.T, s *cliSetup, id string) api.GrantDetail {
	t.Helper()
	out, _, err := cli(t, s.cfgPath, "", "grants", "show", "--json", id)
	if err != nil {
		t.Fatal(err)
	}
	var g api.GrantDetail
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatal(err)
	}
	return g
}

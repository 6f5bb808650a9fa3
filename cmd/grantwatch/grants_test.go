package main

import (
	"strings"
	"testing"

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

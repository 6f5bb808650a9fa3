package probes

import (
	"slices"
	"testing"
)

// TestCauses: Causes lists exactly the causes of the table, and each has an
// action, a summary and a fix, since notifications and explain print them.
func TestCauses(t *testing.T) {
	all := Causes()
	if len(all) != len(causes) {
		t.Errorf("Causes() has %d causes, the table %d", len(all), len(causes))
	}
	for c, info := range causes {
		if !slices.Contains(all, c) {
			t.Errorf("Causes() lacks %q", c)
		}
		if info.action == ActionNone || info.summary == "" || info.fix == "" || !c.Known() {
			t.Errorf("%q: action %q, summary %q, fix %q", c, info.action, info.summary, info.fix)
		}
	}
	if !CauseNone.Known() || CauseNone.Action() != ActionNone || Cause("nope").Known() {
		t.Error("CauseNone must be known with no action, an unknown cause unknown")
	}
	if CauseInvalidRequest.Action() != ActionFixConfig || CauseMalformed.Action() != ActionRetry {
		t.Errorf("invalid_request → %q, malformed → %q", CauseInvalidRequest.Action(), CauseMalformed.Action())
	}
}

package main

import (
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/probes/sandbox"
)

// TestStatusExitZeroWhenAllHealthy: status exits 0 with nothing to
// act on, with and without a daemon; odd ids work through every command.
func TestStatusExitZeroWhenAllHealthy(t *testing.T) {
	s := newCLISetup(t, "")
	// Drop the revoked grant of the setup; add odd ids.
	if _, _, err := cli(t, s.cfgPath, "", "grants", "rm", "g2"); err != nil {
		t.Fatal(err)
	}
	odd := []string{"a b", "50%", "x#y", "q?z", "ünï"}
	var lines []string
	for _, id := range odd {
		lines = append(lines, `{"id":"`+id+`","provider":"acme","refresh_token":"`+s.sb.Issue(sandbox.Healthy)+`"}`)
	}
	if _, _, err := cli(t, s.cfgPath, strings.Join(lines, "\n"), "grants", "import", "-"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"local", "daemon"} {
		if mode == "daemon" {
			_, stop := s.startDaemon(t)
			defer stop()
		}
		for _, id := range odd {
			if out, _, err := cli(t, s.cfgPath, "", "grants", "probe", id); err != nil || !strings.Contains(out, "probe ok") {
				t.Errorf("%s: probe %q: %v %s", mode, id, err, out)
			}
			if out, _, err := cli(t, s.cfgPath, s.sb.Issue(sandbox.Healthy)+"\n", "grants", "set-token", id); err != nil || !strings.Contains(out, "probe ok") {
				t.Errorf("%s: set-token %q: %v %s", mode, id, err, out)
			}
		}
		out, _, err := cli(t, s.cfgPath, "", "status")
		if err != nil {
			t.Errorf("%s: status with every grant healthy: %v\n%s", mode, err, out)
		}
	}
}

package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestShellCompletion: the shell completes grant ids (through the API
// client, with or without a daemon), --state values, providers, presets and
// receivers, and offers no files where none is meant (issue 12 item 15).
func TestShellCompletion(t *testing.T) {
	s := newCLISetup(t, `
[[notify]]
name = "oncall"
type = "webhook"
url = "http://127.0.0.1:1/hook"
`)
	complete := func(args ...string) []string {
		t.Helper()
		out, _, err := cli(t, s.cfgPath, "", append([]string{"__complete"}, args...)...)
		if err != nil {
			t.Fatalf("__complete %v: %v", args, err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		// The last line is the directive: 4 is NoFileComp.
		if last := lines[len(lines)-1]; last != fmt.Sprintf(":%d", noFiles) {
			t.Errorf("__complete %v: directive %s, want :%d", args, last, noFiles)
		}
		return lines[:len(lines)-1]
	}
	check := func(got []string, want ...string) {
		t.Helper()
		for _, w := range want {
			found := false
			for _, g := range got {
				found = found || strings.SplitN(g, "\t", 2)[0] == w
			}
			if !found {
				t.Errorf("completions %q lack %q", got, w)
			}
		}
	}
	for _, mode := range []string{"local", "daemon"} {
		if mode == "daemon" {
			_, stop := s.startDaemon(t)
			defer stop()
		}
		check(complete("grants", "show", "g"), "g0", "g1", "g2")
		check(complete("reconnect", ""), "g0", "g1", "g2")
		if got := complete("grants", "probe", "g1"); len(got) != 1 || got[0] != "g1" {
			t.Errorf("%s: grants probe g1<TAB>: %q", mode, got)
		}
	}
	check(complete("grants", "list", "--state", ""), "pending", "healthy", "degraded", "reconnect_required", "on_hold")
	check(complete("grants", "list", "--provider", ""), "acme")
	check(complete("explain", "--provider", ""), "acme", "google", "microsoft")
	check(complete("notify", "test", ""), "oncall")
}

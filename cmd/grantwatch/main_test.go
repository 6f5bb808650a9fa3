package main

import (
	"strings"
	"testing"
)

// TestCommandLineMistakesExit2: a mistyped command, a bare command group,
// a missing or extra argument and an unknown flag fail with exit status 2
// and say what is wrong (issue 12 items 6 and 15), instead of printing help
// and exiting 0 or cobra's bare "accepts 1 arg(s), received 0".
func TestCommandLineMistakesExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"grants", "lst"}, []string{`unknown command "lst" for "grantwatch grants"; did you mean list?`}},
		{[]string{"notify", "tset"}, []string{`unknown command "tset" for "grantwatch notify"; did you mean test?`}},
		{[]string{"statsu"}, []string{`unknown command "statsu" for "grantwatch"; did you mean status?`}},
		{[]string{"grants"}, []string{"which command? one of import, link, list,", "usage: grantwatch grants COMMAND"}},
		{[]string{"notify"}, []string{"which command? one of", "test"}},
		{[]string{"grants", "show"}, []string{"missing ID", "usage: grantwatch grants show ID [--json]"}},
		{[]string{"grants", "import"}, []string{"missing FILE|-", "usage: grantwatch grants import FILE|-"}},
		{[]string{"reconnect"}, []string{"missing ID", "usage: grantwatch reconnect ID"}},
		{[]string{"grants", "show", "a", "b"}, []string{`unexpected argument "b"`}},
		{[]string{"status", "now"}, []string{`unexpected argument "now"`, "usage: grantwatch status [--json]"}},
		{[]string{"explain", "a", "b"}, []string{`unexpected argument "b"`}},
		{[]string{"grants", "list", "--bogus"}, []string{"unknown flag: --bogus", "usage: grantwatch grants list"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, _, err := cli(t, "/nonexistent/grantwatch.toml", "", tc.args...)
			if got := exitStatus(err); got != 2 {
				t.Fatalf("exit status %d (%v), want 2", got, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "arg(s)") {
				t.Errorf("cobra's bare argument count: %v", err)
			}
			if out != "" {
				t.Errorf("printed on stdout: %q", out)
			}
		})
	}
	// What is right still runs.
	if out, _, err := cli(t, "/nonexistent/grantwatch.toml", "", "version"); err != nil || !strings.HasPrefix(out, "grantwatch ") {
		t.Errorf("version: %v %q", err, out)
	}
}

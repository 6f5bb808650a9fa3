package config

import (
	"strings"
	"testing"
)

// TestConfigProblemsNameEntryAndLine: unknown keys inside [[providers]] and
// [[notify]] name their entry (by name, else by index) and line, with "did
// you mean" for a near miss; values of the wrong type are reported with the
// other problems, all at once, instead of the decoder's first error; and a
// key in error brings no errors about keys that were never set (issue 12
// item 7).
func TestConfigProblemsNameEntryAndLine(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string // each a whole problem line
	}{
		{"unknown keys in entries", `[daemon]
workers = 8

[[providers]]
name = "google"
preset = "google"
client_id = "x"
intervall = "1h"

[[providers]]
preset = "google"
client_id = "y"
intervall = "2h"

[[notify]]
name = "hook"
type = "webhook"
url = "https://example.com/hook"
grop_wait = "0s"
`, []string{
			"providers.google.intervall: unknown key; did you mean interval? (line 8)",
			"providers[1].name: is required (grants refer to their provider by name)",
			"providers[1].intervall: unknown key; did you mean interval? (line 13)",
			"notify.hook.grop_wait: unknown key; did you mean group_wait? (line 19)",
		}},
		{"type errors with the other problems", `[daemon]
tick = "@every 5s"
workers = "eight"
probe_timeout = "30 s"
[log]
level = "loud"
[clock]
servers = ["a.example", 5]
[[providers]]
name = "google"
preset = "google"
client_id = "x"
rate = "fast"
`, []string{
			`daemon.workers: must be an integer, not a string (line 3)`,
			`daemon.probe_timeout: "30 s" is not a duration: write a number and a unit, such as "30s" or "24h" (line 4)`,
			`log.level: must be debug, info, warn or error, not "loud"`,
			`clock.servers[1]: must be a string, not an integer (line 8)`,
			`providers.google.rate: must be a number, not a string (line 13)`,
		}},
		{"unknown table, wrong table type", `log = "debug"
[deamon]
workers = 3
`, []string{
			"log: must be a table ([log]), not a string (line 1)",
			"deamon: unknown key; did you mean daemon? (line 2)",
		}},
		{"lines past multi-line strings and arrays", `[[notify]]
name = "run"
type = "exec"
command = [
  "/bin/echo",
  "intervall = 5",
]
max_age = """
[[providers]]
intervall = 1"""

[[providers]]
name = "p"
preset = "google"
client_id = "x"
intervall = "1h"
`, []string{
			`notify.run.max_age: "[[providers]]\nintervall = 1" is not a duration: write a number and a unit, such as "30s" or "24h" (line 8)`,
			"providers.p.intervall: unknown key; did you mean interval? (line 16)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("/tmp/x/grantwatch.toml", []byte(tt.toml))
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.Split(strings.TrimPrefix(err.Error(), "/tmp/x/grantwatch.toml: invalid config:\n"), "\n")
			if len(got) != len(tt.want) {
				t.Errorf("%d problems, want %d:\n%v", len(got), len(tt.want), err)
			}
			for _, w := range tt.want {
				found := false
				for _, g := range got {
					found = found || g == w
				}
				if !found {
					t.Errorf("no problem %q in:\n%v", w, err)
				}
			}
		})
	}
}

// TestKeyLines: the line of each key, entries by index, past comments,
// strings and inline tables.
func TestKeyLines(t *testing.T) {
	doc := `# a comment with [brackets] and key = value
[daemon]
db = "a#b" # "quoted"
'odd key' = 1
[[notify]]
name = "a"
match = { providers = ["x"], labels = { tenant = "t" } }
[notify.match]
[[notify]]
name = "b"
`
	got := keyLines(doc)
	for k, want := range map[string]int{
		"daemon": 2, "daemon.db": 3, "daemon.odd key": 4,
		"notify[0]": 5, "notify[0].name": 6, "notify[0].match": 8,
		"notify[1]": 9, "notify[1].name": 10,
	} {
		if got[k] != want {
			t.Errorf("%s: line %d, want %d", k, got[k], want)
		}
	}
	if n, ok := got["notify[0].match.providers"]; ok {
		t.Errorf("a key of an inline table is listed (line %d)", n)
	}
}

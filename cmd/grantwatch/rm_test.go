package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/store"
)

// TestGrantsRmMany removes grants in bulk, against the running daemon and
// with none: ids on stdin, several ids, by state and provider; each says
// how many and refuses to go ahead without --yes when no one can be asked.
func TestGrantsRmMany(t *testing.T) {
	for _, mode := range []string{"daemon", "local"} {
		t.Run(mode, func(t *testing.T) {
			s := newCLISetup(t, "")
			var more []string
			for i := range 20 {
				more = append(more, fmt.Sprintf(`{"id":"m%02d","provider":"acme","refresh_token":"rt-m-%d"}`, i, i))
			}
			if _, _, err := cli(t, s.cfgPath, strings.Join(more, "\n"), "grants", "import", "-"); err != nil {
				t.Fatal(err)
			}
			if mode == "daemon" {
				d, stop := s.startDaemon(t)
				defer stop()
				// Every grant is due at once: let the first round settle,
				// so that the counts below hold while the test removes.
				waitUntil(t, func() bool {
					st, err := d.Status()
					return err == nil && st.ByState["pending"] == 0
				})
			}
			ids := func() map[string]bool {
				out, _, err := cli(t, s.cfgPath, "", "grants", "list", "--json")
				var gs []store.Grant
				if err != nil || json.Unmarshal([]byte(out), &gs) != nil {
					t.Fatalf("grants list: %v %s", err, out)
				}
				m := map[string]bool{}
				for _, g := range gs {
					m[g.ID] = true
				}
				return m
			}

			// stdin is not a terminal here: no one to ask, so --yes it is.
			_, _, err := cli(t, s.cfgPath, "m00\nm01\n", "grants", "rm", "-")
			if err == nil || !strings.Contains(err.Error(), "remove 2 grant(s) named on stdin? stdin is not a terminal, so there is no one to ask: add --yes") {
				t.Errorf("rm - without --yes: %v", err)
			}
			_, _, err = cli(t, s.cfgPath, "", "grants", "rm", "m00", "m01")
			if err == nil || !strings.Contains(err.Error(), "add --yes") {
				t.Errorf("rm of two ids without --yes: %v", err)
			}
			if got := ids(); len(got) != 23 {
				t.Fatalf("%d grants after refused removals, want 23", len(got))
			}

			out, _, err := cli(t, s.cfgPath, "m00\n\n# a comment\nm01\nm02\nnot-there\n", "grants", "rm", "-", "--yes")
			if err != nil || !strings.Contains(out, "removed 3 grant(s) (1 of the ids named no grant)") {
				t.Errorf("rm - --yes: %v %q", err, out)
			}
			out, _, err = cli(t, s.cfgPath, "", "grants", "rm", "m03", "m04", "--yes")
			if err != nil || !strings.Contains(out, "removed 2 grant(s)") {
				t.Errorf("rm m03 m04 --yes: %v %q", err, out)
			}
			got := ids()
			for _, id := range []string{"m00", "m01", "m02", "m03", "m04"} {
				if got[id] {
					t.Errorf("%s is still there", id)
				}
			}

			_, _, err = cli(t, s.cfgPath, "", "grants", "rm", "--provider", "acme")
			if err == nil || !strings.Contains(err.Error(), "of provider acme? stdin is not a terminal") {
				t.Errorf("rm --provider without --yes: %v", err)
			}
			out, _, err = cli(t, s.cfgPath, "", "grants", "rm", "--provider", "nosuch", "--yes")
			if err != nil || !strings.Contains(out, "no grants of provider nosuch") {
				t.Errorf("rm --provider nosuch: %v %q", err, out)
			}
			_, _, err = cli(t, s.cfgPath, "", "grants", "rm", "--state", "gone", "--yes")
			if err == nil || !strings.Contains(err.Error(), `--state: unknown state "gone"`) {
				t.Errorf("rm --state gone: %v", err)
			}
			_, _, err = cli(t, s.cfgPath, "", "grants", "rm", "m05", "--state", "pending")
			if err == nil || !strings.Contains(err.Error(), "not both") {
				t.Errorf("rm with ids and a filter: %v", err)
			}

			// By filter: the daemon has probed the grants by now, with none
			// they are all pending; take the state most of them are in.
			st := statusJSON(t, s.cfgPath)
			state, want := "", 0
			for s, n := range st.ByProvider["acme"] {
				if n > want {
					state, want = s, n
				}
			}
			out, _, err = cli(t, s.cfgPath, "", "grants", "rm", "--state", state, "--provider", "acme", "--yes")
			if err != nil || !strings.Contains(out, fmt.Sprintf("removed %d grant(s)", want)) {
				t.Errorf("rm --state %s --provider acme: %v %q, want %d removed", state, err, out, want)
			}
			if st := statusJSON(t, s.cfgPath); st.ByState[state] != 0 || st.Grants != 23-5-want {
				t.Errorf("after rm --state %s: %d left in it, %d grants, want 0 and %d", state, st.ByState[state], st.Grants, 23-5-want)
			}
			// One id by name needs no --yes, as always.
			left := ids()
			for id := range left {
				out, _, err = cli(t, s.cfgPath, "", "grants", "rm", id)
				if err != nil || out != "removed "+id+"\n" {
					t.Errorf("rm %s: %v %q", id, err, out)
				}
				break
			}
		})
	}
}

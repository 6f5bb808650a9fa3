package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
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

// TestStatusCouldNotTellExit2: status exits 2 when it could not read the
// fleet — an invalid config, no database, a daemon of another config
// answering on this config's socket — and never says "nothing needs
// action" then; 1 stays "something needs action" (issue 12 item 13).
func TestStatusCouldNotTellExit2(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[daemon]\nworkers = \"eight\"\n"), 0o600)
	noDB := filepath.Join(dir, "nodb.toml")
	os.WriteFile(noDB, []byte("[daemon]\ndb = \"none.db\"\nlisten = \"\"\n[clock]\nservers = []\n"), 0o600)
	for name, cfg := range map[string]string{"invalid config": bad, "no database": noDB} {
		out, _, err := cli(t, cfg, "", "status")
		if got := exitStatus(err); got != 2 {
			t.Errorf("%s: exit status %d (%v), want 2", name, got, err)
		}
		if strings.Contains(out, "nothing needs action") {
			t.Errorf("%s: %q", name, out)
		}
	}

	// A second config with another database but the same socket: the
	// daemon that answers serves the first config's fleet, not this one.
	s := newCLISetup(t, "")
	d, stop := s.startDaemon(t)
	defer stop()
	waitUntil(t, func() bool { st, err := d.Status(); return err == nil && st.ByState["pending"] == 0 })
	b, _ := os.ReadFile(s.cfgPath)
	other := filepath.Join(s.dir, "other.toml")
	os.WriteFile(other, []byte(strings.Replace(string(b), `db = "gw.db"`, `db = "other.db"`, 1)), 0o600)
	out, _, err := cli(t, other, "", "status", "--json")
	if exitStatus(err) != 2 || !strings.Contains(err.Error(), "serves the database") || out != "" {
		t.Errorf("status of another config's daemon: exit %d, %v\n%s", exitStatus(err), err, out)
	}
	// Its own config: g2 needs reconnecting, exit 1.
	if _, _, err := cli(t, s.cfgPath, "", "status"); exitStatus(err) != 1 {
		t.Errorf("status with a grant to reconnect: exit %d (%v), want 1", exitStatus(err), err)
	}
}

// TestStatusListsZeroStates: by_state and by_provider list every state,
// zeros included, and so does the grantwatch_grants series, also for a
// configured provider without grants (issue 12 item 13).
func TestStatusListsZeroStates(t *testing.T) {
	s := newCLISetup(t, `
[[providers]]
name = "empty"
preset = "google"
client_id = "cid"
client_secret = "s"
`)
	d, stop := s.startDaemon(t)
	defer stop()
	out, _, _ := cli(t, s.cfgPath, "", "status", "--json")
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	fams, err := d.MetricsGatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]bool{}
	for _, f := range fams {
		if f.GetName() != "grantwatch_grants" {
			continue
		}
		for _, m := range f.GetMetric() {
			var prov, state string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "provider":
					prov = l.GetValue()
				case "state":
					state = l.GetValue()
				}
			}
			series[prov+"/"+state] = true
		}
	}
	for _, state := range store.States() {
		if _, ok := st.ByState[string(state)]; !ok {
			t.Errorf("by_state lacks %s", state)
		}
		for _, prov := range []string{"acme", "empty"} {
			if _, ok := st.ByProvider[prov][string(state)]; !ok {
				t.Errorf("by_provider.%s lacks %s", prov, state)
			}
			if !series[prov+"/"+string(state)] {
				t.Errorf(`no grantwatch_grants{provider=%q,state=%q}`, prov, state)
			}
		}
	}
}

// TestStatusSaysConfigDiffers: with a daemon running, status says when the
// config was loaded, and that the file changed since when it did (an edit
// not reloaded yet); without a daemon there is no such line. Before, status
// could not tell that the daemon ran something else than the file.
func TestStatusSaysConfigDiffers(t *testing.T) {
	s := newCLISetup(t, "")
	if out, _, _ := cli(t, s.cfgPath, "", "status"); strings.Contains(out, "config:") {
		t.Errorf("status without a daemon has a config line:\n%s", out)
	}
	_, stop := s.startDaemon(t)
	defer stop()
	out, _, _ := cli(t, s.cfgPath, "", "status")
	if !strings.Contains(out, "config:  loaded ") || strings.Contains(out, "changed since") {
		t.Errorf("status of a daemon running its file:\n%s", out)
	}
	b, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.cfgPath, append(b, "# edited, not reloaded\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, _ = cli(t, s.cfgPath, "", "status")
	if !strings.Contains(out, s.cfgPath+" changed since") || !strings.Contains(out, "systemctl reload grantwatch") {
		t.Errorf("status after an edit not reloaded:\n%s", out)
	}
	out, _, _ = cli(t, s.cfgPath, "", "status", "--json")
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.Config == nil || !st.Config.FileChanged || !st.Config.LastReloadOK {
		t.Errorf("status --json config %+v, want file_changed and last_reload_ok", st.Config)
	}
}

// TestStatusShowsFailedReload: the text names a failed reload, its error on
// one line, and what stays in force.
func TestStatusShowsFailedReload(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, api.Status{Daemon: true, LastTickAt: time.Now(), Config: &api.ConfigStatus{
		Path: "/etc/grantwatch/grantwatch.toml", LoadedAt: time.Now().Add(-time.Hour), LastReloadAt: time.Now(),
		LastReloadError: "daemon.tick: not a cron spec\nproviders.m365.token_url: must be https", FileChanged: true,
	}})
	want := "config:  the last reload (0s ago) FAILED, so the config loaded 1h00m ago stays in force: " +
		"daemon.tick: not a cron spec; providers.m365.token_url: must be https; " +
		"/etc/grantwatch/grantwatch.toml changed since: the daemon does not run what the file says (systemctl reload grantwatch)\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("status text:\n%s\nwant the line\n%s", out.String(), want)
	}
}

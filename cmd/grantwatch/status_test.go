package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
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

// TestObserveModeThroughTheCLI: grants of a provider in observe mode are
// imported without a token and never probed; an app reports a refresh over
// daemon.listen with an app key of scope observe (POST
// /v1/grants/{id}/observations) and the verdict is stored; a grant whose app
// stays silent for longer than the interval shows as stale in grants list,
// grants show and status, which then exits 1.
func TestObserveModeThroughTheCLI(t *testing.T) {
	s := newCLISetup(t, "\n[[providers]]\nname = \"app\"\npreset = \"google\"\nmode = \"observe\"\ninterval = \"3s\"\n")
	for _, id := range []string{"g0", "g1", "g2"} {
		if _, _, err := cli(t, s.cfgPath, "", "grants", "rm", id); err != nil {
			t.Fatal(err)
		}
	}
	if out, _, err := cli(t, s.cfgPath, `{"id":"reported","provider":"app"}`+"\n"+`{"id":"silent","provider":"app"}`, "grants", "import", "-"); err != nil {
		t.Fatalf("import without refresh_token: %v %s", err, out)
	}
	out, _, err := cli(t, s.cfgPath, "", "keys", "create", "app-reports", "--scope", "observe")
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(out)
	b, _ := os.ReadFile(s.cfgPath)
	os.WriteFile(s.cfgPath, []byte(strings.Replace(string(b), `listen = ""`, `listen = "127.0.0.1:0"`, 1)), 0o600)
	d, stop := s.startDaemon(t)
	defer stop()

	if _, _, err := cli(t, s.cfgPath, "", "grants", "probe", "silent"); err == nil || !strings.Contains(err.Error(), "observe mode") {
		t.Errorf("grants probe of an observed grant: %v, want a refusal naming observe mode", err)
	}
	report := func(id, body string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+d.ListenAddr()+"/v1/grants/"+id+"/observations", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST observation: %d %s", resp.StatusCode, out)
		}
	}
	waitUntil(t, func() bool {
		out, _, _ := cli(t, s.cfgPath, "", "grants", "list")
		return strings.Contains(out, "stale (pending)")
	})
	report("reported", `{"status": 200}`)
	out, _, err = cli(t, s.cfgPath, "", "grants", "list")
	if err != nil || !regexp.MustCompile(`reported\s+app\s+healthy`).MatchString(out) || !regexp.MustCompile(`silent\s+app\s+stale \(pending\)`).MatchString(out) {
		t.Errorf("grants list: %v\n%s", err, out)
	}
	out, _, err = cli(t, s.cfgPath, "", "grants", "show", "silent")
	if err != nil || !strings.Contains(out, "stale (pending)") || !strings.Contains(out, "has not reported a refresh") {
		t.Errorf("grants show: %v\n%s", err, out)
	}
	out, _, err = cli(t, s.cfgPath, "", "status")
	if err != exitCode(1) || !strings.Contains(out, "1 grant(s) stale") || !strings.Contains(out, "silent") {
		t.Errorf("status: %v, want exit status 1\n%s", err, out)
	}
	out, _, _ = cli(t, s.cfgPath, "", "status", "--json")
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Stale != 1 || st.StaleGrants[0].ID != "silent" || !st.NeedsAction {
		t.Errorf("status --json: %v stale %d %v", err, st.Stale, st.StaleGrants)
	}
	if n := s.sb.Stats().Requests; n != 0 {
		t.Errorf("%d requests to the token endpoint for grants in observe mode", n)
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

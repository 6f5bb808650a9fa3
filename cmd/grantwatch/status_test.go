package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
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

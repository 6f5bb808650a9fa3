package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/internal/testutil"
)

// TestSandboxRunsTheRealDaemon follows what sandbox tells a newcomer: with
// the config it writes, the grants file imports, the real daemon runs
// against its loopback provider and NTP server, status shows each grant's
// fate and the webhook prints what on-call receives; Ctrl-C ends it
// (issue 12 item 14).
func TestSandboxRunsTheRealDaemon(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &testutil.LogBuffer{}
	done := make(chan error, 1)
	go func() {
		root := newRoot(strings.NewReader(""), out, out)
		root.SetArgs([]string{"sandbox", "--dir", dir})
		done <- root.ExecuteContext(ctx)
	}()
	waitUntil(t, func() bool { return strings.Contains(out.String(), "Ctrl-C stops the sandbox") })
	cfg, grants := filepath.Join(dir, "grantwatch.toml"), filepath.Join(dir, "grants.jsonl")
	for _, want := range []string{"export GRANTWATCH_CONFIG=" + cfg, "grantwatch grants import " + grants, "grantwatch run", `"id":"bob-revoked"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("sandbox does not print %q:\n%s", want, out.String())
		}
	}
	if fi, err := os.Stat(grants); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("grants file: %v %v", err, fi)
	}
	// The files hold the secrets; the output shows none of them.
	var lines []struct {
		RefreshToken string `json:"refresh_token"`
	}
	b, err := os.ReadFile(grants)
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		var g struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := json.Unmarshal([]byte(l), &g); err != nil || g.RefreshToken == "" {
			t.Fatalf("grants file line %q: %v", l, err)
		}
		lines = append(lines, g)
	}
	for _, secret := range []string{lines[0].RefreshToken, lines[len(lines)-1].RefreshToken, "sandbox-secret"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("sandbox prints a secret of its files (%.6s…)", secret)
		}
	}

	if got, _, err := cli(t, cfg, "", "grants", "import", grants); err != nil || !strings.HasPrefix(got, "imported 7 grants") {
		t.Fatalf("import: %v %q", err, got)
	}
	s := &cliSetup{cfgPath: cfg, dir: dir}
	_, stop := s.startDaemon(t)
	want := map[string]string{"ann-healthy": "healthy", "eve-rotating": "healthy", "bob-revoked": "reconnect_required",
		"cho-expired": "reconnect_required", "dee-password": "reconnect_required", "fay-mfa": "reconnect_required"}
	waitUntil(t, func() bool {
		got, _, _ := cli(t, cfg, "", "grants", "list", "--json")
		var list []struct{ ID, State string }
		if json.Unmarshal([]byte(got), &list) != nil {
			return false
		}
		n := 0
		for _, g := range list {
			if want[g.ID] == g.State {
				n++
			}
		}
		return n == len(want)
	})
	got, _, err := cli(t, cfg, "", "status", "--json")
	var st api.Status
	if exitStatus(err) != 1 || json.Unmarshal([]byte(got), &st) != nil || !st.Daemon || st.ByState["reconnect_required"] != 4 {
		t.Errorf("status: exit %d, %+v", exitStatus(err), st)
	}
	if got, _, err := cli(t, cfg, "", "grants", "show", "dee-password"); err != nil || !strings.Contains(got, "password_changed") {
		t.Errorf("grants show: %v\n%s", err, got)
	}
	waitUntil(t, func() bool { return strings.Contains(out.String(), "grant.reconnect_required") })
	stop()

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("sandbox after Ctrl-C: %v", err)
	}
}

package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/daemon/api"
)

// TestTokenCommand: grantwatch token prints the access token as the only
// stdout line (through the daemon's socket, and with no daemon running),
// --json the broker's answer; a grant that needs its user exits 3 with its
// fix on stderr and nothing on stdout.
func TestTokenCommand(t *testing.T) {
	s := newCLISetup(t, "")
	out, _, err := cli(t, s.cfgPath, "", "token", "g0")
	if err != nil || strings.Count(out, "\n") != 1 || !s.sb.AccessTokenLive(strings.TrimSpace(out)) {
		t.Fatalf("token without a daemon: %q %v", out, err)
	}
	_, stop := s.startDaemon(t)
	defer stop()
	out, _, err = cli(t, s.cfgPath, "", "token", "g1", "--min-ttl", "5m")
	if err != nil || !s.sb.AccessTokenLive(strings.TrimSpace(out)) {
		t.Fatalf("token: %q %v", out, err)
	}
	again, _, _ := cli(t, s.cfgPath, "", "token", "g1", "--json")
	var a api.TokenAnswer
	if err := json.Unmarshal([]byte(again), &a); err != nil || a.AccessToken != strings.TrimSpace(out) || a.GrantID != "g1" || a.ExpiresAt.IsZero() {
		t.Errorf("token --json: %s %v, want the token held", again, err)
	}
	out, errw, err := cli(t, s.cfgPath, "", "token", "g2") // revoked in the sandbox
	var ec exitCode
	if !errors.As(err, &ec) || ec != 3 || out != "" || !strings.Contains(errw, "reconnect") || !strings.Contains(errw, "fix:") {
		t.Errorf("dead grant: %v, stdout %q, stderr %q", err, out, errw)
	}
}

// TestKeysCommands: keys create prints the key as the only stdout line
// (bad scopes and labels make none); keys list shows it with its scopes and
// labels, never the key; keys revoke removes it, once.
func TestKeysCommands(t *testing.T) {
	s := newCLISetup(t, "")
	out, errw, err := cli(t, s.cfgPath, "", "keys", "create", "acme-sync", "--label", "tenant=acme", "--scope", "token,read")
	key := strings.TrimSpace(out)
	if err != nil || strings.Count(out, "\n") != 1 || !strings.HasPrefix(key, "gwk_") || strings.Contains(errw, key) {
		t.Fatalf("keys create: %q %q %v", out, errw, err)
	}
	if _, _, err := cli(t, s.cfgPath, "", "keys", "create", "bad", "--scope", "admin"); err == nil {
		t.Error("an unknown scope made a key")
	}
	if _, _, err := cli(t, s.cfgPath, "", "keys", "create", "bad", "--label", "tenant"); err == nil {
		t.Error("a label without a value made a key")
	}
	list, _, err := cli(t, s.cfgPath, "", "keys", "list")
	if err != nil || !strings.Contains(list, "acme-sync") || !strings.Contains(list, "token,read") || !strings.Contains(list, "tenant=acme") || strings.Contains(list, key) {
		t.Errorf("keys list: %q %v", list, err)
	}
	var keys []api.Key
	js, _, _ := cli(t, s.cfgPath, "", "keys", "list", "--json")
	if json.Unmarshal([]byte(js), &keys) != nil || len(keys) != 1 || keys[0].Labels["tenant"] != "acme" {
		t.Errorf("keys list --json: %s", js)
	}
	if _, _, err := cli(t, s.cfgPath, "", "keys", "revoke", "acme-sync"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli(t, s.cfgPath, "", "keys", "revoke", "acme-sync"); err == nil {
		t.Error("revoking twice succeeded")
	}
	list, _, _ = cli(t, s.cfgPath, "", "keys", "list")
	if strings.Contains(list, "acme-sync") {
		t.Errorf("revoked key still listed: %q", list)
	}
}

package daemon

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// TestAppKeysThroughTheDaemon: keys are made once (gwk_…), stored as a hash,
// reach only the grants their labels select (another tenant's grant is 404)
// and survive a restart; listing shows no key.
func TestAppKeysThroughTheDaemon(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb))
	importLines(t, cfg, []string{
		`{"id":"a1","provider":"acme","refresh_token":"` + sb.Issue(sandbox.Healthy) + `","labels":{"tenant":"acme"}}`,
		`{"id":"b1","provider":"acme","refresh_token":"` + sb.Issue(sandbox.Healthy) + `","labels":{"tenant":"beta"}}`,
	})
	b := startBroker(t, cfg, nil)
	k, key, err := b.d.CreateKey(api.Key{Name: "acme-sync", Labels: map[string]string{"tenant": "acme"}, Scopes: []api.Scope{api.ScopeToken}})
	if err != nil || !strings.HasPrefix(key, "gwk_") || len(key) < 30 || k.Name != "acme-sync" {
		t.Fatalf("CreateKey: %+v %q %v", k, key, err)
	}
	if _, _, err := b.d.CreateKey(api.Key{Name: "acme-sync", Scopes: []api.Scope{api.ScopeToken}}); err == nil {
		t.Error("a second key of the same name")
	}
	for _, bad := range []string{"", "has space", "api_token_file", strings.Repeat("x", 65)} {
		if _, _, err := b.d.CreateKey(api.Key{Name: bad, Scopes: []api.Scope{api.ScopeToken}}); err == nil {
			t.Errorf("CreateKey(%q) made a key", bad)
		}
	}
	b.key = key
	if a := b.token(t, "a1"); a.code != 200 {
		t.Errorf("own tenant: %d %+v", a.code, a.err)
	}
	if a := b.token(t, "b1"); a.code != 404 {
		t.Errorf("other tenant: %d %+v, want 404", a.code, a.err)
	}
	keys, _ := b.d.ListKeys()
	if j, _ := json.Marshal(keys); len(keys) != 2 || strings.Contains(string(j), key) {
		t.Errorf("ListKeys = %s", j)
	}
	b.stop()

	// The next daemon knows the key from the store.
	b2 := startBroker(t, cfg, nil)
	b2.key = key
	if a := b2.token(t, "a1"); a.code != 200 {
		t.Errorf("after a restart: %d %+v", a.code, a.err)
	}
}

// TestAPITokenFileIsALegacyKey: daemon.api_token_file keeps working as a
// key named api_token_file with the scopes it had (read, set-token) on every
// grant, not the token scope, and the daemon warns once that it is
// deprecated, saying how to migrate.
func TestAPITokenFileIsALegacyKey(t *testing.T) {
	sb := testutil.Sandbox(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, sandboxProvider("acme", "", sb))
	importLines(t, cfg, []string{`{"id":"g1","provider":"acme","refresh_token":"` + sb.Issue(sandbox.Healthy) + `","labels":{"tenant":"acme"}}`})
	const legacy = "legacy-bearer-token-0123456789"
	tokFile := filepath.Join(dir, "api.token")
	if err := os.WriteFile(tokFile, []byte(legacy+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfg, func(c *config.Config) { c.Daemon.APITokenFile = tokFile })
	waitState(t, b.d.DB(), "g1", store.StateHealthy)
	b.key = legacy
	do := func(method, path, body string) int {
		req, _ := http.NewRequest(method, b.url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+legacy)
		resp, err := b.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do("GET", "/v1/grants/g1", ""); code != 200 {
		t.Errorf("GET grant with the token file's token: %d", code)
	}
	if code := do("PUT", "/v1/grants/g1/refresh_token", `{"refresh_token":"`+sb.Issue(sandbox.Healthy)+`"}`); code != 200 {
		t.Errorf("PUT refresh_token: %d", code)
	}
	if code := do("GET", "/v1/grants/g1/token", ""); code != 403 {
		t.Errorf("GET token with the token file's token: %d, want 403 (it never had the token scope)", code)
	}
	warned := 0
	for _, l := range b.logs.Lines(t) {
		if msg, _ := l["msg"].(string); l["level"] == "WARN" && strings.Contains(msg, "api_token_file is deprecated") && strings.Contains(msg, "keys create") {
			warned++
		}
	}
	if warned != 1 || strings.Contains(b.logs.String(), legacy) {
		t.Errorf("%d deprecation warnings (want 1), or the log holds the token", warned)
	}
	keys, _ := b.d.ListKeys()
	if len(keys) != 2 || keys[1].Name != "api_token_file" {
		t.Errorf("ListKeys = %+v, want test-app and api_token_file", keys)
	}
	if err := b.d.RevokeKey("api_token_file"); err == nil || !strings.Contains(err.Error(), "removing daemon.api_token_file") {
		t.Errorf("revoke api_token_file: %v", err)
	}
}

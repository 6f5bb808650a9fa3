package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func TestExplain(t *testing.T) {
	tests := []struct {
		name, provider, status, body string
		want                         map[string]any
	}{
		// Google's answer to a revoked or expired token (its token docs).
		{"google", "google", "400", `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`,
			map[string]any{"cause": "invalid_grant", "action": "reconnect", "retryable": false}},
		// Microsoft Entra after a password reset.
		{"microsoft", "microsoft", "400", `{"error":"invalid_grant","error_description":"AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.","error_codes":[50173]}`,
			map[string]any{"cause": "password_changed", "action": "reconnect", "retryable": false}},
		// An HTML error page from a proxy during an outage: never a reconnect.
		{"html 502", "", "502", `<html><body><h1>502 Bad Gateway</h1></body></html>`,
			map[string]any{"cause": "server_error", "action": "retry", "retryable": true, "read": []any{}}},
		// Fitbit's errors list (home-assistant/core#141223): the verdict is
		// read from the entry's message.
		{"errors list", "", "400", `{"errors":[{"errorType":"invalid_grant","message":"Refresh token invalid: xxxxxx. Visit https://dev.fitbit.com/docs/oauth2 for more information on the Fitbit Web API authorization process."}],"success":false}`,
			map[string]any{"cause": "invalid_grant", "action": "reconnect", "read": []any{"errors[0].message"}}},
		// A request without refresh_token (Google's words): the provider
		// entry, not the grant.
		{"refresh_token missing", "google", "400", `{"error":"invalid_request","error_description":"Missing required parameter: refresh_token"}`,
			map[string]any{"cause": "invalid_request", "action": "fix_config", "retryable": false, "read": []any{"error_description"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"explain", "--json", "--status", tt.status}
			if tt.provider != "" {
				args = append(args, "--provider", tt.provider)
			}
			out, _, err := cli(t, "/nonexistent.toml", tt.body, args...)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, k := range []string{"cause", "action", "error", "error_description", "retryable", "fix", "rule", "status", "read"} {
				if _, ok := got[k]; !ok {
					t.Errorf("explain --json lacks %q", k)
				}
			}
			for k, v := range tt.want {
				if fmt.Sprint(got[k]) != fmt.Sprint(v) {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			if got["fix"] == "" {
				t.Error("no fix")
			}
		})
	}
	out, _, err := cli(t, "/nonexistent.toml", `{"error":"invalid_grant"}`, "explain")
	if err != nil || !strings.Contains(out, "cause:   invalid_grant") || !strings.Contains(out, "reconnect") || !strings.Contains(out, "read:    error\n") {
		t.Errorf("human explain: %v\n%s", err, out)
	}
	// Twitch's {"status","message"} (twitchdev/issues#1037): the member read is named.
	out, _, err = cli(t, "/nonexistent.toml", `{"status":400,"message":"Invalid refresh token"}`, "explain")
	if err != nil || !strings.Contains(out, "cause:   invalid_grant") || !strings.Contains(out, "read:    message\n") {
		t.Errorf("human explain of a status/message answer: %v\n%s", err, out)
	}
	out, _, err = cli(t, "/nonexistent.toml", `<html><body>Bad Request</body></html>`, "explain")
	if err != nil || !strings.Contains(out, "cause:   malformed") || !strings.Contains(out, "read:    nothing") {
		t.Errorf("human explain of an HTML page: %v\n%s", err, out)
	}
	if _, _, err := cli(t, "/nonexistent.toml", "{}", "explain", "--provider", "gogle"); err == nil || !strings.Contains(err.Error(), "known:") {
		t.Errorf("unknown preset: %v", err)
	}
}

// TestNotifyTest sends a test notification through the real path and
// prints the receiver's answer; the webhook URL's secret never shows.
func TestNotifyTest(t *testing.T) {
	var got atomic.Value
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 1<<16)
		n, _ := r.Body.Read(b)
		got.Store(string(b[:n]))
		fmt.Fprint(w, "thanks")
	}))
	defer hook.Close()
	s := newCLISetup(t, fmt.Sprintf(`
[[notify]]
name = "hook"
type = "webhook"
url = "%s/secret-path-TOKEN123"
`, hook.URL))
	out, _, err := cli(t, s.cfgPath, "", "notify", "test", "hook")
	if err != nil {
		t.Fatalf("notify test: %v\n%s", err, out)
	}
	if !strings.Contains(out, "hook: delivered (HTTP 200)") || strings.Contains(out, "TOKEN123") {
		t.Errorf("output: %s", out)
	}
	body, _ := got.Load().(string)
	if !strings.Contains(body, `"test": true`) && !strings.Contains(body, `"test":true`) {
		t.Errorf("the receiver got no marked test event: %s", body)
	}
	if _, _, err := cli(t, s.cfgPath, "", "notify", "test", "nope"); err == nil {
		t.Error("an unknown receiver gave no error")
	}
}

// TestExplainConfiguredProviderAndNoPrompt: --provider takes a configured
// provider's name, the name every other command shows, and applies its
// preset's wording; an unknown name lists both kinds of names; and with
// stdin not a terminal (/dev/null) no prompt is printed (issue 12 item 10).
func TestExplainConfiguredProviderAndNoPrompt(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "grantwatch.toml")
	os.WriteFile(cfg, []byte("[[providers]]\nname = \"m365\"\npreset = \"microsoft\"\nclient_id = \"x\"\n"), 0o600)
	// Microsoft Entra after a password reset (as in TestExplain).
	body := `{"error":"invalid_grant","error_description":"AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.","error_codes":[50173]}`
	out, _, err := cli(t, cfg, body, "explain", "--provider", "m365")
	if err != nil || !strings.Contains(out, "cause:   password_changed") {
		t.Errorf("explain --provider m365 (preset microsoft): %v\n%s", err, out)
	}
	_, _, err = cli(t, cfg, body, "explain", "--provider", "m356")
	if err == nil || !strings.Contains(err.Error(), "m365") || !strings.Contains(err.Error(), "microsoft") {
		t.Errorf("explain --provider m356: %v, want the configured providers and the presets named", err)
	}

	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	var stdout, stderr bytes.Buffer
	root := newRoot(devnull, &stdout, &stderr)
	root.SetArgs([]string{"--config", cfg, "explain"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if stderr.Len() > 0 {
		t.Errorf("explain < /dev/null wrote to stderr: %q", stderr.String())
	}
	if !strings.Contains(stdout.String(), "cause:") {
		t.Errorf("explain < /dev/null: %q", stdout.String())
	}
}

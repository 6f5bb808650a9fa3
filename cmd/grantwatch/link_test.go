package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/daemon/api"
)

// TestGrantsLink: grants link prints one URL under reconnect.public_url, and
// nothing but it on stdout; without public_url it says what to set.
func TestGrantsLink(t *testing.T) {
	for _, public := range []string{"https://gw.example.com", ""} {
		t.Run("public_url="+public, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "grantwatch.toml")
			cfg := fmt.Sprintf(`
[daemon]
db = "gw.db"
socket = "gw.sock"
listen = "127.0.0.1:0"
[clock]
servers = []
[reconnect]
public_url = %q
[[providers]]
name = "acme"
preset = "google"
client_id = "cid"
`, public)
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, _, err := cli(t, cfgPath, `{"id":"g1","provider":"acme","refresh_token":"rt-1"}`, "grants", "import", "-"); err != nil {
				t.Fatal(err)
			}
			out, errOut, err := cli(t, cfgPath, "", "grants", "link", "g1", "--ttl", "2h")
			if public == "" {
				if err == nil || !strings.Contains(err.Error(), "reconnect.public_url") {
					t.Errorf("without public_url: %v %q, want an error naming reconnect.public_url", err, out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], public+"/reconnect/") || len(lines[0]) != len(public+"/reconnect/")+26 {
				t.Errorf("stdout %q, want the one URL %s/reconnect/<secret>", out, public)
			}
			if strings.Contains(errOut, lines[0]) || !strings.Contains(errOut, "g1") {
				t.Errorf("stderr %q: want the grant named, not the link", errOut)
			}
			out, _, err = cli(t, cfgPath, "", "grants", "link", "g1", "--json")
			var l api.ReconnectLink
			if err != nil || json.Unmarshal([]byte(out), &l) != nil || l.GrantID != "g1" || !strings.HasPrefix(l.URL, public+"/reconnect/") {
				t.Errorf("link --json: %v %q", err, out)
			}
		})
	}
}

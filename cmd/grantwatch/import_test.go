package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/store"
)

// importConfig writes a config with one provider, p, and the given [daemon]
// keys, and returns its path.
func importConfig(t *testing.T, dir, daemonKeys string) string {
	t.Helper()
	cfg := fmt.Sprintf(`
[daemon]
db = "gw.db"
socket = "gw.sock"
listen = ""
probe_timeout = "1s"
shutdown_timeout = "2s"
%s
[clock]
servers = []
[[providers]]
name = "p"
token_url = "http://127.0.0.1:9/token"
client_id = "c"
client_secret = "import-client-secret"
interval = "1h"
`, daemonKeys)
	path := filepath.Join(dir, "grantwatch.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// grantLines is n import lines of provider p with ids prefix-0….
func grantLines(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"id":"%s-%d","provider":"p","refresh_token":"rt-import-%s-%d-%s","subject":"u%d@example.com","labels":{"tenant":"t%d"}}`+"\n",
			prefix, i, prefix, i, strings.Repeat("x", 100), i, i%7)
	}
	return b.String()
}

// spools lists the import spool files left in dir.
func spools(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".gw.db.import-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestImportRefusesADirectory(t *testing.T) {
	dir := t.TempDir()
	cfg := importConfig(t, dir, "")
	_, _, err := cli(t, cfg, "", "grants", "import", dir)
	if err == nil || !strings.Contains(err.Error(), dir+" is a directory: name a JSON Lines file of grants (or - for stdin)") {
		t.Fatalf("import of a directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "gw.db")); err == nil {
		t.Error("a database was created for an import that read nothing")
	}
}

// TestImportTotalSizeCap: an input over daemon.import_max_bytes is refused
// with the key named, nothing is imported, and its spool is gone.
func TestImportTotalSizeCap(t *testing.T) {
	dir := t.TempDir()
	cfg := importConfig(t, dir, "import_max_bytes = 4096")
	in := grantLines("big", 100) // ~20 KB
	_, _, err := cli(t, cfg, in, "grants", "import", "-")
	if err == nil || !strings.Contains(err.Error(), "nothing imported: the input is larger than daemon.import_max_bytes (4096 bytes)") {
		t.Fatalf("import over the cap: %v", err)
	}
	if s := spools(t, dir); len(s) != 0 {
		t.Errorf("spool files left behind: %v", s)
	}
	// Under the cap, the same command imports.
	out, _, err := cli(t, cfg, grantLines("small", 10), "grants", "import", "-")
	if err != nil || !strings.Contains(out, "imported 10 grants") {
		t.Fatalf("import under the cap: %v %q", err, out)
	}
	out, _, err = cli(t, cfg, "", "grants", "list", "--json")
	var gs []store.Grant
	if err != nil || json.Unmarshal([]byte(out), &gs) != nil || len(gs) != 10 {
		t.Fatalf("grants after the refused and the good import: %v, %d, want the 10 of the good one", err, len(gs))
	}
	if s := spools(t, dir); len(s) != 0 {
		t.Errorf("spool files left after a finished import: %v", s)
	}
	st := statusJSON(t, cfg)
	if len(st.Imports) != 0 {
		t.Errorf("status lists imports after a finished one: %+v", st.Imports)
	}
}

// statusJSON runs status --json in-process (it exits 1 when something needs
// action: that is not an error here).
func statusJSON(t *testing.T, cfg string) api.Status {
	t.Helper()
	out, errOut, _ := cli(t, cfg, "", "status", "--json")
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s%s", err, out, errOut)
	}
	return st
}

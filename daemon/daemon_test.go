package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/internal/testutil"
)

// TestLooseKeyFileRefused: the daemon refuses to start with a sealing key
// group or others may read (issue 13 item 7), naming the chmod, and leaves
// the database alone; at mode 0600 it starts.
func TestLooseKeyFileRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "")
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	d.Close() // the key file and the database now exist
	if err := os.Chmod(cfg.Secrets.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "secrets.key_file") || !strings.Contains(err.Error(), "chmod 600 "+cfg.Secrets.KeyFile) {
		t.Fatalf("Open with the key at mode 0644: %v; want a refusal naming chmod 600 %s", err, cfg.Secrets.KeyFile)
	}
	if err := os.Chmod(cfg.Secrets.KeyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err = Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open with the key at mode 0600: %v", err)
	}
	d.Close()
}

// TestLooseSecretFilesWarnedAtStart: the other secret files (here a client
// secret file at 0644 and an API token file at 0600) are not refused, but
// each loose one is named once at start.
func TestLooseSecretFilesWarnedAtStart(t *testing.T) {
	dir := t.TempDir()
	sb := testutil.Sandbox(t)
	loose := filepath.Join(dir, "client-secret")
	tight := filepath.Join(dir, "api-token")
	os.WriteFile(loose, []byte("test-client-secret"), 0o644)
	os.WriteFile(tight, []byte("an-api-token-of-some-length"), 0o600)
	provider := strings.Replace(sandboxProvider("acme", "", sb), `client_secret = "test-client-secret-DO-NOT-LOG"`, `client_secret_file = "client-secret"`, 1)
	cfg := testConfig(t, dir, provider)
	cfg.Daemon.APITokenFile = tight
	logs := &testutil.LogBuffer{}
	td := startDaemon(t, cfg, logs, nil)
	td.stop()
	var warned []string
	for _, l := range logs.Lines(t) {
		if l["msg"] == "secret file is open to other users" {
			if l["level"] != "WARN" {
				t.Errorf("logged at %v, want WARN", l["level"])
			}
			warned = append(warned, l["key"].(string))
			if !strings.Contains(l["err"].(string), "chmod 600 "+loose) {
				t.Errorf("the warning does not name the fix: %v", l["err"])
			}
		}
	}
	if len(warned) != 1 || warned[0] != "providers.acme.client_secret_file" {
		t.Errorf("warned for %v, want providers.acme.client_secret_file only", warned)
	}
}

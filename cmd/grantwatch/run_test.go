package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/internal/testutil"
)

// TestVersionOfReleaseBuild: the release build the README documents
// (-ldflags "-X …daemon.Version=…") makes version print that version, not
// "dev" (issue 12 item 15; the other sources are TestVersionOf's).
func TestVersionOfReleaseBuild(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "grantwatch")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/grantwatch/grantwatch/daemon.Version=v9.8.7-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if want := "grantwatch v9.8.7-test (" + runtime.Version() + ")\n"; err != nil || string(out) != want {
		t.Errorf("version: %v %q, want %q", err, out, want)
	}
}

// TestRunWarnsWithoutProviders: a daemon started with no [[providers]]
// says so at WARN rather than idle silently (issue 12 item 15).
func TestRunWarnsWithoutProviders(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "grantwatch.toml")
	os.WriteFile(cfg, []byte("[daemon]\ndb = \"gw.db\"\nlisten = \"\"\n[clock]\nservers = []\n[log]\nformat = \"json\"\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errw := &testutil.LogBuffer{}
	done := make(chan error, 1)
	go func() {
		root := newRoot(strings.NewReader(""), io.Discard, errw)
		root.SetArgs([]string{"--config", cfg, "run"})
		done <- root.ExecuteContext(ctx)
	}()
	waitUntil(t, func() bool { return strings.Contains(errw.String(), `"msg":"grantwatch started"`) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errw.String(), `"level":"WARN","msg":"no providers configured: nothing will be probed"`) {
		t.Errorf("no warning about zero providers:\n%s", errw.String())
	}
}

package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
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

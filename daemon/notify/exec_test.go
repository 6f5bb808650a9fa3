package notify

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// An exec receiver's command sees PATH and LANG, never the daemon's
// environment: under systemd CREDENTIALS_DIRECTORY points at the sealing key
// and the client secrets, and any other variable may hold a secret.
func TestExecEnvironment(t *testing.T) {
	const sentinel = "GRANTWATCH_TEST_SENTINEL"
	t.Setenv(sentinel, "s3ntinel-value")
	t.Setenv("CREDENTIALS_DIRECTORY", "/run/credentials/grantwatch.service")
	t.Setenv("LANG", "C.UTF-8")
	dir := t.TempDir()
	script := filepath.Join(dir, "receiver.sh")
	out := filepath.Join(dir, "env.txt")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat >/dev/null\nenv > \"$1\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	c := Config{Name: "run", Type: KindExec, Command: []string{script, out}}
	if _, err := send(t, c, t0, revoked(1, "google")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if name == sentinel || name == "CREDENTIALS_DIRECTORY" || strings.Contains(kv, "s3ntinel-value") {
			t.Errorf("the command saw the daemon's %s", kv)
		}
	}
	if !slices.Contains(env, "PATH="+os.Getenv("PATH")) || !slices.Contains(env, "LANG=C.UTF-8") {
		t.Errorf("environment = %q, want the daemon's PATH and LANG", env)
	}
}

func TestExecEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"path and lang", map[string]string{"PATH": "/opt/bin:/usr/bin", "LANG": "de_DE.UTF-8", "HOME": "/root"},
			[]string{"PATH=/opt/bin:/usr/bin", "LANG=de_DE.UTF-8"}},
		// A daemon started with an empty environment still finds sh, curl.
		{"nothing set", nil, []string{"PATH=" + defaultPath}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := execEnv(func(k string) string { return tc.env[k] })
			if !slices.Equal(got, tc.want) {
				t.Errorf("execEnv = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestExec(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "stdin.json")
	c := Config{Name: "run", Type: KindExec, Command: []string{"/bin/sh", "-c", `cat > "$0"`, out}}
	if _, err := send(t, c, t0, revoked(1, "google")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if n := decodeNotification(t, b); n.ID != "n-1" || n.Events[0].ID != "ev-0001" {
		t.Errorf("stdin = %s", b)
	}
	c.Command = []string{"/bin/sh", "-c", `echo "hook refused: $0" >&2; exit 3`, "argument"}
	d, err := send(t, c, t0, revoked(1, "google"))
	var se *StatusError
	if !errors.As(err, &se) || d.Status != 3 || !d.Retry || d.Answer != "hook refused: argument" {
		t.Errorf("failing command = %+v, %v", d, err)
	}
	// The timeout must end the command: it would take a minute, and a
	// loaded machine gets 20 s to start and kill it.
	c.Command, c.Timeout = []string{"/bin/sleep", "60"}, 20*time.Millisecond
	begin := time.Now()
	if _, err := send(t, c, t0, revoked(1, "google")); !errors.Is(err, context.DeadlineExceeded) || time.Since(begin) > 20*time.Second {
		t.Errorf("timeout: err %v after %v", err, time.Since(begin))
	}
}

// FuzzExecPayload: whatever the events hold, the command's standard input
// is JSON that decodes to the Notification and encodes back to the same
// bytes, and the secrets of the daemon's environment stay out of the
// command's.
func FuzzExecPayload(f *testing.F) {
	planted := fuzzSecret()
	f.Setenv("GRANTWATCH_TEST_SENTINEL", planted)
	f.Setenv("CREDENTIALS_DIRECTORY", "/run/credentials/"+planted)
	dir := f.TempDir()
	script, payload, env := filepath.Join(dir, "receiver.sh"), filepath.Join(dir, "stdin.json"), filepath.Join(dir, "env")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat > \"$1\"\nexport -p > \"$2\"\n"), 0o700); err != nil {
		f.Fatal(err)
	}
	c := Config{Name: "run", Type: KindExec, Command: []string{script, payload, env}}
	c.ApplyDefaults()
	s, _, err := newSender(c, nil, time.Now)
	if err != nil {
		f.Fatal(err)
	}
	fuzzNotifications(f, func(t *testing.T, n Notification) {
		ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
		defer cancel()
		if _, err := s.Send(ctx, n); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(payload)
		if err != nil {
			t.Fatal(err)
		}
		checkNotificationJSON(t, b, n)
		if e, err := os.ReadFile(env); err != nil || strings.Contains(string(e), planted) {
			t.Errorf("the command's environment holds the daemon's secret (%v):\n%s", err, e)
		}
	})
}

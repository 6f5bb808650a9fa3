package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/grantwatch/grantwatch/daemon/doctor"
	"github.com/grantwatch/grantwatch/probes/sandbox"
)

// doctorTestConfig writes a config whose one provider's token endpoint is
// tokenURL; NTP is off so that the test needs no network.
func doctorTestConfig(t *testing.T, tokenURL string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "grantwatch.toml")
	toml := fmt.Sprintf(`
[daemon]
db = %q
listen = ""

[clock]
servers = []

[[providers]]
name = "p"
token_url = %q
client_id = "c"
client_secret = "cli-doctor-secret"
`, filepath.Join(dir, "gw.db"), tokenURL)
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runDoctorCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	root := newRoot(strings.NewReader(""), &out, &errw)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if strings.Contains(out.String()+errw.String(), "cli-doctor-secret") {
		t.Errorf("doctor output shows the client secret:\n%s", out.String())
	}
	return out.String(), err
}

func TestDoctorCommand(t *testing.T) {
	sb, err := sandbox.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("http://%s/token", ln.Addr())
	ln.Close()

	for _, tc := range []struct {
		name     string
		tokenURL string
		ok       bool
	}{
		// Warnings only (no daemon, no database yet, clock not checked): exit 0.
		{name: "reachable", tokenURL: sb.TokenURL(), ok: true},
		// The token endpoint refuses connections: a failed check, exit 1.
		{name: "unreachable", tokenURL: dead, ok: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := doctorTestConfig(t, tc.tokenURL)

			out, err := runDoctorCmd(t, "--config", cfg, "doctor", "--json", "--timeout", "2s")
			var ec exitCode
			switch {
			case tc.ok && err != nil:
				t.Fatalf("got error %v, want exit 0; output:\n%s", err, out)
			case !tc.ok && (!errors.As(err, &ec) || ec != 1):
				t.Fatalf("got error %v, want exitCode(1); output:\n%s", err, out)
			}
			var rep doctor.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("--json output is not a report: %v\n%s", err, out)
			}
			if rep.OK != tc.ok {
				t.Errorf("ok: got %v, want %v", rep.OK, tc.ok)
			}
			failed := false
			for _, c := range rep.Checks {
				if c.Name == "provider/p/tcp" && c.Status == doctor.CheckFail {
					failed = true
				}
			}
			if failed == tc.ok {
				t.Errorf("provider/p/tcp failed: %v, want %v\n%s", failed, !tc.ok, out)
			}

			// Human output: one line per check, fixes under warn and fail.
			out, err = runDoctorCmd(t, "--config", cfg, "doctor")
			if (err == nil) != tc.ok {
				t.Errorf("human output: got error %v, want ok %v", err, tc.ok)
			}
			for _, want := range []string{"[ ok ] config: ", "[warn] daemon: not running", "       fix: ", "check(s): "} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if !tc.ok && !strings.Contains(out, "[FAIL] provider/p/tcp: ") {
				t.Errorf("output lacks the failing check:\n%s", out)
			}
		})
	}
}

func TestDoctorCommandInvalidConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grantwatch.toml")
	if err := os.WriteFile(path, []byte("[daemon]\nworkers = -1\nbogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runDoctorCmd(t, "--config", path, "doctor")
	if err != exitCode(1) {
		t.Fatalf("got error %v, want exitCode(1)", err)
	}
	for _, want := range []string{"[FAIL] config: ", "daemon.workers", "daemon.bogus", "       fix: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestDoctorShowsReceiverDeliveries: with the daemon running, doctor shows
// a receiver that answers 500 as failing, with its last delivery error and
// its last success, and as ok once it delivers again; and the fix for an
// unreadable receiver file matches the error (issue 12 item 13).
func TestDoctorShowsReceiverDeliveries(t *testing.T) {
	var code atomic.Int32
	code.Store(500)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(code.Load()))
	}))
	defer hook.Close()
	s := newCLISetup(t, fmt.Sprintf(`
[[notify]]
name = "hook"
type = "webhook"
url = %q
`, hook.URL))
	_, stop := s.startDaemon(t)
	defer stop()
	receiver := func() doctor.Check {
		t.Helper()
		out, _ := runDoctorCmd(t, "--config", s.cfgPath, "doctor", "--json", "--timeout", "2s")
		var rep doctor.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, c := range rep.Checks {
			if c.Name == "notify/hook" {
				return c
			}
		}
		t.Fatalf("no notify/hook check:\n%s", out)
		return doctor.Check{}
	}
	if c := receiver(); c.Status != doctor.CheckOK || !strings.Contains(c.Detail, "nothing delivered since the daemon started") {
		t.Errorf("before any delivery: %+v", c)
	}
	if _, _, err := cli(t, s.cfgPath, "", "notify", "test", "hook"); exitStatus(err) != 1 {
		t.Fatalf("notify test of a receiver answering 500: %v", err)
	}
	c := receiver()
	if c.Status != doctor.CheckFail || !strings.Contains(c.Detail, "500") || !strings.Contains(c.Detail, "last delivery failed") || !strings.Contains(c.Detail, "last success never") || c.Fix == "" {
		t.Errorf("receiver answering 500: %+v", c)
	}
	code.Store(200)
	if _, _, err := cli(t, s.cfgPath, "", "notify", "test", "hook"); err != nil {
		t.Fatal(err)
	}
	if c := receiver(); c.Status != doctor.CheckOK || !strings.Contains(c.Detail, "last delivered") {
		t.Errorf("receiver delivering again: %+v", c)
	}

	// A receiver file that does not exist: create it, not "make it readable".
	cfg := doctorTestConfig(t, s.sb.TokenURL())
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, "[[notify]]\nname = \"f\"\ntype = \"webhook\"\nurl_file = \"/nonexistent/hook.url\"\n"...), 0o600)
	out, _ := runDoctorCmd(t, "--config", cfg, "doctor")
	if !strings.Contains(out, "fix: create /nonexistent/hook.url") || strings.Contains(out, "make /nonexistent/hook.url readable") {
		t.Errorf("fix for a missing url_file:\n%s", out)
	}
}

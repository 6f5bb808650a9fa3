package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/grantwatch/grantwatch/daemon"
	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// cli runs one grantwatch command in-process, as a user would type it.
func cli(t *testing.T, cfgPath, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	root := newRoot(strings.NewReader(stdin), &out, &errw)
	root.SetArgs(append([]string{"--config", cfgPath}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errw.String(), err
}

// cliSetup is a config for the sandbox and the grants it holds.
type cliSetup struct {
	sb      *sandbox.Server
	cfgPath string
	dir     string
	tokens  map[string]string
}

func newCLISetup(t *testing.T, extra string) *cliSetup {
	t.Helper()
	sb, err := sandbox.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`
[daemon]
db = "gw.db"
socket = "gw.sock"
listen = ""
tick = "@every 1s"
probe_timeout = "2s"
backoff_min = "50ms"
backoff_max = "1s"
[log]
format = "json"
[clock]
servers = []
[[providers]]
name = "acme"
preset = "google"
token_url = %q
client_id = "cid"
client_secret = "client-secret-never-printed"
interval = "1h"
`, sb.TokenURL()) + extra
	path := filepath.Join(dir, "grantwatch.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &cliSetup{sb: sb, cfgPath: path, dir: dir, tokens: map[string]string{}}
	var lines []string
	for i, b := range []sandbox.Behavior{sandbox.Healthy, sandbox.Healthy, sandbox.Revoked} {
		id := fmt.Sprintf("g%d", i)
		s.tokens[id] = sb.Issue(b)
		lines = append(lines, fmt.Sprintf(`{"id":%q,"provider":"acme","refresh_token":%q,"subject":"%s@example.com"}`, id, s.tokens[id], id))
	}
	out, _, err := cli(t, path, strings.Join(lines, "\n"), "grants", "import", "-")
	if err != nil || !strings.Contains(out, "imported 3 grants (3 new, 0 replaced)") {
		t.Fatalf("import: %v %q", err, out)
	}
	return s
}

// startDaemon runs the daemon in-process on the setup's config and socket.
func (s *cliSetup) startDaemon(t *testing.T) (*daemon.Daemon, func()) {
	t.Helper()
	cfg, err := config.Load(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Open(daemon.Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, func(*daemon.Daemon) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon: %v", err)
	}
	return d, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	}
}

// TestCLIWithAndWithoutDaemon runs the operator's commands against a running
// daemon (over its control socket) and against the database directly, and
// checks both give the right data.
func TestCLIWithAndWithoutDaemon(t *testing.T) {
	s := newCLISetup(t, "")
	for _, mode := range []string{"daemon", "local"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "daemon" {
				d, stop := s.startDaemon(t)
				defer stop()
				// The daemon probes the three due grants on its first tick.
				waitUntil(t, func() bool {
					st, err := d.Status()
					return err == nil && st.ByState["pending"] == 0
				})
			}
			// status: one grant needs reconnecting → exit 1, and it is listed.
			out, _, err := cli(t, s.cfgPath, "", "status", "--json")
			var ec exitCode
			if !errors.As(err, &ec) || ec != 1 {
				t.Fatalf("status exit: %v", err)
			}
			var st api.Status
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("status --json: %v\n%s", err, out)
			}
			if st.Daemon != (mode == "daemon") {
				t.Errorf("status.daemon = %v in %s mode", st.Daemon, mode)
			}
			if st.Grants != 3 || len(st.NeedsReconnect) != 1 || st.NeedsReconnect[0].ID != "g2" {
				t.Errorf("status: %d grants, needs reconnect %+v", st.Grants, st.NeedsReconnect)
			}
			human, _, _ := cli(t, s.cfgPath, "", "status")
			for _, line := range strings.Split(human, "\n") {
				if len(line) > 100 {
					t.Errorf("status line wider than 100 columns: %q", line)
				}
			}
			if !strings.Contains(human, "g2") || !strings.Contains(human, "invalid_grant") {
				t.Errorf("status does not show the grant to reconnect:\n%s", human)
			}

			// grants list --json, filtered.
			out, _, err = cli(t, s.cfgPath, "", "grants", "list", "--json", "--state", "reconnect_required")
			if err != nil {
				t.Fatal(err)
			}
			var list []map[string]any
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				t.Fatalf("list --json: %v\n%s", err, out)
			}
			if len(list) != 1 || list[0]["id"] != "g2" {
				t.Fatalf("list: %v", list)
			}
			for _, f := range []string{"id", "provider", "subject", "state", "cause", "action", "error", "error_description", "last_probe_at", "failures"} {
				if _, ok := list[0][f]; !ok {
					t.Errorf("grants list --json lacks field %q", f)
				}
			}

			// grants show with history.
			out, _, err = cli(t, s.cfgPath, "", "grants", "show", "g2", "--json")
			if err != nil {
				t.Fatal(err)
			}
			var detail api.GrantDetail
			if err := json.Unmarshal([]byte(out), &detail); err != nil || len(detail.History) == 0 {
				t.Fatalf("show: %v %+v", err, detail)
			}

			// grants probe: the dead one fails with exit 1 and the fix.
			out, _, err = cli(t, s.cfgPath, "", "grants", "probe", "g2")
			if !errors.As(err, &ec) || !strings.Contains(out, "reconnect") {
				t.Errorf("probe of a revoked grant: %v\n%s", err, out)
			}
			// A healthy one succeeds.
			if out, _, err := cli(t, s.cfgPath, "", "grants", "probe", "g0"); err != nil || !strings.Contains(out, "probe ok") {
				t.Errorf("probe g0: %v\n%s", err, out)
			}

			// set-token: the user reconnected; the grant recovers. Then
			// revoke it again for the next mode.
			newTok := s.sb.Issue(sandbox.Healthy)
			out, errOut, err := cli(t, s.cfgPath, newTok+"\n", "grants", "set-token", "g2")
			if err != nil || !strings.Contains(out, "probe ok") || !strings.Contains(out, "healthy") {
				t.Fatalf("set-token: %v\n%s%s", err, out, errOut)
			}
			if strings.Contains(out+errOut, newTok) {
				t.Fatal("set-token printed the token")
			}
			s.sb.Set(newTok, sandbox.Revoked)
			if _, _, err := cli(t, s.cfgPath, "", "grants", "probe", "g2"); err == nil {
				t.Fatal("probe after revoking: no failure")
			}

			// Unknown grant: one clear error.
			_, _, err = cli(t, s.cfgPath, "", "grants", "show", "nope")
			if err == nil || strings.Count(err.Error(), "not found") != 1 {
				t.Errorf("show of an unknown grant: %v", err)
			}
		})
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestImportRejectsBadInputAtomically: a bad line names its line number and
// field, and nothing is imported.
func TestImportRejectsBadInputAtomically(t *testing.T) {
	s := newCLISetup(t, "")
	in := `{"id":"n1","provider":"acme","refresh_token":"tok-A"}
{"id":"n2","provider":"gogle","refresh_token":"tok-B"}
{"id":"n3","provider":"acme"}
{"id":"n4","provider":"acme","refresh_token":"tok-SECRET","extra":1}
`
	_, _, err := cli(t, s.cfgPath, in, "grants", "import", "-")
	if err == nil {
		t.Fatal("bad input imported")
	}
	for _, want := range []string{"line 2: provider", "line 3: refresh_token", "line 4:", "nothing imported"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "tok-SECRET") {
		t.Error("import error quotes a token")
	}
	out, _, err := cli(t, s.cfgPath, "", "grants", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []store.Grant
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 3 {
		t.Fatalf("after a rejected import: %v, %d grants (want the 3 of the setup)", err, len(list))
	}
}

// TestMetricsAndGrantAPI scrapes the TCP listener: every series is there, no
// grant id is a label, the metrics pass the Prometheus linter; and the grant
// API refuses a missing or wrong bearer token.
func TestMetricsAndGrantAPI(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "api.token")
	if err := os.WriteFile(tokFile, []byte("api-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newCLISetup(t, "")
	b, _ := os.ReadFile(s.cfgPath)
	cfgText := strings.Replace(string(b), `listen = ""`, fmt.Sprintf("listen = \"127.0.0.1:0\"\napi_token_file = %q", tokFile), 1)
	os.WriteFile(s.cfgPath, []byte(cfgText), 0o600)
	d, stop := s.startDaemon(t)
	defer stop()
	addr := d.ListenAddr()
	if addr == "" {
		t.Fatal("no TCP listener address")
	}
	waitUntil(t, func() bool { st, err := d.Status(); return err == nil && st.ByState["pending"] == 0 })

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, series := range []string{
		`grantwatch_grants{provider="acme",state="healthy"} 2`,
		`grantwatch_probes_total{cause="none",provider="acme"}`,
		`grantwatch_probe_duration_seconds_bucket{provider="acme"`,
		"grantwatch_clock_skewed 0",
		"grantwatch_outbox_pending 0",
		"grantwatch_outbox_oldest_age_seconds 0",
		"grantwatch_last_tick_timestamp_seconds",
		"grantwatch_build_info{",
		`grantwatch_provider_healthy{provider="acme"} 1`,
	} {
		if !strings.Contains(text, series) {
			t.Errorf("metrics lack %s", series)
		}
	}
	for _, id := range []string{"g0", "g1", "g2", "example.com"} {
		if strings.Contains(text, `"`+id+`"`) || strings.Contains(text, id+"@") {
			t.Errorf("a grant id or subject (%s) is a metric label", id)
		}
	}
	problems, err := testutil.GatherAndLint(d.MetricsGatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %v", path, err, resp)
		}
		resp.Body.Close()
	}

	// The grant API wants the bearer token.
	for _, auth := range []string{"", "Bearer wrong-token-0123456789", "api-token-0123456789abcdef"} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/grants/g0", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET with Authorization %q: status %d, want 401", auth, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/grants/g0", nil)
	req.Header.Set("Authorization", "Bearer api-token-0123456789abcdef")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET with the right token: %v %v", err, resp)
	}
	resp.Body.Close()
	// The control API's other routes are not on TCP.
	req, _ = http.NewRequest("DELETE", "http://"+addr+"/v1/grants/g0", nil)
	req.Header.Set("Authorization", "Bearer api-token-0123456789abcdef")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Error("DELETE /v1/grants/{id} is served on TCP")
	}
	// An app stores a user's new token over HTTP.
	newTok := s.sb.Issue(sandbox.Healthy)
	req, _ = http.NewRequest("PUT", "http://"+addr+"/v1/grants/g2/refresh_token", strings.NewReader(`{"refresh_token":"`+newTok+`"}`))
	req.Header.Set("Authorization", "Bearer api-token-0123456789abcdef")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"state": "healthy"`) || strings.Contains(string(body), newTok) {
		t.Errorf("PUT refresh_token: %d %s", resp.StatusCode, body)
	}
}

// TestReadCommandsCreateNothing: with no daemon and no database, a read
// command says what to do and creates no file; a database whose key file
// is missing is refused without writing a new key.
func TestReadCommandsCreateNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "g.toml")
	os.WriteFile(cfg, []byte("[daemon]\ndb = \"gw.db\"\nlisten = \"\"\n[clock]\nservers = []\n[[providers]]\nname = \"acme\"\npreset = \"google\"\nclient_id = \"x\"\n"), 0o600)
	for _, args := range [][]string{{"status"}, {"grants", "list"}, {"grants", "show", "a"}} {
		_, _, err := cli(t, cfg, "", args...)
		if err == nil || !strings.Contains(err.Error(), "grants import") {
			t.Errorf("%v without a database: %v", args, err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("read commands created files: %v", ents)
	}
	// A failed first import leaves nothing behind either.
	if _, _, err := cli(t, cfg, `{"id":"a","provider":"nope","refresh_token":"t"}`, "grants", "import", "-"); err == nil {
		t.Fatal("a bad import succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("a failed import left files: %v", ents)
	}
	if _, _, err := cli(t, cfg, `{"id":"a","provider":"acme","refresh_token":"t"}`, "grants", "import", "-"); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "grantwatch.key")
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	_, _, err := cli(t, cfg, "", "status")
	if err == nil || !strings.Contains(err.Error(), "restore the key") {
		t.Errorf("status with the key missing: %v", err)
	}
	if _, err := os.Stat(key); err == nil {
		t.Error("a new key was written for an existing database")
	}
}

// TestSecretFileReadWhereNeeded: a client_secret_file that does not exist
// now (a systemd credential while the unit is stopped) does not keep the
// operator from reading the fleet; run refuses to start, and a probe of
// that provider says why.
func TestSecretFileReadWhereNeeded(t *testing.T) {
	s := newCLISetup(t, "")
	b, _ := os.ReadFile(s.cfgPath)
	missing := filepath.Join(s.dir, "creds", "acme.secret")
	cfgText := strings.Replace(string(b), `client_secret = "client-secret-never-printed"`, fmt.Sprintf("client_secret_file = %q", missing), 1)
	// A receiver's url_file is read by the daemon only (systemd/README.md).
	cfgText += fmt.Sprintf("[[notify]]\nname = \"hook\"\ntype = \"webhook\"\nurl_file = %q\n", filepath.Join(s.dir, "creds", "hook.url"))
	os.WriteFile(s.cfgPath, []byte(cfgText), 0o600)
	if _, _, err := cli(t, s.cfgPath, "", "grants", "list"); err != nil {
		t.Fatalf("grants list with the secret file absent: %v", err)
	}
	_, _, err := cli(t, s.cfgPath, "", "grants", "probe", "g0")
	if err == nil || !strings.Contains(err.Error(), "client_secret_file") {
		t.Errorf("probe without the secret: %v", err)
	}
	_, _, err = cli(t, s.cfgPath, "", "run")
	if err == nil || !strings.Contains(err.Error(), "providers.acme.client_secret_file") || !strings.Contains(err.Error(), "hook.url") {
		t.Errorf("run without the secret and the receiver's url_file: %v", err)
	}
}

// TestHungDaemonTimesOut: a control socket that accepts connections
// but never answers (a stopped or wedged daemon) makes the CLI fail with a
// clear error in bounded time, not hang forever.
func TestHungDaemonTimesOut(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "g.toml")
	os.WriteFile(cfg, []byte("[daemon]\ndb = \"gw.db\"\nsocket = \"gw.sock\"\nlisten = \"\"\n[clock]\nservers = []\n[[providers]]\nname = \"acme\"\npreset = \"google\"\nclient_id = \"x\"\n"), 0o600)
	ln, err := net.Listen("unix", filepath.Join(dir, "gw.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	done := make(chan error, 1)
	var out, errw bytes.Buffer
	go func() {
		root := newRoot(strings.NewReader(""), &out, &errw)
		root.SetArgs([]string{"--config", cfg, "status"})
		done <- root.ExecuteContext(context.Background()) // no deadline, like main
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "gw.sock") || !strings.Contains(err.Error(), "not answer") {
			t.Errorf("status against a hung daemon: %v", err)
		}
		// It could not tell: exit 2, not 1 ("needs action").
		if got := exitStatus(err); got != 2 {
			t.Errorf("status against a hung daemon: exit status %d, want 2", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("status hangs on a control socket that never answers")
	}
}

// TestCLIEscapesOutsideText: what came from outside — a grant's id, subject
// and labels, a provider's error and error_description, a receiver's
// answer — reaches the terminal with its control characters and bidi
// overrides shown as escapes, never as the sequences that clear, recolour
// or retitle it (issue 13 item 4, as kubectl did for CVE-2021-25743).
func TestCLIEscapesOutsideText(t *testing.T) {
	const hostile = "\x1b[2J\x1b[31m\x1b]0;pwned\a\u202e\r"
	// A tenant's own identity provider controls its error_description.
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": "gone" + hostile})
	}))
	defer provider.Close()
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "accepted"+hostile)
	}))
	defer receiver.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "grantwatch.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
[daemon]
db = "gw.db"
listen = ""
[clock]
servers = []
[[providers]]
name = "acme"
token_url = %q
client_id = "cid"
[[notify]]
name = "hook"
type = "webhook"
url = %q
`, provider.URL, receiver.URL)), 0o600)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// Grants stored before import refused such text (or by another tool).
	db, err := daemon.OpenStore(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	evil := "evil" + hostile
	_, _, err = db.Import([]store.NewGrant{
		{ID: evil, Provider: "acme", Subject: "ann" + hostile, Labels: map[string]string{"team" + hostile: "ops" + hostile}, RefreshToken: "tok-1"},
		{ID: "plain", Provider: "acme", Subject: "bob@example.com", RefreshToken: "tok-2"},
	}, time.Now(), store.ImportOptions{})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"grants", "probe", "plain"},
		{"grants", "probe", evil},
		{"grants", "list"},
		{"grants", "show", evil},
		{"grants", "show", "plain"},
		{"status"},
		{"notify", "test", "hook"},
		{"explain", "--status", "400"},
	} {
		in := ""
		if args[0] == "explain" {
			b, _ := json.Marshal(map[string]string{"error": "invalid_grant" + hostile, "error_description": "gone" + hostile})
			in = string(b)
		}
		out, errOut, _ := cli(t, cfgPath, in, args...)
		if strings.ContainsAny(out+errOut, "\x1b\a\r\u202e") {
			t.Errorf("%q prints control characters:\n%q", args, out+errOut)
		}
		if !strings.Contains(out, "^[[2J") {
			t.Errorf("%q does not show the escaped text:\n%q", args, out)
		}
	}
}

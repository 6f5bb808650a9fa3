package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// The helpers of the tests that run the built binary as a process and kill
// it (crash_test.go, cluster_test.go).

// hookRecorder is a webhook receiver that records every notification it is
// sent, redeliveries included.
type hookRecorder struct {
	srv *httptest.Server
	mu  sync.Mutex
	// deliveries counts deliveries per notification id.
	deliveries map[string]int
	// events maps event id → the event (the same id on a redelivery).
	events map[string]notify.Event
}

func newHookRecorder(t *testing.T) *hookRecorder {
	h := &hookRecorder{deliveries: map[string]int{}, events: map[string]notify.Event{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n notify.Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.deliveries[n.ID]++
		for _, e := range n.Events {
			h.events[e.ID] = e
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// eventIDs returns grant id → distinct ids of events of type typ.
func (h *hookRecorder) eventIDs(typ string) map[string][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := map[string][]string{}
	for id, e := range h.events {
		if e.Type == typ && e.Grant != nil {
			m[e.Grant.ID] = append(m[e.Grant.ID], id)
		}
	}
	return m
}

// runBin runs the grantwatch binary to completion with a timeout and returns
// stdout, stderr and the error.
func runBin(t *testing.T, bin, config string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--config", config}, args...)...)
	var out, errw bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), errw.String(), err
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("grantwatch %s: no exit within 30s\nstderr:\n%s", strings.Join(args, " "), errw.String())
		return "", "", nil
	}
}

// listGrants runs `grants list --json`: over the control socket while a
// daemon runs, from the database otherwise.
func listGrants(t *testing.T, bin, config string) (map[string]store.Grant, error) {
	t.Helper()
	out, errOut, err := runBin(t, bin, config, "grants", "list", "--json")
	if err != nil {
		return nil, fmt.Errorf("grants list: %w: %s", err, errOut)
	}
	var gs []store.Grant
	if err := json.Unmarshal([]byte(out), &gs); err != nil {
		return nil, fmt.Errorf("grants list output: %w", err)
	}
	m := map[string]store.Grant{}
	for _, g := range gs {
		m[g.ID] = g
	}
	return m, nil
}

// statusOf runs `status --json`; nil when its output is no status.
func statusOf(t *testing.T, bin, config string) *api.Status {
	out, _, _ := runBin(t, bin, config, "status", "--json") // exit 1 while grants need reconnecting
	var st api.Status
	if json.Unmarshal([]byte(out), &st) != nil {
		return nil
	}
	return &st
}

// tail returns at most the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// daemonLogs collects every run's output; the last 8 KiB are logged if the
// test fails.
func daemonLogs(t *testing.T) *testutil.LogBuffer {
	logs := &testutil.LogBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon logs (last 8 KiB):\n%s", tail([]byte(logs.String()), 8<<10))
		}
	})
	return logs
}

// slowSandbox starts the sandbox's token endpoint for client (its secret
// client+"-secret", as killConfig writes it), previous tokens honoured for grace after a rotation, and returns
// it with a token URL in front of it whose answers arrive 0–150 ms after the
// rotation, as over a real network: at any moment a few rotated tokens are
// in flight, so a kill lands between a rotation and its commit.
func slowSandbox(t *testing.T, client string, grace time.Duration) (*sandbox.Server, string) {
	sb := testutil.Sandbox(t)
	sb.SetClient(client, client+"-secret")
	sb.SetRotationGrace(grace)
	sbURL, err := url.Parse(sb.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(sbURL)
	proxy.ModifyResponse = func(*http.Response) error {
		time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
		return nil
	}
	proxy.ErrorLog = log.New(io.Discard, "", 0) // a killed daemon's requests end mid-way
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	return sb, front.URL + sandbox.TokenPath
}

// killConfig writes the config of a daemon in dir that probes every grant
// every second with 8 workers at tokenURL (the hydra preset, as client) and
// notifies hook; extra is appended (a [store], [secrets]).
func killConfig(t *testing.T, dir, client, tokenURL, hook string, probeTimeout time.Duration, extra string) string {
	t.Helper()
	config := filepath.Join(dir, "grantwatch.toml")
	toml := fmt.Sprintf(`
[daemon]
db = %q
socket = %q
listen = ""
tick = "@every 1s"
workers = 8
probe_timeout = %q
backoff_min = "200ms"
backoff_max = "1s"
shutdown_timeout = "5s"

[log]
level = "info"
format = "json"

[clock]
servers = []

[[providers]]
name = "hydra"
preset = "hydra"
token_url = %q
client_id = %q
client_secret = "%s-secret"
auth_style = "params"
interval = "1s"

[[notify]]
name = "hook"
type = "webhook"
url = %q
group_wait = "0s"
`, filepath.Join(dir, "gw.db"), filepath.Join(dir, "gw.sock"), probeTimeout, tokenURL, client, client, hook) + extra
	if err := os.WriteFile(config, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	return config
}

// grantSet is what a kill test imported: grant id → the behaviour of its
// chain (kind) and its chain's first token (first).
type grantSet struct {
	kind  map[string]sandbox.Behavior
	first map[string]string
}

// importGrants issues nRotate rotating grants (rot-NN) and nRevoked revoked
// ones (rev-NN) at sb and imports them with the binary, no daemon running.
func importGrants(t *testing.T, bin, config string, sb *sandbox.Server, nRotate, nRevoked int) grantSet {
	t.Helper()
	gs := grantSet{kind: map[string]sandbox.Behavior{}, first: map[string]string{}}
	var lines []string
	for i := range nRotate + nRevoked {
		b, id := sandbox.Rotate, fmt.Sprintf("rot-%02d", i)
		if i >= nRotate {
			b, id = sandbox.Revoked, fmt.Sprintf("rev-%02d", i-nRotate)
		}
		tok := sb.Issue(b)
		gs.first[id], gs.kind[id] = tok, b
		lines = append(lines, fmt.Sprintf(`{"id":%q,"provider":"hydra","refresh_token":%q}`, id, tok))
	}
	jsonl := filepath.Join(t.TempDir(), "grants.jsonl")
	if err := os.WriteFile(jsonl, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := runBin(t, bin, config, "grants", "import", jsonl); err != nil {
		t.Fatalf("grants import: %v\n%s", err, errOut)
	}
	return gs
}

// waitSettled waits up to within until, by config's daemon, every rotating
// grant was probed at or after from and is healthy, every revoked one
// needs reconnecting and the outbox is drained; false if they did not.
// None of watch may exit meanwhile.
func waitSettled(t *testing.T, bin, config string, gs grantSet, from time.Time, within time.Duration, watch ...*instance) bool {
	t.Helper()
	settled := func() bool {
		grants, err := listGrants(t, bin, config)
		if err != nil {
			return false // not serving yet
		}
		for id, g := range grants {
			switch gs.kind[id] {
			case sandbox.Rotate:
				if g.LastProbeAt.Before(from) || g.State != store.StateHealthy {
					return false
				}
			case sandbox.Revoked:
				if g.State != store.StateReconnectRequired {
					return false
				}
			}
		}
		st := statusOf(t, bin, config)
		return st != nil && st.Daemon && st.Outbox.Pending == 0
	}
	deadline := time.Now().Add(within)
	for !settled() {
		for _, in := range watch {
			select {
			case err := <-in.done:
				t.Fatalf("%s exited: %v", in.name, err)
			default:
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(300 * time.Millisecond)
	}
	return true
}

// checkOutcome checks, with no daemon running, that the sandbox saw no
// reuse of a rotated-away token, that every rotating grant is healthy and
// rotated and every revoked one needs reconnecting, and that hook got
// exactly one grant.reconnect_required event for each revoked grant and
// none for a rotating one.
func checkOutcome(t *testing.T, bin, config string, sb *sandbox.Server, hook *hookRecorder, want grantSet) {
	t.Helper()
	st := sb.Stats()
	t.Logf("sandbox: %d requests, %d rotations, %d previous tokens used within grace, %d reuses",
		st.Requests, st.Answers[sandbox.Rotate], st.GraceReused, st.Reused)
	if st.Reused != 0 {
		t.Errorf("the sandbox saw %d reuse(s) of rotated-away tokens: a token the daemon was given was lost (or presented twice)", st.Reused)
	}
	gs, err := listGrants(t, bin, config)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != len(want.kind) {
		t.Errorf("%d grants stored, want %d", len(gs), len(want.kind))
	}
	for id, b := range want.kind {
		g := gs[id]
		switch b {
		case sandbox.Rotate:
			if g.State != store.StateHealthy {
				t.Errorf("%s: %s (%s: %s), want healthy", id, g.State, g.Cause, g.ErrorDescription)
			}
			if sb.Current(want.first[id]) == want.first[id] {
				t.Errorf("%s: never rotated", id)
			}
		case sandbox.Revoked:
			if g.State != store.StateReconnectRequired {
				t.Errorf("%s: %s, want reconnect_required", id, g.State)
			}
		}
	}
	flagged := hook.eventIDs(notify.TypeReconnectRequired)
	for id, b := range want.kind {
		n := len(flagged[id])
		switch {
		case b == sandbox.Revoked && n != 1:
			t.Errorf("%s: %d distinct grant.reconnect_required events delivered, want exactly 1", id, n)
		case b == sandbox.Rotate && n != 0:
			t.Errorf("%s: %d grant.reconnect_required events for a rotating grant, want 0", id, n)
		}
	}
}

// instance is one grantwatch process (`run`), started again after each
// exit, as systemd's Restart= does.
type instance struct {
	name, config string
	mu           sync.Mutex
	cmd          *exec.Cmd
	done         chan error
	runs         int
}

func (in *instance) start(t *testing.T, bin string, logs io.Writer) {
	t.Helper()
	in.mu.Lock()
	defer in.mu.Unlock()
	cmd := exec.Command(bin, "--config", in.config, "run")
	fmt.Fprintf(logs, "--- %s run %d\n", in.name, in.runs)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	in.cmd, in.done = cmd, done
	in.runs++
}

// kill sends SIGKILL and returns how the process ended (an
// *exec.ExitError, unless it had exited with status 0 by itself).
func (in *instance) kill() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.cmd.Process.Signal(syscall.SIGKILL)
	return <-in.done
}

// stop sends SIGTERM and checks the process exits with status 0 within 20s.
func (in *instance) stop(t *testing.T) {
	t.Helper()
	in.mu.Lock()
	defer in.mu.Unlock()
	in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-in.done:
		if err != nil {
			t.Errorf("%s after SIGTERM: %v, want exit status 0", in.name, err)
		}
	case <-time.After(20 * time.Second):
		in.cmd.Process.Kill()
		<-in.done
		t.Errorf("%s: no exit within 20s of SIGTERM", in.name)
	}
}

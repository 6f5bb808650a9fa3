package main

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

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

// TestCrashSafety runs the built binary against the sandbox's rotating
// endpoint with reuse detection, SIGKILLs it at random moments 22 times,
// and checks that no rotated token was lost (no chain revoked, every
// rotating grant healthy) and that every notification was delivered, each
// event once by id.
//
// A SIGKILL between the provider's rotation and the daemon's commit loses
// the rotated token however carefully the daemon writes: the provider's
// answer existed only in the killed process. Providers offer a rotation
// grace period for this (Okta's grace period, Auth0's reuse interval); the
// sandbox gets one long enough for the lease to bring the grant back
// (2×probe_timeout + 10s), and within it the old token is presented again.
// Anything the daemon was given and acknowledged must never be lost: a
// chain revoked by reuse fails the test.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the daemon for about a minute")
	}
	const (
		nRotate      = 30
		nRevoked     = 5
		kills        = 22
		probeTimeout = time.Second
		// lease is the daemon's: a grant leased when the process died is
		// probed again after it.
		lease = 2*probeTimeout + 10*time.Second
		// grace covers the lease, the tick and a restart: Okta allows up
		// to 60s, Cognito 60s.
		grace = lease + 15*time.Second
	)
	bin := grantwatchBinary(t)

	sb, err := sandbox.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	sb.SetClient("crash-client", "crash-client-secret")
	sb.SetRotationGrace(grace)
	hook := newHookRecorder(t)

	// Answers reach the daemon 0–150 ms after the sandbox rotated, as over
	// a real network: at any moment a few rotated tokens are in flight,
	// so the kills land in the window between rotation and commit.
	sbURL, err := url.Parse(sb.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(sbURL)
	proxy.ModifyResponse = func(*http.Response) error {
		time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
		return nil
	}
	front := httptest.NewServer(proxy)
	defer front.Close()

	dir := t.TempDir()
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
client_id = "crash-client"
client_secret = "crash-client-secret"
auth_style = "params"
interval = "1s"

[[notify]]
name = "hook"
type = "webhook"
url = %q
group_wait = "0s"
`, filepath.Join(dir, "gw.db"), filepath.Join(dir, "gw.sock"), probeTimeout.String(), front.URL+sandbox.TokenPath, hook.srv.URL)
	if err := os.WriteFile(config, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}

	var lines []string
	first := map[string]string{} // grant id → first token of its chain
	kind := map[string]sandbox.Behavior{}
	for i := range nRotate + nRevoked {
		b, id := sandbox.Rotate, fmt.Sprintf("rot-%02d", i)
		if i >= nRotate {
			b, id = sandbox.Revoked, fmt.Sprintf("rev-%02d", i-nRotate)
		}
		tok := sb.Issue(b)
		first[id], kind[id] = tok, b
		lines = append(lines, fmt.Sprintf(`{"id":%q,"provider":"hydra","refresh_token":%q}`, id, tok))
	}
	jsonl := filepath.Join(dir, "grants.jsonl")
	if err := os.WriteFile(jsonl, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := runBin(t, bin, config, "grants", "import", jsonl); err != nil {
		t.Fatalf("grants import: %v\n%s", err, errOut)
	}

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	var logs bytes.Buffer // every run's stderr, shown on failure
	start := func(run int) (*exec.Cmd, chan error) {
		cmd := exec.Command(bin, "--config", config, "run")
		fmt.Fprintf(&logs, "--- run %d\n", run)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		return cmd, done
	}
	defer func() {
		if t.Failed() {
			t.Logf("daemon logs (last 8 KiB):\n%s", tail(logs.Bytes(), 8<<10))
		}
	}()

	for i := range kills {
		cmd, done := start(i)
		time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		if err := <-done; err == nil {
			t.Fatalf("run %d exited cleanly before its SIGKILL", i)
		}
	}

	// A clean run until every rotating grant was probed after it started,
	// every revoked grant was flagged, and the outbox is drained.
	finalStart := time.Now()
	cmd, done := start(kills)
	deadline := time.Now().Add(lease + 25*time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("daemon exited: %v", err)
		default:
		}
		ok := func() bool {
			gs, err := listGrants(t, bin, config)
			if err != nil {
				return false // not serving yet
			}
			for id, g := range gs {
				switch kind[id] {
				case sandbox.Rotate:
					if g.LastProbeAt.Before(finalStart) || g.State != store.StateHealthy {
						return false
					}
				case sandbox.Revoked:
					if g.State != store.StateReconnectRequired {
						return false
					}
				}
			}
			out, _, err := runBin(t, bin, config, "status", "--json")
			var st api.Status
			if json.Unmarshal([]byte(out), &st) != nil || !st.Daemon || st.Outbox.Pending != 0 {
				_ = err // status exits 1 while grants need reconnecting
				return false
			}
			return true
		}()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Error("grants did not settle after the last restart")
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("no exit within 15s of SIGTERM")
	}

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
	if len(gs) != nRotate+nRevoked {
		t.Errorf("%d grants stored, want %d", len(gs), nRotate+nRevoked)
	}
	for id, b := range kind {
		g := gs[id]
		switch b {
		case sandbox.Rotate:
			if g.State != store.StateHealthy {
				t.Errorf("%s: %s (%s: %s), want healthy", id, g.State, g.Cause, g.ErrorDescription)
			}
			if sb.Current(first[id]) == first[id] {
				t.Errorf("%s: never rotated", id)
			}
		case sandbox.Revoked:
			if g.State != store.StateReconnectRequired {
				t.Errorf("%s: %s, want reconnect_required", id, g.State)
			}
		}
	}

	flagged := hook.eventIDs(notify.TypeReconnectRequired)
	for id, b := range kind {
		n := len(flagged[id])
		switch {
		case b == sandbox.Revoked && n != 1:
			t.Errorf("%s: %d distinct grant.reconnect_required events delivered, want exactly 1", id, n)
		case b == sandbox.Rotate && n != 0:
			t.Errorf("%s: %d grant.reconnect_required events for a rotating grant, want 0", id, n)
		}
	}
	hook.mu.Lock()
	redelivered := 0
	for _, n := range hook.deliveries {
		if n > 1 {
			redelivered++
		}
	}
	t.Logf("webhook: %d notifications (%d redelivered), %d distinct events", len(hook.deliveries), redelivered, len(hook.events))
	hook.mu.Unlock()

	// Nothing left undelivered: the outbox is empty with the daemon down.
	out, _, _ := runBin(t, bin, config, "status", "--json")
	var final api.Status
	if err := json.Unmarshal([]byte(out), &final); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if final.Outbox.Pending != 0 {
		t.Errorf("outbox: %d notifications pending after a clean stop, want 0", final.Outbox.Pending)
	}
}

// tail returns at most the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

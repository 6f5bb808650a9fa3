package main

import (
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
	"github.com/grantwatch/grantwatch/internal/etcdtest"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// instance is one grantwatch process of a fleet, restarted whenever it
// exits, as systemd's Restart= does.
type instance struct {
	name, config string
	mu           sync.Mutex
	cmd          *exec.Cmd
	done         chan error
	runs         int
}

func (in *instance) start(t *testing.T, bin string, logs *testutil.LogBuffer) {
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

func (in *instance) kill() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.cmd.Process.Signal(syscall.SIGKILL)
	<-in.done
}

func (in *instance) stop(t *testing.T) {
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

// clusterOf reads an instance's view of the fleet (status --json).
func clusterOf(t *testing.T, bin, config string) *api.ClusterStatus {
	out, _, _ := runBin(t, bin, config, "status", "--json")
	var st api.Status
	if json.Unmarshal([]byte(out), &st) != nil || !st.Daemon {
		return nil
	}
	return st.Cluster
}

// TestClusterFailover runs two grantwatch processes on one embedded
// 3-member etcd cluster against the sandbox's rotating endpoint with reuse
// detection, SIGKILLs the leader mid-round several times (each restarted
// as a standby, as systemd would), and checks that the standby takes over
// within two lease TTLs, that no grant lost its token and none was
// presented twice (the sandbox counts reuses of rotated-away tokens), and
// that every transition reached the webhook.
//
// As in TestCrashSafety, a rotation whose answer existed only in the
// killed leader is lost with it; the sandbox's rotation grace (Okta's
// grace period, Auth0's reuse interval) lets the new leader present the
// previous token once more.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the leading daemon several times, about a minute")
	}
	const (
		// A round of 120 grants over 8 workers and answers of 0–150 ms
		// takes about a second: each kill lands mid-round.
		nRotate      = 120
		nRevoked     = 5
		kills        = 4
		probeTimeout = time.Second
		leaseTTL     = 3 * time.Second
		grace        = 2*leaseTTL + 2*probeTimeout + 20*time.Second
	)
	bin := grantwatchBinary(t)
	ec := etcdtest.Start(t, 3, etcdtest.Options{})
	sb, err := sandbox.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	sb.SetClient("fleet-client", "fleet-client-secret")
	sb.SetRotationGrace(grace)
	hook := newHookRecorder(t)
	// Answers arrive 0–150 ms after the rotation, as over a network: kills
	// land between a rotation and its commit.
	sbURL, _ := url.Parse(sb.URL())
	proxy := httputil.NewSingleHostReverseProxy(sbURL)
	proxy.ModifyResponse = func(*http.Response) error {
		time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
		return nil
	}
	proxy.ErrorLog = log.New(io.Discard, "", 0) // a killed daemon's requests end mid-way
	front := httptest.NewServer(proxy)
	defer front.Close()

	shared := t.TempDir()
	var ins []*instance
	for _, name := range []string{"a", "b"} {
		dir := filepath.Join(shared, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
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
shutdown_timeout = "3s"

[secrets]
key_file = %q

[store]
backend = "etcd"
endpoints = ["%s"]
prefix = "/fleet/"
lease_ttl = %q
name = %q

[log]
level = "info"
format = "json"

[clock]
servers = []

[[providers]]
name = "hydra"
preset = "hydra"
token_url = %q
client_id = "fleet-client"
client_secret = "fleet-client-secret"
auth_style = "params"
interval = "1s"

[[notify]]
name = "hook"
type = "webhook"
url = %q
group_wait = "0s"
`, filepath.Join(dir, "gw.db"), filepath.Join(dir, "gw.sock"), probeTimeout, filepath.Join(shared, "grantwatch.key"),
			strings.Join(ec.Endpoints, `", "`), leaseTTL, name, front.URL+sandbox.TokenPath, hook.srv.URL)
		if err := os.WriteFile(config, []byte(toml), 0o600); err != nil {
			t.Fatal(err)
		}
		ins = append(ins, &instance{name: name, config: config})
	}

	var lines []string
	first := map[string]string{}
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
	jsonl := filepath.Join(shared, "grants.jsonl")
	if err := os.WriteFile(jsonl, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No daemon runs yet: the CLI writes to etcd itself.
	if _, errOut, err := runBin(t, bin, ins[0].config, "grants", "import", jsonl); err != nil {
		t.Fatalf("grants import: %v\n%s", err, errOut)
	}

	var logs testutil.LogBuffer
	defer func() {
		if t.Failed() {
			t.Logf("daemon logs (last 8 KiB):\n%s", tail([]byte(logs.String()), 8<<10))
		}
	}()
	for _, in := range ins {
		in.start(t, bin, &logs)
	}
	byName := map[string]*instance{"a": ins[0], "b": ins[1]}
	// leaderNow is the instance that the running ones (all but down) agree
	// leads and that says it leads, once there is one.
	leaderNow := func(down *instance) *instance {
		var lead *instance
		for _, in := range ins {
			if in == down {
				continue
			}
			c := clusterOf(t, bin, in.config)
			if c == nil || c.Leader == "" || (lead != nil && byName[c.Leader] != lead) {
				return nil
			}
			lead = byName[c.Leader]
			if lead == in && c.Role != "leader" {
				return nil
			}
		}
		return lead
	}
	waitLeader := func(not *instance, within time.Duration) (*instance, time.Duration) {
		start := time.Now()
		for time.Since(start) < within {
			if l := leaderNow(not); l != nil && l != not {
				return l, time.Since(start)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("no leader but %v within %s", not, within)
		return nil, 0
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	leader, _ := waitLeader(nil, 30*time.Second)
	var failovers []time.Duration
	for k := range kills {
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond) // mid-round: every grant is due every second
		killed := time.Now()
		leader.kill()
		next, _ := waitLeader(leader, 2*leaseTTL+5*time.Second)
		took := time.Since(killed)
		failovers = append(failovers, took)
		t.Logf("kill %d: %s killed, %s leads %s later", k, leader.name, next.name, took.Round(10*time.Millisecond))
		leader.start(t, bin, &logs)
		leader = next
	}
	for i, f := range failovers {
		if f > 2*leaseTTL+2*time.Second {
			t.Errorf("failover %d took %s, want within two lease TTLs (%s) and a status poll", i, f, 2*leaseTTL)
		}
	}

	// Settle: every rotating grant probed after the last kill and healthy,
	// every revoked one flagged, the outbox drained.
	settleFrom := time.Now()
	deadline := time.Now().Add(grace)
	for {
		ok := func() bool {
			gs, err := listGrants(t, bin, ins[0].config)
			if err != nil {
				return false
			}
			for id, g := range gs {
				switch kind[id] {
				case sandbox.Rotate:
					if g.LastProbeAt.Before(settleFrom) || g.State != store.StateHealthy {
						return false
					}
				case sandbox.Revoked:
					if g.State != store.StateReconnectRequired {
						return false
					}
				}
			}
			out, _, _ := runBin(t, bin, ins[0].config, "status", "--json")
			var st api.Status
			return json.Unmarshal([]byte(out), &st) == nil && st.Outbox.Pending == 0
		}()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Error("grants did not settle after the last kill")
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, in := range ins {
		in.stop(t)
	}

	st := sb.Stats()
	t.Logf("sandbox: %d requests, %d rotations, %d previous tokens used within grace, %d reuses",
		st.Requests, st.Answers[sandbox.Rotate], st.GraceReused, st.Reused)
	if st.Reused != 0 {
		t.Errorf("the sandbox saw %d reuse(s) of rotated-away tokens: a token was lost or presented twice", st.Reused)
	}
	gs, err := listGrants(t, bin, ins[0].config)
	if err != nil {
		t.Fatal(err)
	}
	for id, b := range kind {
		g := gs[id]
		if b == sandbox.Rotate && (g.State != store.StateHealthy || sb.Current(first[id]) == first[id]) {
			t.Errorf("%s: %s (%s), want healthy and rotated", id, g.State, g.Cause)
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
}

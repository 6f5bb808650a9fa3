package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/internal/etcdtest"
)

// clusterOf reads an instance's view of the fleet (status --json).
func clusterOf(t *testing.T, bin, config string) *api.ClusterStatus {
	st := statusOf(t, bin, config)
	if st == nil || !st.Daemon {
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
	sb, tokenURL := slowSandbox(t, "fleet-client", grace)
	hook := newHookRecorder(t)
	shared := t.TempDir()
	var ins []*instance
	for _, name := range []string{"a", "b"} {
		dir := filepath.Join(shared, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		config := killConfig(t, dir, "fleet-client", tokenURL, hook.srv.URL, probeTimeout, fmt.Sprintf("\n[secrets]\nkey_file = %q\n", filepath.Join(shared, "grantwatch.key"))+
			etcdtest.StoreConfig(ec.Endpoints, "/fleet/", name, leaseTTL))
		ins = append(ins, &instance{name: name, config: config})
	}
	// No daemon runs yet: the CLI writes to etcd itself.
	grants := importGrants(t, bin, ins[0].config, sb, nRotate, nRevoked)

	logs := daemonLogs(t)
	for _, in := range ins {
		in.start(t, bin, logs)
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
		leader.start(t, bin, logs)
		leader = next
	}
	for i, f := range failovers {
		if f > 2*leaseTTL+2*time.Second {
			t.Errorf("failover %d took %s, want within two lease TTLs (%s) and a status poll", i, f, 2*leaseTTL)
		}
	}

	// Settle: every rotating grant probed after the last kill and healthy,
	// every revoked one flagged, the outbox drained.
	if !waitSettled(t, bin, ins[0].config, grants, time.Now(), grace) {
		t.Error("grants did not settle after the last kill")
	}
	for _, in := range ins {
		in.stop(t)
	}
	checkOutcome(t, bin, ins[0].config, sb, hook, grants)
}

package main

import (
	"math/rand/v2"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

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
	sb, tokenURL := slowSandbox(t, "crash-client", grace)
	hook := newHookRecorder(t)
	config := killConfig(t, t.TempDir(), "crash-client", tokenURL, hook.srv.URL, probeTimeout, "")
	grants := importGrants(t, bin, config, sb, nRotate, nRevoked)

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	logs := daemonLogs(t)
	gw := &instance{name: "grantwatch", config: config}
	for i := range kills {
		gw.start(t, bin, logs)
		time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond)
		err := gw.kill()
		if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("run %d ended before its SIGKILL: %v", i, err)
		}
	}

	// A clean run until every rotating grant was probed after it started,
	// every revoked grant was flagged, and the outbox is drained.
	finalStart := time.Now()
	gw.start(t, bin, logs)
	if !waitSettled(t, bin, config, grants, finalStart, lease+25*time.Second, gw) {
		t.Error("grants did not settle after the last restart")
	}
	gw.stop(t)

	checkOutcome(t, bin, config, sb, hook, grants)
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
	final := statusOf(t, bin, config)
	if final == nil {
		t.Fatal("status --json: no status")
	}
	if final.Outbox.Pending != 0 {
		t.Errorf("outbox: %d notifications pending after a clean stop, want 0", final.Outbox.Pending)
	}
}

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemoNamesEveryStagedCause runs a shortened demo and checks that what
// on-call and the operator see names every cause and incident it staged.
func TestDemoNamesEveryStagedCause(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs for 16 s")
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // only stops a hung demo
	defer cancel()
	if err := runDemo(ctx, &out, 16*time.Second); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"cause invalid_grant",        // ann: Google's "Token has been expired or revoked."
		"cause password_changed",     // gus: AADSTS50173
		"cause expired",              // hal: AADSTS700082
		"cause interaction_required", // ivy: AADSTS50076
		"provider.outage: provider m365",
		"provider.ok: provider m365",
		"clock.skewed:",
		"clock.ok:",
		"grant.recovered: grant ann-gmail",
		"bob-gmail    google    invalid_grant", // held during the skew, flagged after
		"PROVIDER  STATE",                      // the status table
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// bob was refused while the clock was off: not flagged before the fix.
	// The fix is the operator's step, narrated right before it is made:
	// clock.ok is a notification of its own, and a probe of bob that ends
	// just as the daemon sees the good clock may be delivered before it.
	skew := strings.Index(text, "clock.skewed:")
	fixed := strings.Index(text, "▶ The operator fixes the clock")
	bob := strings.Index(text, "grant.reconnect_required: grant bob-gmail")
	if skew < 0 || fixed < skew || bob < fixed {
		t.Errorf("bob was flagged before the clock was fixed (skew at %d, fixed at %d, bob at %d)", skew, fixed, bob)
	}
	if strings.Count(text, "provider.outage:") != 1 {
		t.Errorf("the outage was announced %d times", strings.Count(text, "provider.outage:"))
	}
	if testing.Verbose() {
		t.Log(text)
	}
}

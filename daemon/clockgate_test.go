package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// clockSetup runs a daemon whose clock is checked against the sandbox NTP
// server every second, with 5 healthy grants and 5 "victims" whose
// behaviour the test switches.
type clockSetup struct {
	sb      *sandbox.Server
	ntp     *sandbox.NTPServer
	in      *inbox
	td      *testDaemon
	logs    *testutil.LogBuffer
	victims []string // tokens
}

func startClockSetup(t *testing.T, ntpDown bool) *clockSetup {
	t.Helper()
	sb := testutil.Sandbox(t)
	ntp := testutil.NTP(t)
	ntp.SetDown(ntpDown)
	in := newInbox(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, sandboxProvider("acme", "google", sb)+in.config())
	cfg.Clock.Servers = []string{ntp.Addr()}
	cfg.Clock.Schedule = "@every 1s"
	cs := &clockSetup{sb: sb, ntp: ntp, in: in, logs: &testutil.LogBuffer{}}
	var lines []string
	for i := range 10 {
		tok := sb.Issue(sandbox.Healthy)
		if i >= 5 {
			cs.victims = append(cs.victims, tok)
		}
		lines = append(lines, fmt.Sprintf(`{"id":"g%d","provider":"acme","refresh_token":%q}`, i, tok))
	}
	importLines(t, cfg, lines)
	cs.td = startDaemon(t, cfg, cs.logs, nil)
	testutil.WaitFor(t, 15*time.Second, "10 healthy grants", func() bool {
		return countStates(t, cs.td.d.DB())[store.StateHealthy] == 10
	})
	return cs
}

func (cs *clockSetup) setVictims(b sandbox.Behavior) {
	for _, tok := range cs.victims {
		cs.sb.Set(tok, b)
	}
}

// skewHoldsVerdicts: while the clock is skewed, grants whose tokens the
// provider refuses with invalid_grant are held, not flagged; when the clock
// is good again they are probed at once and take their real state.
func (cs *clockSetup) skewHoldsVerdicts(t *testing.T, fix func()) {
	t.Helper()
	d := cs.td.d
	testutil.WaitFor(t, 15*time.Second, "clock skewed", d.clock.Skewed)
	testutil.WaitFor(t, 5*time.Second, "clock.skewed notification", func() bool { return cs.in.count()[notify.TypeClockSkewed] == 1 })
	cs.setVictims(sandbox.Revoked)
	testutil.WaitFor(t, 15*time.Second, "5 grants on hold for clock_skew", func() bool {
		n := 0
		err := d.DB().EachInState(store.StateOnHold, "", func(g store.Grant) error {
			if g.Cause == "clock_skew" {
				n++
			}
			return nil
		})
		return err == nil && n == 5
	})
	if n := countStates(t, d.DB())[store.StateReconnectRequired]; n != 0 {
		t.Fatalf("%d grants reconnect_required while the clock is skewed", n)
	}
	st, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Clock.State != string(ClockSkewed) || !st.NeedsAction {
		t.Errorf("status clock %+v needs_action %v", st.Clock, st.NeedsAction)
	}

	cs.setVictims(sandbox.Healthy)
	fix()
	testutil.WaitFor(t, 15*time.Second, "clock.ok and every grant healthy again", func() bool {
		return cs.in.count()[notify.TypeClockOK] == 1 && countStates(t, d.DB())[store.StateHealthy] == 10
	})
	cs.td.stop()
	got := cs.in.count()
	if got[notify.TypeClockSkewed] != 1 || got[notify.TypeClockOK] != 1 || got[notify.TypeReconnectRequired] != 0 {
		t.Errorf("events %v, want one clock.skewed, one clock.ok, no grant.reconnect_required", got)
	}
	skewLines := 0
	for _, m := range cs.logs.Lines(t) {
		if m["level"] == "ERROR" {
			skewLines++
			if !strings.Contains(fmt.Sprint(m["msg"]), "clock") {
				t.Errorf("unexpected ERROR line: %v", m)
			}
		}
	}
	if skewLines != 1 {
		t.Errorf("%d ERROR lines, want exactly one (the clock's)", skewLines)
	}
}

func TestClockSkewByNTPHoldsVerdicts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for several seconds")
	}
	cs := startClockSetup(t, false)
	cs.ntp.SetOffset(5 * time.Minute)
	cs.skewHoldsVerdicts(t, func() { cs.ntp.SetOffset(0) })
}

func TestClockSkewByDateHeadersHoldsVerdicts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for several seconds")
	}
	cs := startClockSetup(t, true) // NTP unreachable: only the Date headers tell
	cs.sb.SetDateSkew(5 * time.Minute)
	cs.skewHoldsVerdicts(t, func() { cs.sb.SetDateSkew(0) })
	if st := cs.td.d.clock.Snapshot(); st.Source != ClockSourceDateHeader {
		t.Errorf("clock judged by %q, want date_header", st.Source)
	}
}

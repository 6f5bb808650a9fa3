package daemon

import (
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
)

// TestClockRestartWhileSkewedThenFixed: the daemon stopped while the skew
// was announced (meta says skewed) and the clock was fixed before the next
// start. The first check (unknown > ok) must announce the end once; a later
// skew must then be announced again.
func TestClockRestartWhileSkewedThenFixed(t *testing.T) {
	sb := startSandbox(t)
	ntp := startNTP(t)
	in := newInbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "google", sb)+in.config())
	cfg.Clock.Servers = []string{ntp.Addr()}
	cfg.Clock.Schedule = "@every 1s"

	db, err := OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutMeta(metaClockState, []byte(ClockSkewed)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	td := startDaemon(t, cfg, &logBuffer{}, nil)
	waitFor(t, 10*time.Second, "clock ok", func() bool { return td.d.clock.Snapshot().State == ClockOK })
	waitFor(t, 5*time.Second, "clock.ok notification after the restart", func() bool {
		return in.count()[notify.TypeClockOK] == 1
	})
	ntp.SetOffset(5 * time.Minute)
	waitFor(t, 10*time.Second, "clock skewed", td.d.clock.Skewed)
	waitFor(t, 5*time.Second, "clock.skewed notification for the new skew", func() bool {
		return in.count()[notify.TypeClockSkewed] == 1
	})
	td.stop()
}

// TestClockSkewedEventIDPerEpisode: with NTP off (or between two checks), two
// skew episodes told by Date headers share CheckedAt. Their clock.skewed
// events must still have distinct IDs: receivers dedupe on the id.
func TestClockSkewedEventIDPerEpisode(t *testing.T) {
	r := newClockRig(t, config.ClockConfig{Servers: []string{}})
	var ids []string
	d := &Daemon{now: r.now.now}
	r.clock.OnChange(func(_, to ClockSnapshot) {
		if to.State == ClockSkewed {
			ids = append(ids, d.clockEvent(to).ID)
		}
	})
	r.observe("a", 5*time.Minute, 3)
	r.now.advance(clockDateMaxAge + time.Minute) // the samples expire
	r.observe("a", 0, 3)
	r.now.advance(clockDateMaxAge + time.Minute)
	r.observe("a", 5*time.Minute, 3)
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Errorf("clock.skewed event ids %v, want two distinct", ids)
	}
}

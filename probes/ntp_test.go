package probes_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/beevik/ntp"

	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
)

func startNTP(t *testing.T, offset time.Duration) *sandbox.NTPServer {
	t.Helper()
	s, err := sandbox.StartNTP()
	if err != nil {
		t.Fatalf("StartNTP: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetOffset(offset)
	return s
}

func queryClock(t *testing.T, timeout time.Duration, servers ...string) probes.ClockReading {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	return probes.QueryClock(ctx, servers)
}

func near(got, want, tol time.Duration) bool {
	d := got - want
	return d >= -tol && d <= tol
}

// offsetTol is how far a sample's offset may be from the truth: half its
// round trip (the asymmetry NTP cannot see; a loaded machine's scheduling
// delays make it large), plus a millisecond for the clock reads.
func offsetTol(smps ...probes.ClockSample) time.Duration {
	var rtt time.Duration
	for _, s := range smps {
		rtt = max(rtt, s.RTT)
	}
	return rtt/2 + time.Millisecond
}

func TestQueryClockOffset(t *testing.T) {
	tests := []struct {
		name   string
		server time.Duration // the sandbox's clock minus ours
		want   time.Duration // our clock minus the server's
	}{
		{"in sync", 0, 0},
		// The server is 5 minutes ahead: our clock is 5 minutes behind.
		{"server ahead 5m", 5 * time.Minute, -5 * time.Minute},
		// The server is 5 minutes behind: our clock is 5 minutes ahead.
		{"server behind 5m", -5 * time.Minute, 5 * time.Minute},
		{"half a second", 500 * time.Millisecond, -500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startNTP(t, tt.server)
			r := queryClock(t, 2*time.Second, s.Addr())
			if !r.OK || r.Servers != 1 || len(r.Samples) != 1 {
				t.Fatalf("reading %+v, want OK with 1 server", r)
			}
			smp := r.Samples[0]
			if tol := offsetTol(smp); !near(r.Offset, tt.want, tol) {
				t.Errorf("Offset = %v, want %v ± %v (half the round trip)", r.Offset, tt.want, tol)
			}
			if smp.Err != nil || smp.Server != s.Addr() || smp.Offset != r.Offset {
				t.Errorf("sample %+v, want server %s, no error, offset %v", smp, s.Addr(), r.Offset)
			}
			// Within the query's timeout: a round trip computed from the
			// server's shifted clock would be minutes off.
			if smp.RTT <= 0 || smp.RTT > 2*time.Second {
				t.Errorf("RTT = %v, want a positive loopback round trip within the timeout", smp.RTT)
			}
		})
	}
}

// TestQueryClockMedian: three servers, one wildly wrong; the median ignores
// it. Servers that fail do not count.
func TestQueryClockMedian(t *testing.T) {
	a := startNTP(t, 0)
	b := startNTP(t, 2*time.Second)
	c := startNTP(t, 10*time.Minute)
	down := startNTP(t, 0)
	down.SetDown(true)
	kod := startNTP(t, 0)
	kod.SetFault(sandbox.NTPKissOfDeath)

	r := queryClock(t, 300*time.Millisecond, a.Addr(), b.Addr(), c.Addr(), down.Addr(), kod.Addr())
	if !r.OK || r.Servers != 3 || len(r.Samples) != 5 {
		t.Fatalf("OK %v, Servers %d, %d samples; want true, 3, 5", r.OK, r.Servers, len(r.Samples))
	}
	if tol := offsetTol(r.Samples[1]); !near(r.Offset, -2*time.Second, tol) {
		t.Errorf("Offset = %v, want -2s ± %v (the median)", r.Offset, tol)
	}
	for i, want := range []string{a.Addr(), b.Addr(), c.Addr(), down.Addr(), kod.Addr()} {
		if r.Samples[i].Server != want {
			t.Errorf("Samples[%d].Server = %s, want %s (input order)", i, r.Samples[i].Server, want)
		}
	}
	if r.Samples[3].Err == nil || r.Samples[4].Err == nil {
		t.Errorf("down and kiss-of-death samples have no error: %+v", r.Samples[3:])
	}
}

func TestQueryClockEvenMedian(t *testing.T) {
	a := startNTP(t, 0)
	b := startNTP(t, -2*time.Second)
	r := queryClock(t, 2*time.Second, a.Addr(), b.Addr())
	if tol := offsetTol(r.Samples...); !near(r.Offset, time.Second, tol) {
		t.Errorf("Offset = %v, want 1s ± %v (mean of the middle two)", r.Offset, tol)
	}
}

func TestQueryClockDown(t *testing.T) {
	s := startNTP(t, 0)
	s.SetDown(true)
	start := time.Now()
	r := queryClock(t, 100*time.Millisecond, s.Addr())
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v with a 100ms deadline", el)
	}
	if r.OK || r.Servers != 0 || r.Offset != 0 {
		t.Fatalf("reading %+v, want not OK", r)
	}
	if err := r.Samples[0].Err; !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a timeout", err)
	}
	if s.Queries() != 1 {
		t.Errorf("server saw %d queries, want 1", s.Queries())
	}
}

// TestQueryClockCancel: ntp has no context, but cancelling ctx (no
// deadline, so the per-query timeout is 5s) still returns promptly.
func TestQueryClockCancel(t *testing.T) {
	s := startNTP(t, 0)
	s.SetDown(true)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	r := probes.QueryClock(ctx, []string{s.Addr()})
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %v after cancel", el)
	}
	if err := r.Samples[0].Err; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestQueryClockExpiredContext(t *testing.T) {
	s := startNTP(t, 0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := probes.QueryClock(ctx, []string{s.Addr()})
	if r.OK || !errors.Is(r.Samples[0].Err, context.Canceled) {
		t.Errorf("reading %+v, want not OK with context.Canceled", r)
	}
	if s.Queries() != 0 {
		t.Errorf("server saw %d queries, want 0", s.Queries())
	}
}

// TestQueryClockValidates: answers failing Response.Validate are not
// trusted, whatever offset they carry.
func TestQueryClockValidates(t *testing.T) {
	tests := []struct {
		fault sandbox.NTPFault
		want  error
	}{
		{sandbox.NTPKissOfDeath, ntp.ErrKissOfDeath},
		{sandbox.NTPUnsynchronized, ntp.ErrInvalidLeapSecond},
	}
	for _, tt := range tests {
		s := startNTP(t, 5*time.Minute)
		s.SetFault(tt.fault)
		r := queryClock(t, 2*time.Second, s.Addr())
		if r.OK || r.Servers != 0 || r.Offset != 0 {
			t.Errorf("fault %d: reading %+v, want not OK", tt.fault, r)
		}
		if err := r.Samples[0].Err; !errors.Is(err, tt.want) {
			t.Errorf("fault %d: err = %v, want %v", tt.fault, err, tt.want)
		}
	}
}

func TestQueryClockNoServers(t *testing.T) {
	r := probes.QueryClock(t.Context(), nil)
	if r.OK || r.Servers != 0 || len(r.Samples) != 0 {
		t.Errorf("reading %+v, want empty and not OK", r)
	}
}

func TestDateOffset(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		date    time.Time // the Date header
		sent    time.Time // by our clock
		latency time.Duration
		want    time.Duration
	}{
		// The provider stamped 12:00:00 at 12:00:00.5 on average; we sent
		// at 12:00:00.3 and it took 400ms, so we were at 12:00:00.5 too.
		{"in sync", base, base.Add(300 * time.Millisecond), 400 * time.Millisecond, 0},
		// Our clock reads 5 minutes later than the provider's: ahead.
		{"ahead 5m", base, base.Add(5*time.Minute + 300*time.Millisecond), 400 * time.Millisecond, 5 * time.Minute},
		{"behind 5m", base, base.Add(-5*time.Minute + 300*time.Millisecond), 400 * time.Millisecond, -5 * time.Minute},
		// A slow answer: half the round trip is taken off.
		{"slow answer", base, base.Add(-1500 * time.Millisecond), 4 * time.Second, 0},
		{"no latency", base, base, 0, -500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := probes.DateOffset(tt.date, tt.sent, tt.latency); got != tt.want {
				t.Errorf("DateOffset = %v, want %v", got, tt.want)
			}
		})
	}
}

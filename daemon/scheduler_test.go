package daemon

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
)

// offsetClock is the wall clock moved by an offset a test sets.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) now() time.Time           { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) advance(by time.Duration) { c.off.Add(int64(by)) }

// TestLongRoundKeepsSchedulerAlive: a first round over many grants behind
// a slow provider (rate 2/s) lasts far longer than the readiness bound;
// meanwhile the dispatch loop waits for busy workers. /readyz, status's
// last_tick_at and doctor must see a loop that is alive (issue 12 item 3),
// not a tick that froze when the round began.
func TestLongRoundKeepsSchedulerAlive(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for a few seconds")
	}
	sb := testutil.Sandbox(t)
	provider := strings.Replace(sandboxProvider("acme", "", sb), `interval = "1s"`, `interval = "1h"`, 1)
	cfg := testConfig(t, t.TempDir(), provider+"rate = 2.0\nconcurrency = 1\n")
	// More than the job queue holds (2 batches) plus a batch: the loop
	// blocks handing out the third batch, for ~25 minutes at 2/s.
	importGrants(t, cfg, sb, "acme", 3*leaseBatch+500, sandbox.Healthy)
	clk := &offsetClock{}
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, func(o *Options) {
		o.Now = clk.now
		o.Lease = 24 * time.Hour // the jump below must not end the leases
	})
	testutil.WaitFor(t, 10*time.Second, "the round to be under way", func() bool {
		return sb.Stats().Requests >= 2 && len(td.d.jobs) == cap(td.d.jobs)
	})
	if err := td.d.Ready(); err != nil {
		t.Fatalf("not ready at the start of the round: %v", err)
	}
	// Ten minutes into the round (the provider still has ~3000 grants to go).
	jump := clk.now().Add(10 * time.Minute)
	clk.advance(10 * time.Minute)
	testutil.WaitFor(t, 5*time.Second, "the loop to show it is alive", func() bool {
		st, err := td.d.Status()
		return err == nil && !st.LastTickAt.Before(jump) && td.d.Ready() == nil
	})
	if n := sb.Stats().Requests; n > 100 {
		t.Fatalf("%d probes: the round was not slow, the test proves nothing", n)
	}
}

// TestJobWithSupersededLeaseIsDropped: a job holds the token read when its
// grant was leased. Once that lease is no longer the job's (it ran out and
// the grant was leased again, or a stored result ended it), the token may
// be one the provider rotated away: the job is dropped, not probed.
func TestJobWithSupersededLeaseIsDropped(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "hydra", sb))
	importGrants(t, cfg, sb, "acme", 1, sandbox.Rotate)
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l, err := d.DB().GetLease("acme-0")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	first := now.Add(time.Minute)
	d.leases.take(l.Grant.Row, now, first)
	// The lease runs out and the grant is leased again.
	d.leases.take(l.Grant.Row, first, first.Add(time.Minute))
	ctx := context.Background()
	d.probeLease(ctx, ctx, job{l, first})
	if n := sb.Stats().Requests; n != 0 {
		t.Errorf("a job whose lease was taken again sent %d probe(s)", n)
	}
	// A result stored meanwhile ended the lease.
	second := now.Add(time.Hour)
	d.leases.end(l.Grant.Row)
	d.probeLease(ctx, ctx, job{l, second})
	if n := sb.Stats().Requests; n != 0 {
		t.Errorf("a job whose lease was ended sent %d probe(s)", n)
	}
	// Its own lease: probed.
	d.leases.take(l.Grant.Row, now, second)
	d.probeLease(ctx, ctx, job{l, second})
	if n := sb.Stats().Requests; n != 1 {
		t.Errorf("a job on its own lease sent %d probe(s), want 1", n)
	}
}

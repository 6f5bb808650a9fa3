package daemon

// The scheduler: due scans hand leased grants to the workers, which probe
// them within the provider's limits.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
	"github.com/lmittmann/tint"
)

// Kick asks for a due scan now (the cron tick, a released hold, a new token).
func (d *Daemon) Kick() {
	select {
	case d.kickCh <- struct{}{}:
	default:
	}
}

// beatEvery is how often the scheduler loop shows it is alive while it
// waits for busy workers: a round over a large fleet behind a slow
// provider lasts hours, and last_tick_at, /readyz, doctor and systemd's
// watchdog must see a loop that waits, not a loop that is stuck.
const beatEvery = time.Second

// dispatchLoop leases due grants and hands them to the workers until ctx is
// done. Leasing blocks on the job channel, so no more than a batch of grants
// is in memory however many are due.
func (d *Daemon) dispatchLoop(ctx context.Context) {
	batch := leaseBatch
	// The loop itself beats (last_tick_at, systemd's watchdog), never a
	// free-running timer, so a wedged loop shows as one. With systemd's
	// watchdog on, it beats at least at half its interval.
	every := beatEvery
	if w := sdWatchdogEvery(); w > 0 {
		every = min(every, w)
	}
	beat := time.NewTicker(every)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			// Idle between ticks: only the watchdog. last_tick_at moves
			// with the ticks, so a dead cron shows as a stale tick.
			sdWatchdog()
			continue
		case <-d.kickCh:
		}
		for ctx.Err() == nil {
			d.beat()
			if d.paused() {
				break // the store cannot write: the writer kicks when it can
			}
			if !d.leads() {
				break // a standby: the leader schedules
			}
			// Each grant handed out is leased, those whose token does not
			// open too: they are named once, not rescanned every pass.
			now := d.now()
			until := now.Add(d.lease)
			d.leases.beginScan()
			due, err := d.db.Due(now, batch, func(row uint64) bool { return d.leases.take(row, now, until) })
			d.leases.endScan()
			if err != nil {
				// Leases that did open are still returned and probed.
				d.logOnce("lease", slog.LevelError, "scan due grants", tint.Err(err))
				if len(due) == 0 {
					break
				}
			} else {
				d.warnedOnce.Delete("lease")
			}
			for _, l := range due {
			send:
				for {
					select {
					case d.jobs <- job{l, until}:
						break send
					case <-beat.C:
						d.beat() // waiting for busy workers is not wedged
					case <-ctx.Done():
						return
					}
				}
			}
			if len(due) < batch {
				break
			}
		}
	}
}

// beat records that the scheduler loop is alive: it scans, or waits for
// busy workers (last_tick_at, /readyz, doctor), and pets systemd's watchdog.
func (d *Daemon) beat() {
	d.lastTick.Store(d.now().UnixNano())
	sdWatchdog()
}

func (d *Daemon) worker(ctx, probeCtx context.Context) {
	for l := range d.jobs {
		if ctx.Err() != nil {
			continue // shutting down: the lease brings it back after a restart
		}
		d.probeLease(ctx, probeCtx, l)
	}
}

func (d *Daemon) provider(name string) *provider {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.providers[name]
}

// probeLease probes one leased grant and applies the result.
func (d *Daemon) probeLease(ctx, probeCtx context.Context, l job) {
	if d.paused() {
		// The store cannot write: a result could not be stored, and a
		// rotated token would be at risk. The grant stays due where it
		// is and comes back when its lease runs out. (Ending the lease
		// here could end a newer lease of the same grant, handed out
		// while this job waited, and let a third one present the token
		// the newer one rotates.)
		return
	}
	p := d.provider(l.Grant.Provider)
	if p == nil {
		d.logOnce("provider/"+l.Grant.Provider, slog.LevelWarn,
			"grants refer to a provider that is not configured; they wait until it is",
			"provider", l.Grant.Provider, "grant", l.Grant.ID)
		return // the lease brings it back; a reload that adds the provider probes it
	}
	if p.policy.Observe {
		d.unschedule(l) // its app refreshes it, never grantwatch
		return
	}
	// A lease that has waited (behind a slow provider's rate) until less
	// than a probe's time is left may be handed out again when it runs out:
	// probing on it could present the same token twice, which a rotating
	// provider punishes by revoking the chain. Such a lease is dropped,
	// before it takes a slot or a share of the rate, and the grant comes
	// back when the lease runs out.
	if next, ok := d.useDefers(l.Grant.ID, p.policy); ok {
		// Apps use the grant through the broker: each of their refreshes
		// is a probe, so a scheduled one waits its interval from that use.
		d.postpone(l, next)
		return
	}
	timeout := d.Config().Daemon.ProbeTimeout
	expired := func() bool { return d.now().Add(timeout).After(l.until) }
	if expired() {
		return
	}
	release, err := p.acquire(ctx)
	if err != nil {
		return
	}
	defer release()
	if expired() {
		return
	}
	if d.refreshAllowed() != nil {
		// Not leading, or too little lease left (etcd): nothing was sent,
		// so the grant may be handed out again at the next scan.
		d.leases.endIf(l.Grant.Row, l.until)
		return
	}
	// The provider's pause (429, outage) is checked last, right before the
	// request: a pause set while this worker waited for a slot counts.
	if wait := p.health.gate(d.now(), p.policy); wait > 0 {
		d.deferGrant(l.Grant, p, wait)
		return
	}
	if !d.claim(l.Grant.ID) {
		return // probed or stored right now; the lease brings it back
	}
	claimed := true // until the result, and the claim, pass to the writer
	defer func() {
		if claimed {
			d.unclaim(l.Grant.ID)
		}
	}()
	// The token this job holds was read when it was leased. If the lease
	// ran out while the job waited and the grant was handed out again, or
	// a result of the grant was stored since (grants probe, a probe on an
	// earlier lease), the lease is no longer this job's and the token may
	// be one the provider already rotated away: drop the job. A probe
	// holds its claim until its result is stored, so no job can present a
	// token its result replaces.
	if d.paused() || !d.leases.holds(l.Grant.Row, l.until) {
		return
	}
	res := d.refresh(probeCtx, p, l.Lease)
	if probeCtx.Err() != nil && !res.OK {
		// Cut off by our own shutdown: says nothing about the grant. The
		// lease brings it back after a restart.
		return
	}
	if !res.OK && d.provider(p.cfg.Name) != p {
		// The config was reloaded while the probe ran: its verdict is
		// about the old client, so probe again with the new one.
		d.requeue(l.Grant)
		return
	}
	claimed = false
	d.results <- result{leased: l.Grant, p: p, res: res, claimed: true}
}

// acquire waits for a slot of the provider's concurrency, then for its
// rate, until ctx is done: every refresh, scheduled or on demand, goes
// through it. It returns the function that gives the slot back, or ctx's
// error (a rate wait that would outlast ctx's deadline fails at once,
// spending nothing).
func (p *provider) acquire(ctx context.Context) (release func(), err error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := p.lim.Wait(ctx); err != nil {
		<-p.sem
		return nil, err
	}
	return func() { <-p.sem }, nil
}

// claim marks a grant as being probed, so that no second probe presents
// its token at the same time (a rotating provider would take it for reuse).
// It reports false when a probe of the grant is already running or its
// result is not stored yet: the claim passes with the result to the
// writer, which ends it once the result is stored (or held, if the store
// cannot write, until it is).
//
// The claim is a flight (tokens.go): token requests for the grant wait for
// it to end, and take the token its result stored.
func (d *Daemon) claim(id string) bool {
	_, busy := d.inflight.LoadOrStore(id, &flight{id: id, done: make(chan struct{})})
	return !busy
}

// unclaim ends the claim of id; whoever waits for its flight wakes.
func (d *Daemon) unclaim(id string) {
	if v, ok := d.inflight.LoadAndDelete(id); ok {
		close(v.(*flight).done)
	}
}

// flightOf is the claim of id held now, or nil.
func (d *Daemon) flightOf(id string) *flight {
	if v, ok := d.inflight.Load(id); ok {
		return v.(*flight)
	}
	return nil
}

// requeue makes a leased grant due now without changing anything else.
func (d *Daemon) requeue(leased store.Grant) {
	now := d.now()
	err := d.db.Apply(leased.ID, func(cur store.Grant) (store.Change, error) {
		if cur.TokenGen != leased.TokenGen {
			return store.Change{Skip: true}, nil
		}
		cur.NextDueAt = now
		return store.Change{Grant: cur}, nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		d.logOnce("requeue", slog.LevelError, "store requeued grant", tint.Err(err))
	} else {
		d.leases.end(leased.Row)
	}
	d.Kick()
}

// refresh refreshes the leased grant's token (the caller holds its claim)
// and returns the result for the caller to store: scheduled, on demand and
// through the broker (a canary, graced, sends its own).
func (d *Daemon) refresh(ctx context.Context, p *provider, l store.Lease) probes.Result {
	return d.graced(ctx, p, l, func() probes.Result { return d.refreshOnce(ctx, p, l.Token) })
}

// graced returns send's result (send presents l's token once).
//
// When the answer was lost (a timeout or reset after sending, a gateway's
// 502/504: a rotating provider may have issued a token that never arrived)
// and the provider's rotation grace is still open, the lost result is stored
// first (the grant remembers the lost answer, which explains a reuse verdict
// on the next one) and the same token is presented once more: within the
// grace the provider answers it with a new token instead of revoking the
// grant. This is the only retry of a refresh; the HTTP client never re-sends
// one (probes.NewHTTPClient).
func (d *Daemon) graced(ctx context.Context, p *provider, l store.Lease, send func() probes.Result) probes.Result {
	res := send()
	if !res.Lost || p.grace <= 0 || ctx.Err() != nil || !d.now().Before(res.Started.Add(p.grace)) {
		return res
	}
	if _, stale, err := d.record(l.Grant, p, res); err != nil || stale {
		return res // the lost answer is not on record, or the token was replaced meanwhile
	}
	d.log.Info("refresh answer lost within the provider's rotation grace: presenting the token once more",
		"grant", l.Grant.ID, "provider", p.cfg.Name, "cause", res.Cause, "rotation_grace", p.grace.String())
	return send()
}

// refreshOnce runs one probe and feeds the provider's health.
func (d *Daemon) refreshOnce(ctx context.Context, p *provider, tok secret.Secret) probes.Result {
	res := d.exchange(ctx, p, tok)
	d.healthChanged(p, p.health.observe(d.now(), res, p.policy))
	return res
}

// exchange sends one refresh request with the probe timeout and feeds the
// metrics and the clock checker.
func (d *Daemon) exchange(ctx context.Context, p *provider, tok secret.Secret) probes.Result {
	ctx, cancel := context.WithTimeout(ctx, d.Config().Daemon.ProbeTimeout)
	defer cancel()
	res := d.prober.Refresh(ctx, p.ep, tok)
	d.answered(p, res)
	return res
}

// answered feeds an answer of p's token endpoint, a probe's or one its app
// reported (observe mode), to the metrics and the clock (its Date header).
func (d *Daemon) answered(p *provider, res probes.Result) {
	d.metrics.observe(p.cfg.Name, res)
	if !res.Date.IsZero() {
		d.clock.ObserveDate(p.cfg.Name, res.Date, res.Started, res.Latency)
	}
}

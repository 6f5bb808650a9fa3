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

// dispatchLoop leases due grants and hands them to the workers until ctx is
// done. Leasing blocks on the job channel, so no more than a batch of grants
// is in memory however many are due.
func (d *Daemon) dispatchLoop(ctx context.Context) {
	batch := leaseBatch
	// With systemd's watchdog on, the loop also wakes at half its interval:
	// the loop itself pets the watchdog, so a wedged loop gets restarted.
	var petC <-chan time.Time
	if every := sdWatchdogEvery(); every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		petC = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-petC:
			sdWatchdog()
			continue
		case <-d.kickCh:
		}
		d.lastTick.Store(d.now().UnixNano())
		sdWatchdog()
		if !d.leads() {
			continue // a standby: the leader schedules
		}
		for ctx.Err() == nil {
			// Each grant handed out is leased, those whose token does not
			// open too: they are named once, not rescanned every pass.
			now := d.now()
			until := now.Add(d.lease)
			due, err := d.db.Due(now, batch, func(row uint64) bool { return d.leases.take(row, now, until) })
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
					case <-petC:
						sdWatchdog() // waiting for busy workers is not wedged
					case <-ctx.Done():
						return
					}
				}
			}
			select {
			case <-petC:
				sdWatchdog() // a round over a large fleet keeps the loop here
			default:
			}
			if len(due) < batch {
				break
			}
		}
	}
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
	p := d.provider(l.Grant.Provider)
	if p == nil {
		d.logOnce("provider/"+l.Grant.Provider, slog.LevelWarn,
			"grants refer to a provider that is not configured; they wait until it is",
			"provider", l.Grant.Provider, "grant", l.Grant.ID)
		return // the lease brings it back; a reload that adds the provider probes it
	}
	// A lease that has waited (behind a slow provider's rate) until less
	// than a probe's time is left may be handed out again when it runs out:
	// probing on it could present the same token twice, which a rotating
	// provider punishes by revoking the chain. Such a lease is dropped,
	// before it takes a slot or a share of the rate, and the grant comes
	// back when the lease runs out.
	timeout := d.Config().Daemon.ProbeTimeout
	expired := func() bool { return d.now().Add(timeout).After(l.until) }
	if expired() {
		return
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-p.sem }()
	if err := p.lim.Wait(ctx); err != nil || expired() {
		return
	}
	if d.refreshAllowed() != nil {
		return // not leading, or too little lease left: the lease brings it back
	}
	// The provider's pause (429, outage) is checked last, right before the
	// request: a pause set while this worker waited for a slot counts.
	if wait := p.health.gate(d.now(), p.policy); wait > 0 {
		d.deferGrant(l.Grant, p, wait)
		return
	}
	if !d.claim(l.Grant.ID) {
		p.health.release()
		return // `grants probe` has it now; the lease brings it back
	}
	defer d.unclaim(l.Grant.ID)
	if _, ok := d.rotated.LoadAndDelete(l.Grant.ID); ok {
		// `grants probe` rotated the token after this lease was taken.
		fresh, err := d.db.GetLease(l.Grant.ID)
		if err != nil {
			p.health.release()
			return
		}
		l.Token = fresh.Token
	}
	res := d.refresh(probeCtx, p, l.Token)
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
	d.results <- result{leased: l.Grant, p: p, res: res}
}

// claim marks a grant as being probed, so that no second probe presents
// its token at the same time (a rotating provider would take it for reuse).
// It reports false when a probe of the grant is already running.
func (d *Daemon) claim(id string) bool {
	_, busy := d.inflight.LoadOrStore(id, struct{}{})
	return !busy
}

func (d *Daemon) unclaim(id string) { d.inflight.Delete(id) }

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

// refresh runs one probe with the probe timeout and feeds the clock checker.
func (d *Daemon) refresh(ctx context.Context, p *provider, tok secret.Secret) probes.Result {
	ctx, cancel := context.WithTimeout(ctx, d.Config().Daemon.ProbeTimeout)
	defer cancel()
	res := d.prober.Refresh(ctx, p.ep, tok)
	d.metrics.observe(p.cfg.Name, res)
	if !res.Date.IsZero() {
		d.clock.ObserveDate(p.cfg.Name, res.Date, res.Started, res.Latency)
	}
	// A reload that left the provider's config alone keeps its health: a
	// change from a probe begun before it is still the provider's.
	if ch := p.health.observe(d.now(), res, p.policy); ch != nil {
		if cur := d.provider(p.cfg.Name); cur != nil && cur.health == p.health {
			d.onProviderChange(cur, ch)
		}
	}
	return res
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/lmittmann/tint"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// metaProvider keeps a provider's last announced state across restarts:
// the state, then a space and its cause when it has one ("outage
// server_error"), so that the provider.ok ending it names what it resolves.
func metaProvider(name string) string { return "provider.announced." + name }

// announced reads a metaProvider record; a missing one is ok.
func announced(b []byte) (state, cause string) {
	state, cause, _ = strings.Cut(string(b), " ")
	if state == "" {
		state = ProviderOK
	}
	return state, cause
}

// announcement is the metaProvider record of state and cause.
func announcement(state string, cause probes.Cause) []byte {
	if state == ProviderOK || cause == "" {
		return []byte(state)
	}
	return []byte(state + " " + string(cause))
}

// initHealth starts each provider's health at its last announced state, so
// that an incident announced before a restart is closed (provider.ok) once
// the provider answers, and is not announced twice. A canary re-checks such
// a provider at once: the database may be days old.
func (d *Daemon) initHealth() {
	for _, p := range d.providers {
		d.restoreHealth(p)
	}
}

func (d *Daemon) restoreHealth(p *provider) {
	b, err := d.db.GetMeta(metaProvider(p.cfg.Name))
	if err == nil && len(b) > 0 {
		state, _ := announced(b)
		p.health.restore(state, d.now(), p.policy)
	}
}

// carryHealth moves the providers' health across a reload: a provider
// whose config did not change keeps its health; a changed one starts where
// the old one was, to be re-checked at once by a canary of the new config;
// one added starts at its last announced state. The caller holds
// d.healthMu, so no change of the old health is lost in between.
func (d *Daemon) carryHealth(old, next map[string]*provider) {
	for name, np := range next {
		op, ok := old[name]
		switch {
		case !ok:
			d.restoreHealth(np)
		case reflect.DeepEqual(op.cfg, np.cfg) && reflect.DeepEqual(op.ep, np.ep):
			np.health = op.health
		default:
			op.health.handOver(np.health, np.policy)
		}
	}
	for name, op := range old {
		if _, ok := next[name]; !ok {
			op.health.retire()
		}
	}
}

// healthChanged settles a change of p's health (from observe or
// observeCanary). A probe begun before a reload replaced the provider's
// config judges nothing: its health is retired, and the reload settled
// what it handed over.
func (d *Daemon) healthChanged(p *provider, ch *healthChange) {
	if ch == nil {
		return
	}
	d.healthMu.Lock()
	defer d.healthMu.Unlock()
	if cur := d.provider(p.cfg.Name); cur != nil && cur.health == p.health {
		d.settle(cur)
	}
}

// settle makes what on-call last heard about a provider match its health:
// a state that differs from the last announced one is logged once and
// announced once through the outbox (the announced state is stored, so a
// restart neither repeats nor loses it), and the grants held for the
// provider's config are released once it is ok. It compares states rather
// than replaying changes, so changes that race a reload cannot leave the
// stored state wrong. The caller holds d.healthMu.
func (d *Daemon) settle(p *provider) {
	name := p.cfg.Name
	log := d.log.With("provider", name)
	state, cause, detail, _ := p.health.snapshot()
	b, _ := d.db.GetMeta(metaProvider(name))
	prev, prevCause := announced(b)
	if prev != state {
		ch := &healthChange{From: prev, FromCause: probes.Cause(prevCause), To: state, Cause: cause, Detail: detail}
		switch state {
		case ProviderOutage:
			log.Warn("provider outage: its grants are not judged one by one until it recovers",
				"cause", cause, "detail", detail)
		case ProviderMisconfigured:
			log.Error("provider misconfigured: its grants are on hold; fix the config and reload",
				"cause", cause, "detail", detail, "fix", cause.Fix())
		default:
			log.Info("provider ok", "was", prev)
		}
		if err := d.db.Enqueue(d.router.Entries(d.providerEvent(name, ch))...); err != nil {
			log.Error("queue provider notification", tint.Err(err))
		} else {
			d.disp.Kick()
		}
		if err := d.db.PutMeta(metaProvider(name), announcement(state, cause)); err != nil {
			log.Error("store provider state", tint.Err(err))
		}
	}
	if p.health.takeHeld() {
		n, err := d.db.Reschedule(d.now(), store.StateOnHold, name, "")
		if err != nil {
			log.Error("release held grants", tint.Err(err))
		} else if n > 0 {
			log.Info("held grants are probed again", "grants", n)
		}
		d.Kick()
	}
}

// deferGrant moves a due grant of a paused provider to a later time without
// probing it. A grant of a misconfigured provider is put on hold with the
// provider's cause.
func (d *Daemon) deferGrant(leased store.Grant, p *provider, wait time.Duration) {
	if cur := d.provider(p.cfg.Name); cur == nil || cur.health != p.health {
		// Leased under a config a reload has replaced since: the old
		// config's health must not hold it; the new one decides.
		d.requeue(leased)
		return
	}
	now := d.now()
	state, cause, _, _ := p.health.snapshot()
	// Spread the deferred grants over a tenth of the wait, so they do not
	// all come back in the same tick.
	at := now.Add(wait + time.Duration(phaseHash(leased.ID, uint64(now.Unix()))%uint64(wait/10+1)))
	var out Outcome
	err := d.db.Apply(leased.ID, func(cur store.Grant) (store.Change, error) {
		// A grant that turned reconnect_required since the lease (grants
		// probe) stays unscheduled until a new token is stored.
		if cur.TokenGen != leased.TokenGen || cur.State == store.StateReconnectRequired {
			return store.Change{Skip: true}, nil
		}
		out = Outcome{Grant: cur}
		// After a restart the cause is unknown until the canary answers: the
		// grant is only moved, not counted as a failure.
		if state == ProviderMisconfigured && cause.Action() == probes.ActionFixConfig {
			res := probes.Result{Cause: cause, Action: cause.Action(), Error: cur.Error}
			out = Transition(cur, res, Env{Now: now, Policy: p.policy})
		}
		out.Grant.NextDueAt = at
		return store.Change{Grant: out.Grant, History: out.History, Outbox: d.noticeEntries(out)}, nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		d.logOnce("defer", slog.LevelError, "store deferred grant", tint.Err(err))
	} else {
		d.leases.end(leased.Row)
	}
}

func (d *Daemon) providerEvent(name string, ch *healthChange) notify.Event {
	grants := 0
	if counts, err := d.db.Counts(); err == nil {
		for _, n := range counts[name] {
			grants += n
		}
	}
	now := d.now()
	ev := notify.Event{
		ID:         eventID("provider", name, ch.To, now),
		OccurredAt: now,
		Provider:   &notify.Provider{Name: name, State: ch.To, Cause: string(ch.Cause), Detail: ch.Detail, Grants: grants},
		// What it leaves: a resolving event (provider.ok) closes exactly
		// the incident that was open (Alertmanager's labels, PagerDuty's
		// dedup key, the router's resolution).
		PreviousState: ch.From,
		PreviousCause: string(ch.FromCause),
	}
	switch ch.To {
	case ProviderOutage:
		ev.Type = notify.TypeProviderOutage
		ev.Summary = fmt.Sprintf("provider %s is failing (%s): %d grants are not judged one by one", name, ch.Cause, grants)
		ev.Fix = ch.Cause.Fix()
	case ProviderMisconfigured:
		ev.Type = notify.TypeProviderMisconfigured
		ev.Summary = fmt.Sprintf("provider %s rejects grantwatch's client (%s): fix providers.%s.%s", name, ch.Cause, name, ch.Detail)
		ev.Fix = ch.Cause.Fix()
	default:
		ev.Type = notify.TypeProviderOK
		ev.Summary = fmt.Sprintf("provider %s works again (was %s)", name, ch.From)
	}
	return ev
}

// providerStates reports each configured provider's health. A standby
// judges no provider (it probes nothing): it reports what the leader last
// announced, as stored.
func (d *Daemon) providerStates() []api.ProviderStatus {
	d.mu.RLock()
	var out []api.ProviderStatus
	for _, name := range d.cfg.ProviderNames() {
		st, cause, _, _ := d.providers[name].health.snapshot()
		out = append(out, api.ProviderStatus{Name: name, State: st, Cause: string(cause)})
	}
	d.mu.RUnlock()
	if !d.leads() {
		// Read from the store outside d.mu: a slow etcd must not hold up
		// a reload.
		for i := range out {
			b, _ := d.db.GetMeta(metaProvider(out[i].Name))
			out[i].State, out[i].Cause = announced(b)
		}
	}
	return out
}

// canaryLoop runs the providers' canaries until ctx is done: one at a time
// per provider, when its health says one is due (health.canaryDue). It
// waits for the canaries in flight before it returns.
func (d *Daemon) canaryLoop(ctx, probeCtx context.Context) {
	// Poll at a tenth of the period: a canary is at most that late, and a
	// reload or a first failure needs no wake-up of its own.
	poll := min(max(d.Config().Health.CanaryPeriod/10, 10*time.Millisecond), time.Second)
	t := time.NewTicker(poll)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		d.mu.RLock()
		provs := d.providers
		d.mu.RUnlock()
		now := d.now()
		for _, p := range provs {
			if p.policy.Observe {
				continue // its app refreshes its grants, never grantwatch
			}
			if n, ok := p.health.canaryDue(now); ok {
				wg.Go(func() { d.canary(ctx, probeCtx, p, n) })
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// canary probes one grant of p for p's health, within p's concurrency and
// rate, and stores the result like any probe's (a rotated token
// included).
func (d *Daemon) canary(ctx, probeCtx context.Context, p *provider, n uint64) {
	if d.paused() {
		// The store cannot write: the result, and a rotated token, could
		// not be stored. The next canary comes when writes resume.
		p.health.skipCanary(d.now(), p.policy)
		return
	}
	l, ok := d.canaryLease(p.cfg.Name, n)
	if !ok {
		p.health.skipCanary(d.now(), p.policy)
		return
	}
	claimed := true // until the claim passes to the result (apply)
	defer func() {
		if claimed {
			d.unclaim(l.Grant.ID)
		}
	}()
	res, ok := d.canaryProbe(ctx, probeCtx, p, l)
	if !ok {
		p.health.skipCanary(d.now(), p.policy)
		return
	}
	d.healthChanged(p, p.health.observeCanary(d.now(), res, p.policy, l.Grant.State == store.StateHealthy))
	if !res.OK && d.provider(p.cfg.Name) != p {
		return // a reload replaced the config: the verdict is about the old client
	}
	// Storing the result ends the grant's lease: a scheduled job holding
	// the token just rotated away then finds its lease gone.
	claimed = false
	if _, _, err := d.apply(l.Grant, p, res); err != nil {
		d.logOnce("canary/"+l.Grant.ID, slog.LevelError, "store canary result", tint.Err(err), "grant", l.Grant.ID)
	}
}

// canaryProbe sends the canary's request once p has a slot and a share of
// its rate (provider.acquire, as every refresh); ok is false when it was
// not sent or our shutdown cut it off.
func (d *Daemon) canaryProbe(ctx, probeCtx context.Context, p *provider, l store.Lease) (probes.Result, bool) {
	release, err := p.acquire(ctx)
	if err != nil {
		return probes.Result{}, false
	}
	defer release()
	res := d.graced(probeCtx, p, l, func() probes.Result { return d.exchange(probeCtx, p, l.Token) })
	return res, res.OK || probeCtx.Err() == nil
}

// canaryChoice is how many grants a canary picks from: the n-th canary
// probes the n-th of them, so canaries spread over several grants.
const canaryChoice = 64

var errEnough = errors.New("enough")

// canaryLease picks and claims the grant a canary probes: one of the
// provider's healthy grants, whose failure speaks for the provider rather
// than for the grant, else a pending, degraded or held one. Never one that
// needs reconnecting: it is not probed until a new token is stored.
func (d *Daemon) canaryLease(provider string, n uint64) (store.Lease, bool) {
	for _, st := range []store.State{store.StateHealthy, store.StatePending, store.StateDegraded, store.StateOnHold} {
		var ids []string
		err := d.db.EachInState(st, provider, func(g store.Grant) error {
			ids = append(ids, g.ID)
			if len(ids) == canaryChoice {
				return errEnough
			}
			return nil
		})
		if err != nil && !errors.Is(err, errEnough) {
			d.logOnce("canary", slog.LevelError, "pick a canary grant", tint.Err(err), "provider", provider)
			return store.Lease{}, false
		}
		for i := range ids {
			id := ids[(n+uint64(i))%uint64(len(ids))]
			if !d.claim(id) {
				continue // being probed: its result counts anyway
			}
			if l, err := d.db.GetLease(id); err == nil {
				return l, true
			}
			d.unclaim(id)
		}
	}
	return store.Lease{}, false
}

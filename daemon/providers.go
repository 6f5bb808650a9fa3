package daemon

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"log/slog"

	"github.com/lmittmann/tint"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// metaProvider keeps a provider's last announced state across restarts.
func metaProvider(name string) string { return "provider.announced." + name }

// initHealth starts each provider's health at its last announced state, so
// that an incident announced before a restart is closed (provider.ok) once
// probes succeed, and is not announced twice.
func (d *Daemon) initHealth() {
	for name, p := range d.providers {
		b, err := d.db.GetMeta(metaProvider(name))
		if err != nil || len(b) == 0 {
			continue
		}
		if st := string(b); st == ProviderOutage || st == ProviderMisconfigured {
			p.health.state = st
		}
	}
}

// carryHealth keeps the health of providers whose config did not change
// across a reload; a changed provider starts over, and one that was
// misconfigured is released.
func (d *Daemon) carryHealth(old, next map[string]*provider) (released []string) {
	for name, np := range next {
		op, ok := old[name]
		if !ok {
			continue
		}
		if reflect.DeepEqual(op.cfg, np.cfg) && reflect.DeepEqual(op.ep, np.ep) {
			np.health = op.health
			continue
		}
		if ch := op.health.reset(d.now()); ch != nil {
			d.onProviderChange(np, ch)
			released = append(released, name)
		}
	}
	return released
}

// deferGrant moves a due grant of a paused provider to a later time without
// probing it. A grant of a misconfigured provider is put on hold with the
// provider's cause.
func (d *Daemon) deferGrant(leased store.Grant, p *provider, wait time.Duration) {
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

// onProviderChange logs a provider's state change once, announces it once
// through the outbox, and releases the grants held for it when it is ok.
func (d *Daemon) onProviderChange(p *provider, ch *healthChange) {
	name := p.cfg.Name
	log := d.log.With("provider", name)
	switch ch.To {
	case ProviderOutage:
		log.Warn("provider outage: its grants are not judged one by one until it recovers",
			"cause", ch.Cause, "detail", ch.Detail)
	case ProviderMisconfigured:
		log.Error("provider misconfigured: its grants are on hold; fix the config and reload",
			"cause", ch.Cause, "detail", ch.Detail, "fix", ch.Cause.Fix())
	default:
		log.Info("provider ok", "was", ch.From)
	}
	announced, _ := d.db.GetMeta(metaProvider(name))
	prev := string(announced)
	if prev == "" {
		prev = ProviderOK
	}
	if prev != ch.To {
		ev := d.providerEvent(name, ch)
		if err := d.db.Enqueue(d.router.Entries(ev)...); err != nil {
			log.Error("queue provider notification", tint.Err(err))
		} else {
			d.disp.Kick()
		}
		if err := d.db.PutMeta(metaProvider(name), []byte(ch.To)); err != nil {
			log.Error("store provider state", tint.Err(err))
		}
	}
	if ch.To == ProviderOK && ch.From == ProviderMisconfigured {
		n, err := d.db.Reschedule(d.now(), store.StateOnHold, name, "")
		if err != nil {
			log.Error("release held grants", tint.Err(err))
		} else if n > 0 {
			log.Info("held grants are probed again", "grants", n)
		}
		d.Kick()
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

// providerStates reports each configured provider's health.
func (d *Daemon) providerStates() []api.ProviderStatus {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []api.ProviderStatus
	for _, name := range d.cfg.ProviderNames() {
		st, cause, _, _ := d.providers[name].health.snapshot()
		out = append(out, api.ProviderStatus{Name: name, State: st, Cause: string(cause)})
	}
	return out
}

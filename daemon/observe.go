package daemon

// Observe mode: for a provider with mode = "observe" grantwatch never
// refreshes a grant; the app that keeps its own tokens reports each of its
// refreshes, and the report is judged and stored exactly like a probe's
// answer, and it counts for the provider's health as a canary does. A grant
// whose app stays silent for longer than the provider's interval is stale.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/lmittmann/tint"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// Observe judges an app's report of a refresh it made itself for a grant of
// a provider in observe mode, and stores the outcome as a probe's: the same
// classification (probes.Evaluate), transition, history, log line, event and
// clock evidence (the answer's Date header) as if grantwatch had sent the
// request and read the answer at the moment the report arrived.
func (d *Daemon) Observe(ctx context.Context, id string, obs api.Observation) (api.ProbeReport, error) {
	if obs.Status < 100 || obs.Status > 599 {
		return api.ProbeReport{}, api.Invalid(fmt.Errorf("status: want the HTTP status of the token endpoint's answer (100-599), not %d", obs.Status))
	}
	g, err := d.db.Get(id)
	if err != nil {
		return api.ProbeReport{}, err
	}
	p, err := d.observeProvider(g)
	if err != nil {
		return api.ProbeReport{}, err
	}
	res := observed(p.ep.Preset, obs, d.now())
	d.answered(p, res)
	// The app's reports are the provider's canaries: grantwatch sends
	// none in observe mode, and each report is an answer of the provider
	// now, as a canary's is. So transient failures reported for healthy
	// grants declare an outage as failed canaries would, and the grants'
	// own verdicts are held meanwhile instead of each turning degraded.
	d.healthChanged(p, p.health.observeCanary(d.now(), res, p.policy, g.State == store.StateHealthy))
	out, stale, err := d.record(g, p, res)
	if err != nil {
		return api.ProbeReport{}, err
	}
	return d.probeReport(id, out, stale, res)
}

// observeProvider is the provider of g when it is in observe mode.
func (d *Daemon) observeProvider(g store.Grant) (*provider, error) {
	p := d.provider(g.Provider)
	switch {
	case p == nil:
		return nil, api.Invalid(fmt.Errorf("grant %s: provider %q is not configured", g.ID, g.Provider))
	case !p.policy.Observe:
		return nil, api.Invalid(fmt.Errorf("grant %s: provider %s refreshes its grants itself (mode = %q); observations are for providers with mode = %q",
			g.ID, g.Provider, p.cfg.Mode, config.ModeObserve))
	}
	return p, nil
}

// errObserved refuses to refresh a grant of a provider in observe mode.
func errObserved(id, provider string) error {
	return api.Invalid(fmt.Errorf("grant %s: provider %s is in observe mode: grantwatch never refreshes its grants; "+
		"its app reports each refresh (POST /v1/grants/{id}/observations)", id, provider))
}

// observed is the result of an app's report, as a probe's answer arriving
// at now would be. A 2xx reported without its body (which would carry the
// app's tokens) is a success with nothing to read; any other report is read
// by probes.Evaluate, the one classifier.
func observed(preset string, obs api.Observation, now time.Time) probes.Result {
	h := make(http.Header, len(obs.Headers))
	for k, v := range obs.Headers {
		h.Set(k, v)
	}
	var res probes.Result
	if obs.Body == nil && obs.Status/100 == 2 {
		res = probes.Result{OK: true, Rule: "ok", Status: obs.Status, Date: probes.ParseAnswer(obs.Status, h, nil).Date}
	} else {
		var body []byte
		if obs.Body != nil {
			body = []byte(*obs.Body)
		}
		res = probes.Evaluate(preset, obs.Status, h, body)
	}
	res.Lost = probes.LostStatus(obs.Status)
	res.Started = now
	return res
}

// unschedule takes a leased grant of a provider in observe mode out of the
// due index instead of probing it (the provider was switched to observe
// mode, or a release made its held grants due).
func (d *Daemon) unschedule(j job) { d.postpone(j, time.Time{}) }

// stale reports whether g, a grant of a provider in observe mode with
// policy pol, has had no report for longer than the provider's interval:
// its state is old news. A reconnect_required grant is never stale: its
// state is the news, and its app has no token left to refresh with.
func stale(g store.Grant, pol Policy, now time.Time) bool {
	if !pol.Observe || g.State == store.StateReconnectRequired {
		return false
	}
	last := g.LastProbeAt
	if last.IsZero() {
		last = g.CreatedAt
	}
	return now.Sub(last) > pol.every(now)
}

// every is the time between two probes of a healthy grant: the interval, or
// the schedule's gap after now.
func (p Policy) every(now time.Time) time.Duration {
	if p.Schedule != nil {
		next := p.Schedule.Next(now)
		return p.Schedule.Next(next).Sub(next)
	}
	if p.Interval > 0 {
		return p.Interval
	}
	return config.DefaultInterval
}

// staleness marks stale grants as they are read: for each grant, the
// policy of its provider as it is now.
func (d *Daemon) staleness() func(*store.Grant) {
	d.mu.RLock()
	provs := d.providers
	d.mu.RUnlock()
	now := d.now()
	return func(g *store.Grant) {
		if p := provs[g.Provider]; p != nil {
			g.Stale = stale(*g, p.policy, now)
		}
	}
}

// staleStatus counts the stale grants of the providers in observe mode and
// lists the first statusListMax. Its cost is the number of those
// providers' grants that are not reconnect_required; the refreshing fleet
// is not read.
func (d *Daemon) staleStatus() (int, []store.Grant, error) {
	d.mu.RLock()
	provs := d.providers
	d.mu.RUnlock()
	mark := d.staleness()
	n, list := 0, []store.Grant{}
	for name, p := range provs {
		if !p.policy.Observe {
			continue
		}
		for _, st := range store.States() {
			if st == store.StateReconnectRequired {
				continue
			}
			err := d.db.EachInState(st, name, func(g store.Grant) error {
				if mark(&g); g.Stale {
					n++
					if len(list) < statusListMax {
						list = append(list, g)
					}
				}
				return nil
			})
			if err != nil {
				return 0, nil, err
			}
		}
	}
	return n, list, nil
}

// metaMode records a provider's mode across restarts, so that grants left
// unscheduled in observe mode are scheduled when it refreshes again.
func metaMode(name string) string { return "provider.mode." + name }

// syncModes schedules, now, the grants of each provider that was in observe
// mode when last seen and refreshes now (never, with their app's tokens,
// probed by grantwatch; those without a token turn reconnect_required at
// their first probe), and records each provider's mode.
func (d *Daemon) syncModes() {
	d.mu.RLock()
	provs := d.providers
	d.mu.RUnlock()
	for name, p := range provs {
		was, err := d.db.GetMeta(metaMode(name))
		if err != nil {
			d.logOnce("mode/"+name, slog.LevelError, "read provider mode", tint.Err(err), "provider", name)
			continue
		}
		mode := p.cfg.Mode
		if string(was) == mode {
			continue
		}
		if string(was) == config.ModeObserve {
			n := 0
			for _, st := range []store.State{store.StatePending, store.StateHealthy, store.StateDegraded, store.StateOnHold} {
				m, err := d.db.Reschedule(d.now(), st, name, "")
				if err != nil {
					d.log.Error("schedule the grants of a provider out of observe mode", tint.Err(err), "provider", name)
				}
				n += m
			}
			d.log.Info("provider left observe mode: its grants are probed", "provider", name, "grants", n)
		}
		if err := d.db.PutMeta(metaMode(name), []byte(mode)); err != nil {
			d.log.Error("store provider mode", tint.Err(err), "provider", name)
		}
	}
}

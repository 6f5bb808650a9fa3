package daemon

// The broker: apps fetch a grant's access token from the daemon, the one
// holder of its refresh token (api.Broker). A broker refresh is a probe:
// it takes the grant's claim, the provider's slot, rate and gate, goes
// through probes.Refresh and the writer's commit (the transition, a rotated
// token, history, notifications, the log line) exactly as a scheduled probe
// does, and a scheduled probe's token serves the broker in turn.
//
// Access tokens are kept in memory only, never in the store: a restart
// costs each grant one refresh, at the first request an app makes for it —
// at the apps' pace and within the provider's concurrency and rate, not all
// at once — and a copy of the database (or of its backups) holds no token
// that works without the provider.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/lmittmann/tint"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// tokenCache holds the access tokens of the grants apps fetch through the
// broker: an entry is made at a grant's first token request, so grants only
// probed on schedule cost nothing here.
type tokenCache struct {
	m sync.Map // grant id → *tokenEntry
	// epoch is raised by every token stored from outside (import,
	// set-token, remove): the grants read before are read again.
	epoch atomic.Uint64
}

// invalidate makes the broker read every grant again before it serves
// its token: call it after storing a token from outside.
func (c *tokenCache) invalidate() { c.epoch.Add(1) }

// tokenEntry is one grant's broker state. Its fields are read on every
// token request without a lock.
type tokenEntry struct {
	held atomic.Pointer[heldToken]
	// failed is the last refresh failure asked for by an app, within
	// broker.refresh_pace of which the failure is answered again.
	failed atomic.Pointer[failure]
	// used is when a token was last served (unix nanos): the scheduler
	// does not probe the grant within its interval of that use.
	used atomic.Int64
	// view is the grant as last read (grantOf).
	view atomic.Pointer[grantView]
}

// grantView is what the broker needs of a grant, as last read.
type grantView struct {
	gen           uint64
	labels        map[string]string
	state         store.State
	cause, action string
	epoch         uint64 // tokenCache.epoch when read
	at            int64  // unix nanos
}

// grant is v as a store.Grant of id, for the paths that refresh or refuse.
func (v *grantView) grant(id string) store.Grant {
	return store.Grant{ID: id, TokenGen: v.gen, Labels: v.labels, State: v.state, Cause: v.cause, Action: v.action}
}

// heldToken is an access token and what the answer said of it. ~90 bytes
// besides the token's own: type and scope are interned, one copy each
// across the fleet.
type heldToken struct {
	access    secret.Secret
	tokenType unique.Handle[string]
	scope     unique.Handle[string]
	expires   int64  // unix nanos
	obtained  int64  // unix nanos
	gen       uint64 // the grant's TokenGen when obtained
}

// failure is a refresh's failure as the broker answers it.
type failure struct {
	at  int64 // unix nanos
	gen uint64
	err *api.TokenError
}

// defaultAccessLifetime is assumed for an answer without expires_in (RFC
// 6749 §5.1 makes it optional): an hour, the most common lifetime, so the
// token is refreshed at worst an hour late.
const defaultAccessLifetime = time.Hour

func (c *tokenCache) get(id string) *tokenEntry {
	if v, ok := c.m.Load(id); ok {
		return v.(*tokenEntry)
	}
	return nil
}

func (c *tokenCache) entry(id string) *tokenEntry {
	if e := c.get(id); e != nil {
		return e
	}
	v, _ := c.m.LoadOrStore(id, &tokenEntry{})
	return v.(*tokenEntry)
}

func (c *tokenCache) drop(id string) { c.m.Delete(id) }

// usedAt is when the broker last served a token of grant id; zero if never.
func (c *tokenCache) usedAt(id string) time.Time {
	if e := c.get(id); e != nil {
		if n := e.used.Load(); n != 0 {
			return time.Unix(0, n)
		}
	}
	return time.Time{}
}

// stored records what a committed probe result means for the broker, for
// a grant it serves: a new access token, or (reconnect_required) none.
func (c *tokenCache) stored(g store.Grant, res probes.Result, now time.Time) *heldToken {
	e := c.get(g.ID)
	if e == nil {
		return nil
	}
	e.view.Store(nil) // read the grant as this result left it
	if !res.OK || res.AccessToken.IsZero() {
		if g.State == store.StateReconnectRequired {
			e.held.Store(nil)
		}
		return nil
	}
	life := res.ExpiresIn
	if life <= 0 {
		life = defaultAccessLifetime
	}
	// The lifetime counts from when the request was sent, not from when
	// the answer arrived or was stored.
	started := res.Started
	if started.IsZero() {
		started = now
	}
	h := &heldToken{
		access:    res.AccessToken,
		tokenType: unique.Make(res.TokenType),
		scope:     unique.Make(res.Scope),
		expires:   started.Add(life).UnixNano(),
		obtained:  now.UnixNano(),
		gen:       g.TokenGen,
	}
	e.held.Store(h)
	e.failed.Store(nil)
	return h
}

func (h *heldToken) token(id string) api.Token {
	return api.Token{
		AccessToken: h.access,
		TokenType:   h.tokenType.Value(),
		ExpiresAt:   time.Unix(0, h.expires),
		Scope:       h.scope.Value(),
		GrantID:     id,
	}
}

// flight is a refresh of one grant in progress (its claim): no other
// refresh presents the grant's token until it ends, and a token request
// waits for it rather than refreshing again. It ends when its result is
// committed (or when it is dropped), and then says what it obtained.
type flight struct {
	id   string
	done chan struct{} // closed by unclaim
	// Set before done is closed.
	held  *heldToken  // the token obtained, if any
	grant store.Grant // the grant as the committed result left it
	ok    bool        // a result was committed
	// err is why a token request's refresh sent nothing (the grant's
	// state, the provider's gate or limits).
	err *api.TokenError
}

// finish records the committed outcome, before unclaim ends the flight.
func (f *flight) finish(g store.Grant, h *heldToken) {
	f.grant, f.held, f.ok = g, h, true
}

// Token serves api.Broker: the held access token when it has min_ttl left,
// else one refresh per grant however many ask at once.
func (d *Daemon) Token(ctx context.Context, req api.TokenRequest) (api.Token, error) {
	now := d.now()
	e, v, err := d.grantOf(req.ID, now)
	if err != nil {
		return api.Token{}, err
	}
	if req.Reaches != nil && !req.Reaches(v.labels) {
		return api.Token{}, fmt.Errorf("grant %q: %w", req.ID, store.ErrNotFound)
	}
	if v.state == store.StateReconnectRequired {
		// Nothing is sent: the refresh token is dead until the user comes
		// back, forced or not.
		return api.Token{}, grantRefusal(v.grant(req.ID), 0)
	}
	if h, ok := d.fresh(e, v.gen, req, now); ok {
		e.used.Store(now.UnixNano())
		return h.token(req.ID), nil
	}
	if f := e.failed.Load(); f != nil && f.gen == v.gen && now.UnixNano()-f.at < int64(d.Config().Broker.RefreshPace) {
		return api.Token{}, f.err
	}
	h, err := d.brokerRefresh(ctx, v.grant(req.ID), e, req)
	if err != nil {
		return api.Token{}, err
	}
	e.used.Store(d.now().UnixNano())
	return h.token(req.ID), nil
}

// grantOf returns the broker's entry of grant id and the grant as last
// read. The grant is read from the store at most once per viewTTL (a read
// costs more than the rest of a token request) and again after anything
// stored a token from outside (tokenCache.invalidate): a token held for an
// older refresh token is never served, nor one of a grant whose labels
// changed.
func (d *Daemon) grantOf(id string, now time.Time) (*tokenEntry, *grantView, error) {
	e := d.tokens.get(id)
	epoch := d.tokens.epoch.Load()
	if e != nil {
		if v := e.view.Load(); v != nil && v.epoch == epoch && now.UnixNano()-v.at < int64(viewTTL) {
			return e, v, nil
		}
	}
	g, err := d.db.Get(id)
	if err != nil {
		return nil, nil, err
	}
	if e == nil {
		e = d.tokens.entry(id)
	}
	v := &grantView{gen: g.TokenGen, labels: g.Labels, state: g.State, cause: g.Cause, action: g.Action,
		epoch: epoch, at: now.UnixNano()}
	e.view.Store(v)
	return e, v, nil
}

// viewTTL bounds how long a grant read for the broker is trusted: the
// commits and token writes the daemon makes drop it at once; this bounds
// any other.
const viewTTL = time.Second

// fresh returns the held token of e if it serves req: it belongs to the
// grant's current refresh token and has min_ttl left. Within
// broker.refresh_pace of obtaining it, it also serves a forced refresh and
// a min_ttl longer than the provider's tokens live, which a new token would
// not meet either.
func (d *Daemon) fresh(e *tokenEntry, gen uint64, req api.TokenRequest, now time.Time) (*heldToken, bool) {
	h := e.held.Load()
	if h == nil || h.gen != gen {
		return nil, false
	}
	n, minTTL := now.UnixNano(), int64(req.MinTTL)
	if !req.Force && h.expires-n >= minTTL {
		return h, true
	}
	paced := h.expires > n && n-h.obtained < int64(d.Config().Broker.RefreshPace)
	return h, paced && (req.Force || h.expires-h.obtained < minTTL)
}

// brokerRefresh refreshes grant g for a token request, or waits for the
// refresh already running; either way within broker.wait, after which it
// answers busy and the refresh goes on.
func (d *Daemon) brokerRefresh(ctx context.Context, g store.Grant, e *tokenEntry, req api.TokenRequest) (*heldToken, error) {
	cfg := d.Config()
	wctx, cancel := context.WithTimeout(ctx, cfg.Broker.Wait)
	defer cancel()
	started := d.now().UnixNano()
	for range 2 {
		var f *flight
		if d.claim(g.ID) {
			// A refresh that ended after this request looked may have
			// left what it needs.
			if h, ok := d.fresh(e, g.TokenGen, req, d.now()); ok {
				d.unclaim(g.ID)
				return h, nil
			}
			f = d.flightOf(g.ID) // this request's own: only it ends it
			go d.refreshClaimed(context.WithoutCancel(ctx), f)
		} else if f = d.flightOf(g.ID); f == nil {
			continue // it ended between the two looks
		}
		select {
		case <-f.done:
		case <-wctx.Done():
			return nil, &api.TokenError{Code: api.CodeBusy, State: g.State, Cause: g.Cause, Action: g.Action,
				RetryAfter: time.Second,
				Message:    fmt.Sprintf("a refresh of grant %s is still running after %s; ask again in a moment", g.ID, cfg.Broker.Wait)}
		}
		if f.held != nil {
			return f.held, nil
		}
		if h := e.held.Load(); h != nil && h.obtained >= started && h.gen == g.TokenGen {
			return h, nil // a refresh that ended meanwhile got one
		}
		if f.ok {
			err := grantRefusal(f.grant, d.retryIn(f.grant))
			if f.grant.TokenGen == g.TokenGen {
				e.failed.Store(&failure{at: d.now().UnixNano(), gen: g.TokenGen, err: err})
			}
			return nil, err
		}
		if f.err != nil {
			return nil, f.err
		}
		// Dropped without a result (its token was replaced, a reload, the
		// store refused it): try once more with the grant as it is now.
		if ng, err := d.db.Get(g.ID); err == nil {
			g = ng
		}
	}
	return nil, &api.TokenError{Code: api.CodeBusy, State: g.State, Cause: g.Cause, Action: g.Action, RetryAfter: time.Second,
		Message: fmt.Sprintf("grant %s: no token yet; ask again in a moment", g.ID)}
}

// retryIn is how long after a failed refresh asking again makes sense: the
// grant's backoff, at least broker.refresh_pace.
func (d *Daemon) retryIn(g store.Grant) time.Duration {
	wait := d.Config().Broker.RefreshPace
	if !g.NextDueAt.IsZero() {
		wait = max(wait, g.NextDueAt.Sub(d.now()))
	}
	return wait
}

// refreshClaimed runs the refresh of a token request on the claimed
// flight f: the probe path of a scheduled probe (the provider's slot, rate
// and gate; probes.Refresh; the writer's commit, which caches the token and
// ends the flight). It is not cut short by the request: a refresh stopped
// mid-way may lose a rotated token.
func (d *Daemon) refreshClaimed(ctx context.Context, f *flight) {
	id := f.id
	claimed := true // until the claim passes with the result to the writer
	defer func() {
		if claimed {
			d.unclaim(id)
		}
	}()
	if err := d.refreshAllowed(); err != nil {
		// A standby (etcd), or a leader short of lease: the leader
		// refreshes.
		f.err = &api.TokenError{Code: api.CodeBusy, RetryAfter: time.Second, Message: fmt.Sprintf("grant %s not refreshed: %v", id, err)}
		return
	}
	if sf := d.fault.Load(); sf != nil {
		// Its result could not be stored, and a token the provider
		// rotates would be at risk.
		f.err = &api.TokenError{Code: api.CodeBusy, RetryAfter: storeRetryEvery,
			Message: fmt.Sprintf("grant %s not refreshed: the store cannot write since %s because %s; %s", id, sf.since.Format(time.RFC3339), sf.cause, sf.fix)}
		return
	}
	// Read after the claim: no other refresh can rotate it meanwhile.
	l, err := d.db.GetLease(id)
	if err != nil {
		f.err = &api.TokenError{Code: api.CodeBusy, Message: fmt.Sprintf("grant %s: %v", id, err), RetryAfter: time.Second}
		return
	}
	g := l.Grant
	if g.State == store.StateReconnectRequired || g.State == store.StateOnHold {
		f.err = grantRefusal(g, d.retryIn(g))
		return
	}
	p := d.provider(g.Provider)
	if p == nil || p.secretErr != nil {
		f.err = &api.TokenError{Code: api.CodeProviderMisconfigured, State: g.State, Cause: string(probes.CauseInvalidClient),
			Action: string(probes.ActionFixConfig), RetryAfter: time.Minute,
			Message: fmt.Sprintf("grant %s: provider %q is not configured or its client secret is unreadable", id, g.Provider)}
		return
	}
	if p.policy.Observe {
		f.err = &api.TokenError{Code: api.CodeObserveMode, State: g.State, Cause: g.Cause, Action: g.Action,
			Message: fmt.Sprintf("grant %s: provider %s is in observe mode: its app keeps the tokens, and grantwatch never refreshes them", id, g.Provider)}
		return
	}
	timeout := d.Config().Daemon.ProbeTimeout
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	release, err := p.acquire(wctx)
	if err != nil {
		f.err = &api.TokenError{Code: api.CodeRateLimited, State: g.State, Cause: g.Cause, Action: g.Action, RetryAfter: timeout,
			Message: fmt.Sprintf("provider %s is at its limits (concurrency %d, rate %g/s) for longer than probe_timeout", p.cfg.Name, p.cfg.Concurrency, p.cfg.Rate)}
		return
	}
	defer release()
	if wait := p.health.gate(d.now(), p.policy); wait > 0 {
		f.err = providerRefusal(p, g, wait)
		return
	}
	res := d.refresh(ctx, p, l)
	// Storing the result ends the grant's lease, so a scheduled job that
	// holds the token just rotated away finds its lease gone; the writer
	// ends the claim and tells the flight what was stored.
	claimed = false
	d.apply(l.Grant, p, res)
}

// grantRefusal is the broker's answer for a grant it cannot serve as it
// stands: 409 for one that needs its user, 503 for the rest.
func grantRefusal(g store.Grant, retry time.Duration) *api.TokenError {
	cause := probes.Cause(g.Cause)
	e := &api.TokenError{State: g.State, Cause: g.Cause, Action: g.Action, Fix: cause.Fix(), RetryAfter: max(retry, time.Second)}
	switch {
	case g.State == store.StateReconnectRequired:
		e.Code = api.CodeReconnectRequired
		e.Message = fmt.Sprintf("grant %s needs its user to reconnect: %s", g.ID, cause.Summary())
	case g.State == store.StateOnHold:
		e.Code = api.CodeOnHold
		e.Message = fmt.Sprintf("grant %s is on hold: %s", g.ID, cause.Summary())
	case cause == probes.CauseRateLimited:
		e.Code = api.CodeRateLimited
		e.Message = fmt.Sprintf("grant %s: the provider asked to slow down", g.ID)
	default:
		e.Code = api.CodeRefreshFailed
		e.Message = fmt.Sprintf("grant %s: the refresh failed (%s); it is retried", g.ID, cause.Summary())
	}
	return e
}

// providerRefusal is the answer while the provider's gate is closed: a
// pause it asked for (429), an outage, a misconfiguration.
func providerRefusal(p *provider, g store.Grant, wait time.Duration) *api.TokenError {
	state, cause, _, _ := p.health.snapshot()
	e := &api.TokenError{State: g.State, Cause: string(cause), Action: string(cause.Action()), Fix: cause.Fix(), RetryAfter: wait}
	switch state {
	case ProviderOutage:
		e.Code = api.CodeProviderOutage
		e.Message = fmt.Sprintf("provider %s is failing (%s); grantwatch asks it again in %s", p.cfg.Name, cause, wait.Round(time.Second))
	case ProviderMisconfigured:
		e.Code = api.CodeProviderMisconfigured
		e.Message = fmt.Sprintf("provider %s rejects grantwatch's client (%s): fix its config and reload", p.cfg.Name, cause)
	default:
		e.Code, e.Cause, e.Action = api.CodeRateLimited, string(probes.CauseRateLimited), string(probes.ActionRetry)
		e.Fix = probes.CauseRateLimited.Fix()
		e.Message = fmt.Sprintf("provider %s asked grantwatch to slow down", p.cfg.Name)
	}
	return e
}

// useDefers reports whether a scheduled probe of grant id waits because the
// broker served its token within the provider's interval, and until when:
// one interval after that use (for a cron schedule, the gap between two of
// its runs).
func (d *Daemon) useDefers(id string, pol Policy) (time.Time, bool) {
	at := d.tokens.usedAt(id)
	if at.IsZero() {
		return time.Time{}, false
	}
	iv := pol.Interval
	if pol.Schedule != nil {
		next := pol.Schedule.Next(at)
		iv = pol.Schedule.Next(next).Sub(next)
	}
	next := at.Add(iv)
	return next, d.now().Before(next)
}

// postpone moves the grant of job j, which the broker uses, to at without
// probing it, if j's lease is still its own.
func (d *Daemon) postpone(j job, at time.Time) {
	if !d.leases.holds(j.Grant.Row, j.until) {
		return
	}
	err := d.db.Apply(j.Grant.ID, func(cur store.Grant) (store.Change, error) {
		if cur.TokenGen != j.Grant.TokenGen || cur.State == store.StateReconnectRequired {
			return store.Change{Skip: true}, nil
		}
		cur.NextDueAt = at
		return store.Change{Grant: cur}, nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		d.logOnce("postpone", slog.LevelError, "store postponed grant", tint.Err(err))
		return
	}
	d.leases.endIf(j.Grant.Row, j.until)
}

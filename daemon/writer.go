package daemon

// The writer: one goroutine group-commits probe results through the
// transition function, then logs and notifies what was stored.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
	"github.com/lmittmann/tint"
)

// result is a probe result on its way to the store.
type result struct {
	leased store.Grant
	p      *provider
	res    probes.Result
	// done, when set, receives the outcome once it is committed.
	done chan<- applied
}

// applied is what storing a result did.
type applied struct {
	out Outcome
	// stale: the grant's token was replaced (or the grant removed) while
	// the probe ran; the result was dropped.
	stale bool
	err   error
}

// maxGroup bounds how many results one commit writes. A commit rewrites
// every page it touches (the grants', due and state index pages, branch
// pages, the freelist) and fsyncs once, so its cost is mostly per commit:
// while results stream in (the last commit held lingerFrom or more), the
// writer waits up to groupLinger for more once it has one. In a full round
// that makes ~500 results a commit rather than ~150, for ~10 % less CPU a
// probe (grantwatch bench). A lone result — a revocation found between
// rounds — is committed at once.
const (
	// leaseBatch is how many due grants one due scan hands out; they
	// wait in the job queue for milliseconds, far below the lease.
	leaseBatch  = 1024
	maxGroup    = 1024
	groupLinger = 25 * time.Millisecond
	lingerFrom  = 32
)

// writer stores the workers' results: it commits whatever queued up while
// the previous commit ran in one transaction and one fsync (group commit),
// so a worker never waits for the disk.
func (d *Daemon) writer(in <-chan result) {
	batch := make([]result, 0, maxGroup)
	linger := time.NewTimer(0)
	<-linger.C
	last := 0 // results in the last commit
	for r := range in {
		batch = append(batch[:0], r)
		// Wait for more only while results stream in, and never when a
		// caller waits (grants probe).
		wait := r.done == nil && last >= lingerFrom
		if wait {
			linger.Reset(groupLinger)
		}
	gather:
		for len(batch) < maxGroup {
			var more <-chan time.Time // nil: do not wait
			if wait {
				more = linger.C
			} else if len(in) == 0 {
				break
			}
			select {
			case r, ok := <-in:
				if !ok {
					break gather
				}
				batch = append(batch, r)
			case <-more:
				wait = false
				break gather
			}
		}
		if wait && !linger.Stop() {
			<-linger.C
		}
		last = len(batch)
		d.commit(batch)
	}
}

// apply stores one probe result now and reports what it did (grants probe,
// set-token).
func (d *Daemon) apply(leased store.Grant, p *provider, res probes.Result) (Outcome, bool, error) {
	done := make(chan applied, 1)
	d.commit([]result{{leased: leased, p: p, res: res, done: done}})
	a := <-done
	return a.out, a.stale, a.err
}

// commit stores probe results through the transition function in one
// transaction: for each grant its new state, a rotated token, history and
// outbox entries. Only after the commit is anything logged or notified, so a
// rotated token is durable before anything else happens with its result.
func (d *Daemon) commit(batch []result) {
	now, skewed := d.now(), d.clock.Skewed()
	outs := make([]applied, len(batch))
	items := make([]store.ApplyItem, len(batch))
	for i := range batch {
		r := &batch[i] // not a copy per closure: a round commits ~10⁴ results a second
		items[i] = store.ApplyItem{ID: r.leased.ID, Row: r.leased.Row, Fn: func(cur store.Grant) (store.Change, error) {
			if cur.TokenGen != r.leased.TokenGen {
				outs[i].stale = true
				return store.Change{Skip: true}, nil
			}
			env := Env{Now: now, ClockSkewed: skewed, ProviderOutage: r.p.health.outage(), Policy: r.p.policy}
			out := Transition(cur, r.res, env)
			outs[i].out = out
			ch := store.Change{Grant: out.Grant, NewToken: r.res.NewRefreshToken, History: out.History}
			if out.Event != nil {
				ch.Outbox = d.router.Entries(*out.Event)
			}
			ch.Outbox = append(ch.Outbox, d.noticeEntries(out)...)
			return ch, nil
		}}
	}
	errs, txErr := d.db.ApplyAll(items)
	if txErr != nil {
		// A failing disk fails every commit: one line until one succeeds.
		d.logOnce("commit", slog.LevelError, "store probe results", tint.Err(txErr), "results", len(batch))
	} else {
		d.warnedOnce.Delete("commit")
	}
	events := false
	for i, r := range batch {
		a := &outs[i]
		a.err = txErr
		if a.err == nil {
			a.err = errs[i]
		}
		// A logger with attributes costs allocations: build it only for a
		// line that is written (most probes succeed and log at DEBUG).
		log := func() *slog.Logger { return d.log.With("grant", r.leased.ID, "provider", r.leased.Provider) }
		switch {
		case errors.Is(a.err, store.ErrNotFound):
			a.err, a.stale = nil, true // removed while probing
		case a.err != nil && !r.res.NewRefreshToken.IsZero():
			// The provider rotated the token and it could not be stored:
			// this grant may be lost; say so for each one.
			log().Error("rotated refresh token not stored", tint.Err(a.err))
		case a.err != nil && txErr == nil:
			d.logOnce("result/"+r.leased.ID, slog.LevelError, "store probe result", tint.Err(a.err), "grant", r.leased.ID)
		case a.err != nil:
			// The failed commit is logged once above; the lease brings the
			// grant back.
		case a.stale:
			if d.log.Enabled(context.Background(), slog.LevelDebug) {
				log().Debug("probe result dropped: the token was replaced meanwhile")
			}
		default:
			if d.log.Enabled(context.Background(), a.out.Level) {
				logOutcome(log(), a.out, r.res)
			}
			for _, ev := range a.out.Notices {
				logNotice(log(), ev)
			}
			events = events || a.out.Event != nil || len(a.out.Notices) > 0
		}
		if a.err == nil {
			// Stored (or dropped as stale): the grant's due entry is where
			// it belongs, so its lease ends. A result that could not be
			// stored keeps its lease, and the grant comes back when that
			// runs out rather than at once.
			d.leases.end(r.leased.Row)
		}
		if r.done != nil {
			r.done <- *a
		}
	}
	if events {
		d.disp.Kick()
	}
}

// logOutcome writes the one line an outcome deserves (Outcome.Level).
func logOutcome(log *slog.Logger, out Outcome, res probes.Result) {
	g := out.Grant
	msg := "probe ok"
	switch {
	case res.OK && out.Level >= slog.LevelInfo:
		msg = "grant recovered"
	case res.OK:
	case g.State == store.StateReconnectRequired:
		msg = "grant needs reconnect"
	case g.State == store.StateDegraded:
		msg = "grant degraded"
	case g.State == store.StateOnHold:
		msg = "grant on hold"
	default:
		msg = "probe failed, will retry"
	}
	args := []any{"state", g.State}
	if g.Subject != "" {
		args = append(args, "subject", g.Subject)
	}
	if !res.OK {
		args = append(args, "cause", g.Cause, "action", g.Action,
			"error", res.Error, "error_description", res.ErrorDescription,
			"status", res.Status, "failures", g.Failures)
		if !g.NextDueAt.IsZero() {
			args = append(args, "next_probe", g.NextDueAt.Format(time.RFC3339))
		}
	}
	log.Log(context.Background(), out.Level, msg, args...)
}

package daemon

// The writer: one goroutine group-commits probe results through the
// transition function, then logs and notifies what was stored.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
	"github.com/grantwatch/grantwatch/store/etcd"
	"github.com/lmittmann/tint"
)

// result is a probe result on its way to the store.
type result struct {
	leased store.Grant
	p      *provider
	res    probes.Result
	// done, when set, receives the outcome once it is committed.
	done chan<- applied
	// at, when set, is when the result was first committed and failed: a
	// rotated token's result that is retried is judged as of then.
	at time.Time
	// claimed: the result holds its grant's claim, which the writer ends
	// once the result is stored (or settled otherwise).
	claimed bool
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
// so a worker never waits for the disk. While the store cannot write it
// retries (retryStore), and when in closes it tries once more to store the
// rotated tokens it still holds.
func (d *Daemon) writer(in <-chan result) {
	batch := make([]result, 0, maxGroup)
	linger := time.NewTimer(0)
	<-linger.C
	// A fault may begin in apply (grants probe) while the writer waits for
	// results, and none come while probing is paused: the retry ticks.
	retry := time.NewTicker(storeRetryEvery)
	defer retry.Stop()
	last := 0 // results in the last commit
	for {
		var r result
		select {
		case v, ok := <-in:
			if !ok {
				d.flushUnstored()
				return
			}
			r = v
		case <-retry.C:
			if d.fault.Load() != nil {
				d.retryStore()
			}
			continue
		}
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
// set-token). The caller's claim of the grant passes to the result: it ends
// once the result is stored.
func (d *Daemon) apply(leased store.Grant, p *provider, res probes.Result) (Outcome, bool, error) {
	done := make(chan applied, 1)
	d.commit([]result{{leased: leased, p: p, res: res, done: done, claimed: true}})
	a := <-done
	return a.out, a.stale, a.err
}

// record stores one result now, as apply does, but leaves the grant's claim
// alone: an app's report (observe mode, where nothing claims the grant), or
// a lost answer stored before its token is presented once more (refresh,
// which keeps the claim until the second answer is stored).
func (d *Daemon) record(leased store.Grant, p *provider, res probes.Result) (Outcome, bool, error) {
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
		at := now
		if !r.at.IsZero() {
			at = r.at
		}
		items[i] = store.ApplyItem{ID: r.leased.ID, Row: r.leased.Row, Fn: func(cur store.Grant) (store.Change, error) {
			if cur.TokenGen != r.leased.TokenGen {
				outs[i].stale = true
				return store.Change{Skip: true}, nil
			}
			env := Env{Now: at, ClockSkewed: skewed, ProviderOutage: r.p.health.outage(), Policy: r.p.policy}
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
	errs, txErr := d.applyAll(items)
	events := false
	for i, r := range batch {
		a := &outs[i]
		a.err = txErr
		if a.err == nil {
			a.err = errs[i]
		}
		held := false // kept to retry: its grant stays claimed
		// A logger with attributes costs allocations: build it only for a
		// line that is written (most probes succeed and log at DEBUG).
		log := func() *slog.Logger { return d.log.With("grant", r.leased.ID, "provider", r.leased.Provider) }
		switch {
		case errors.Is(a.err, store.ErrNotFound):
			a.err, a.stale = nil, true // removed while probing
		case txErr != nil && !r.res.NewRefreshToken.IsZero():
			// The provider rotated the token and the store cannot write
			// it: the token it replaced is spent. Keep the result and
			// retry it until it lands; until then the grant is not probed
			// (probing is paused), so the old token is never sent again.
			kept := r
			if kept.at.IsZero() {
				kept.at = now
			}
			kept.done = nil // its caller hears of the failure now
			d.keepUnstored(kept)
			held = true
			log().Debug("rotated refresh token kept in memory until the store can write", tint.Err(txErr))
			a.err = fmt.Errorf("the provider rotated the refresh token and the store cannot write it yet (kept in memory and retried until it lands): %w", txErr)
		case a.err != nil && !r.res.NewRefreshToken.IsZero():
			// This record alone could not be written: retrying does not
			// help, and the grant may be lost; say so for each one.
			log().Error("rotated refresh token not stored", tint.Err(a.err))
		case a.err != nil && txErr == nil:
			d.logOnce("result/"+r.leased.ID, slog.LevelError, "store probe result", tint.Err(a.err), "grant", r.leased.ID)
		case a.err != nil:
			// The failed commit is logged once (noteCommit); the grant's
			// token did not change, and its lease brings it back.
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
			// runs out rather than at once (a held rotated token's is
			// ended when it is stored).
			d.leases.end(r.leased.Row)
		}
		if a.err == nil && !a.stale {
			// The broker serves the token (or stops serving one of a
			// grant that needs its user), and whoever waits for this
			// refresh gets it.
			h := d.tokens.stored(a.out.Grant, r.res, now)
			if f := d.flightOf(r.leased.ID); r.claimed && f != nil {
				f.finish(a.out.Grant, h)
			}
		}
		if r.claimed && !held {
			d.unclaim(r.leased.ID)
		}
		if r.done != nil {
			r.done <- *a
		}
	}
	if txErr == nil {
		// Whatever became of them, the results held for these grants
		// are settled: stored, stale, or failing on their own record.
		d.dropUnstored(batch)
	}
	if len(batch) > 0 {
		d.noteCommit(txErr)
	}
	if events {
		d.disp.Kick()
	}
}

// storeFault is a commit failure that pauses probing: until the store
// writes again no probe is handed out, so no rotated token is lost to it.
type storeFault struct {
	err        error
	cause, fix string
	since      time.Time
}

// storeRetryEvery is how often the writer tries to write again while the
// store fails: a failing write costs a system call, and a rotated token
// waits in memory meanwhile.
const storeRetryEvery = time.Second

// writeFailure names the cause of a failed commit and its fix. bbolt
// formats some errors with %s (growing the file), which errors.Is cannot
// see through: then the filesystem itself is asked. (store.IsWriteFailure
// tells whether the storage refused a write; this names which refusal it
// was and what to do, and pauses probing for any failed commit.)
func writeFailure(err error, db string) (cause, fix string) {
	dir := filepath.Dir(db)
	var st syscall.Statfs_t
	full := syscall.Statfs(dir, &st) == nil && st.Bavail == 0
	switch {
	case errors.Is(err, etcd.ErrUnreachable):
		return "the etcd cluster does not answer", "check store.endpoints, this host's connection to the members and that a majority of them runs (grantwatch doctor)"
	case errors.Is(err, etcd.ErrFenced):
		return "this instance no longer leads", "nothing: it stops, and the leader stores what it probes"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), full:
		return "the filesystem of the database is full", fmt.Sprintf("free space on the filesystem of %s (df -h %s)", dir, dir)
	case errors.Is(err, syscall.EROFS), errors.Is(syscall.Access(dir, 2), syscall.EROFS):
		return "the filesystem of the database is read-only", fmt.Sprintf("find out why it was remounted read-only (dmesg), then remount %s read-write", dir)
	case errors.Is(err, syscall.EIO):
		return "an I/O error on the database's disk", fmt.Sprintf("check the disk of %s (dmesg, smartctl); if the database is damaged, restore it from a backup", dir)
	}
	return "the database cannot commit", "read the error; grantwatch doctor checks the database"
}

// noteCommit records the outcome of a commit of probe results: a failure
// pauses probing and is logged once, naming the cause and the fix; the
// first success after it (with every rotated token stored) resumes.
func (d *Daemon) noteCommit(err error) {
	if err != nil {
		if d.fault.Load() != nil {
			return // logged when it began
		}
		cause, fix := writeFailure(err, d.db.Path())
		f := &storeFault{err: err, cause: cause, fix: fix, since: d.now()}
		if d.fault.CompareAndSwap(nil, f) {
			d.log.Error("store cannot write probe results: probing is paused until it can; rotated refresh tokens are kept in memory meanwhile",
				"cause", cause, "fix", fix+"; grantwatch resumes by itself", tint.Err(err),
				"unstored_rotated_tokens", d.unstoredCount())
		}
		return
	}
	f := d.fault.Load()
	if f == nil || d.unstoredCount() > 0 {
		return
	}
	if d.fault.CompareAndSwap(f, nil) {
		d.log.Info("store writes again: probing resumes", "paused_for", d.now().Sub(f.since).Round(time.Second).String())
		d.Kick()
	}
}

// paused reports whether probing is paused because the store cannot write.
func (d *Daemon) paused() bool { return d.fault.Load() != nil }

// retryStore tries to write again while the store fails: the rotated tokens
// it holds, or, with none, an empty commit (it writes the freelist and the
// meta page, and fsyncs).
func (d *Daemon) retryStore() {
	if batch := d.unstoredBatch(); len(batch) > 0 {
		d.commit(batch)
		return
	}
	_, err := d.applyAll(nil)
	d.noteCommit(err)
}

// keepUnstored holds a result whose rotated token the store could not
// write, to retry it.
func (d *Daemon) keepUnstored(r result) {
	d.unstoredMu.Lock()
	defer d.unstoredMu.Unlock()
	if d.unstored == nil {
		d.unstored = map[string]result{}
	}
	d.unstored[r.leased.ID] = r
}

// dropUnstored forgets the held results of the grants of a committed
// batch.
func (d *Daemon) dropUnstored(batch []result) {
	d.unstoredMu.Lock()
	defer d.unstoredMu.Unlock()
	if len(d.unstored) == 0 {
		return
	}
	for _, r := range batch {
		delete(d.unstored, r.leased.ID)
	}
}

func (d *Daemon) unstoredCount() int {
	d.unstoredMu.Lock()
	defer d.unstoredMu.Unlock()
	return len(d.unstored)
}

func (d *Daemon) unstoredBatch() []result {
	d.unstoredMu.Lock()
	defer d.unstoredMu.Unlock()
	out := make([]result, 0, len(d.unstored))
	for _, r := range d.unstored {
		out = append(out, r)
	}
	return out
}

// flushUnstored tries once more, at shutdown, to store the rotated tokens
// still held, and names the grants whose token is lost if it cannot.
func (d *Daemon) flushUnstored() {
	if batch := d.unstoredBatch(); len(batch) > 0 {
		d.commit(batch)
	}
	d.unstoredMu.Lock()
	defer d.unstoredMu.Unlock()
	if len(d.unstored) == 0 {
		return
	}
	ids := make([]string, 0, len(d.unstored))
	for id := range d.unstored {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	d.log.Error("rotated refresh tokens lost at shutdown: the store could not write them; these grants need reconnecting unless their provider accepts the previous token again",
		"grants", ids)
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

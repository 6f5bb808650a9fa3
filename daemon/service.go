package daemon

// The daemon's side of the control API (api.Service): each method is what
// one route does, on the store and the runtime.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// Grants calls fn for every grant, or those in state and of provider.
func (d *Daemon) Grants(state store.State, provider string, fn func(store.Grant) error) error {
	mark := d.staleness()
	each := func(g store.Grant) error {
		mark(&g)
		return fn(g)
	}
	if state != "" {
		return d.db.EachInState(state, provider, each)
	}
	return d.db.Each(func(g store.Grant) error {
		if provider != "" && g.Provider != provider {
			return nil
		}
		return each(g)
	})
}

// Grant returns one grant with its history.
func (d *Daemon) Grant(id string) (api.GrantDetail, error) {
	g, err := d.db.Get(id)
	if err != nil {
		return api.GrantDetail{}, err
	}
	h, err := d.db.History(g.ID)
	if err != nil {
		return api.GrantDetail{}, err
	}
	d.staleness()(&g)
	return api.GrantDetail{Grant: g, Fix: probes.Cause(g.Cause).Fix(), History: h}, nil
}

// Remove deletes a grant.
func (d *Daemon) Remove(id string) error {
	err := d.db.Remove(id)
	d.tokens.drop(id)
	d.tokens.invalidate()
	return err
}

// RemoveIDs deletes the grants named; ids that name none are passed over.
func (d *Daemon) RemoveIDs(ids []string) (int, error) {
	n, err := d.db.RemoveIDs(ids)
	for _, id := range ids {
		d.tokens.drop(id)
	}
	d.tokens.invalidate()
	return n, err
}

// RemoveWhere deletes every grant in state of provider. A grant that a
// probe moved into the filter while the store removed batches is caught by
// a second pass.
func (d *Daemon) RemoveWhere(state store.State, provider string) (int, error) {
	// The broker reads every grant again before it serves its token: a
	// removed one is served no more.
	defer d.tokens.invalidate()
	n, err := d.db.RemoveWhere(state, provider)
	if err != nil || n == 0 {
		return n, err
	}
	m, err := d.db.RemoveWhere(state, provider)
	return n + m, err
}

// fileStore is what only the bbolt backend (*store.DB) does, outside the
// store contract: a check of the whole file, a consistent copy of it, the
// history of its sealing key.
type fileStore interface {
	Check(ctx context.Context) error
	Backup(w io.Writer) (int64, error)
	KeyInfo() (store.KeyInfo, error)
}

// errNotFile is a file operation asked of another backend.
var errNotFile = errors.New("the store is not a bbolt file: check and back it up with its own tools")

// Check verifies the whole database (store.DB.Check).
func (d *Daemon) Check(ctx context.Context) error {
	fs, ok := d.db.(fileStore)
	if !ok {
		return api.Invalid(errNotFile)
	}
	return fs.Check(ctx)
}

// Backup writes a consistent copy of the database to w.
func (d *Daemon) Backup(w io.Writer) (int64, error) {
	fs, ok := d.db.(fileStore)
	if !ok {
		return 0, api.Invalid(errNotFile)
	}
	return fs.Backup(w)
}

// NotifyTest sends a test notification to receiver, or to all with "".
func (d *Daemon) NotifyTest(ctx context.Context, receiver string) ([]api.NotifyTestResult, error) {
	res, err := d.disp.Test(ctx, receiver)
	if err != nil {
		return nil, api.Invalid(err)
	}
	out := make([]api.NotifyTestResult, 0, len(res))
	for _, t := range res {
		v := api.NotifyTestResult{Receiver: t.Receiver, Status: t.Status, Answer: t.Answer}
		if t.Err != nil {
			v.Error = t.Err.Error()
		}
		out = append(out, v)
	}
	return out, nil
}

// ProbeNow probes one grant at once, whatever its state, and applies the
// result like a scheduled probe.
func (d *Daemon) ProbeNow(ctx context.Context, id string) (api.ProbeReport, error) {
	if err := d.refreshAllowed(); err != nil {
		return api.ProbeReport{}, err
	}
	if f := d.fault.Load(); f != nil {
		// Its result could not be stored, and a token the provider rotates
		// would be at risk.
		return api.ProbeReport{}, api.Unavailable(fmt.Errorf("grant %s not probed: probing is paused since %s because %s; %s", id, f.since.Format(time.RFC3339), f.cause, f.fix), storeRetryEvery)
	}
	// Claim first, then read the token: the token read is the one no other
	// probe can rotate meanwhile.
	if !d.claim(id) {
		return api.ProbeReport{}, api.Invalid(fmt.Errorf("grant %s %w; try again in a moment", id, errProbeBusy))
	}
	claimed := true // until the claim passes to the result (apply)
	defer func() {
		if claimed {
			d.unclaim(id)
		}
	}()
	l, err := d.db.GetLease(id)
	if err != nil {
		return api.ProbeReport{}, err
	}
	p := d.provider(l.Grant.Provider)
	if p == nil {
		return api.ProbeReport{}, api.Invalid(fmt.Errorf("grant %s: provider %q is not configured", id, l.Grant.Provider))
	}
	if p.policy.Observe {
		return api.ProbeReport{}, errObserved(id, p.cfg.Name)
	}
	if p.secretErr != nil {
		return api.ProbeReport{}, api.Invalid(p.secretErr)
	}
	// An on-demand probe waits for its turn like a scheduled one: at most
	// daemon.max_api_probes of them at once, each within its provider's
	// concurrency and rate, and for no longer than a probe may take.
	timeout := d.Config().Daemon.ProbeTimeout
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	busy := func(why string) error {
		return api.Unavailable(fmt.Errorf("grant %s not probed: %s; try again in a moment", id, why), timeout)
	}
	select {
	case d.apiProbes <- struct{}{}:
	case <-wctx.Done():
		return api.ProbeReport{}, busy(fmt.Sprintf("%d on-demand probes are in flight (daemon.max_api_probes)", cap(d.apiProbes)))
	}
	defer func() { <-d.apiProbes }()
	release, err := p.acquire(wctx)
	if err != nil {
		return api.ProbeReport{}, busy(fmt.Sprintf("provider %s is at its limits (concurrency %d, rate %g/s) for longer than probe_timeout", p.cfg.Name, p.cfg.Concurrency, p.cfg.Rate))
	}
	defer release()
	res := d.refresh(ctx, p, l)
	// Storing the result ends the grant's lease: a scheduled job that
	// holds the token just rotated away then finds its lease gone.
	claimed = false
	out, stale, err := d.apply(l.Grant, p, res)
	if err != nil {
		return api.ProbeReport{}, err
	}
	return d.probeReport(id, out, stale, res)
}

// probeReport tells the caller what storing res did to grant id: the grant
// as stored, read again when the result was dropped because its token was
// replaced meanwhile.
func (d *Daemon) probeReport(id string, out Outcome, stale bool, res probes.Result) (api.ProbeReport, error) {
	g := out.Grant
	if stale {
		var err error
		if g, err = d.db.Get(id); err != nil {
			return api.ProbeReport{}, err
		}
	}
	return api.ProbeReport{Grant: g, Result: api.ViewResult(res), Stale: stale}, nil
}

// SetToken stores a new refresh token for a grant (the user reconnected),
// resets it to pending and probes it once.
func (d *Daemon) SetToken(ctx context.Context, id string, tok secret.Secret) (api.ProbeReport, error) {
	g, err := d.db.Get(id)
	if err != nil {
		return api.ProbeReport{}, err
	}
	if p := d.provider(g.Provider); p != nil && p.policy.Observe {
		// Its app holds the token, and reports whether the new one works.
		return api.ProbeReport{}, errObserved(id, p.cfg.Name)
	}
	stored, err := d.db.SetToken(id, tok, d.now())
	d.tokens.invalidate() // the access token held is the old refresh token's
	if err != nil {
		return api.ProbeReport{}, err
	}
	d.log.Info("refresh token replaced", "grant", id)
	if d.refreshAllowed() != nil {
		// A standby (or a leader short of lease) stores; the leader
		// probes the grant, due now, on its next tick.
		return api.ProbeReport{Grant: stored, Deferred: true}, nil
	}
	// The token is stored: a probe of the old one still in flight (it
	// ends within probe_timeout; its result is dropped as stale) must not
	// turn this into a failure. Wait for it, then probe the new token.
	deadline := time.Now().Add(d.Config().Daemon.ProbeTimeout + 5*time.Second)
	for {
		rep, err := d.ProbeNow(ctx, id)
		if api.IsUnavailable(err) {
			// Stored all the same: it is due now, the scheduler probes it.
			return rep, api.Unavailable(fmt.Errorf("new refresh token of %s stored; the scheduler probes it within a tick: %w", id, err), d.Config().Daemon.ProbeTimeout)
		}
		if !errors.Is(err, errProbeBusy) || time.Now().After(deadline) {
			return rep, err
		}
		select {
		case <-ctx.Done():
			return api.ProbeReport{}, fmt.Errorf("new refresh token of %s stored, not probed yet: %w", id, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// errProbeBusy: another probe of the grant is in flight.
var errProbeBusy = errors.New("is being probed right now")

const statusListMax = 100

// Status gathers the fleet's status from the store's counters and the state
// index; it never scans the whole fleet.
func (d *Daemon) Status() (api.Status, error) {
	st := api.Status{
		ByState:        map[string]int{},
		ByProvider:     map[string]map[string]int{},
		NeedsReconnect: []store.Grant{},
		OnHold:         []store.Grant{},
	}
	counts, err := d.stateCounts()
	if err != nil {
		return st, err
	}
	for prov, m := range counts {
		pm := map[string]int{}
		for s, n := range m {
			pm[string(s)] = n
			st.ByState[string(s)] += n
			st.Grants += n
		}
		st.ByProvider[prov] = pm
	}
	errStop := errors.New("enough")
	collect := func(dst *[]store.Grant) func(store.Grant) error {
		return func(g store.Grant) error {
			if len(*dst) >= statusListMax {
				return errStop
			}
			*dst = append(*dst, g)
			return nil
		}
	}
	for _, s := range []struct {
		state store.State
		dst   *[]store.Grant
	}{{store.StateReconnectRequired, &st.NeedsReconnect}, {store.StateOnHold, &st.OnHold}} {
		if err := d.db.EachInState(s.state, "", collect(s.dst)); err != nil && !errors.Is(err, errStop) {
			return st, err
		}
		sort.Slice(*s.dst, func(i, j int) bool { return (*s.dst)[i].StateChangedAt.Before((*s.dst)[j].StateChangedAt) })
	}
	if st.Stale, st.StaleGrants, err = d.staleStatus(); err != nil {
		return st, err
	}
	if err := d.forecastStatus(&st); err != nil {
		return st, err
	}
	st.Providers = d.providerStates()
	cs := d.clock.Snapshot()
	st.Clock = api.ClockView{
		State: string(cs.State), OffsetSeconds: cs.Offset.Seconds(), Source: cs.Source,
		NTPOK: cs.NTPOK, NTPOffset: cs.NTPOffset.Seconds(),
		DateOffset: cs.DateOffset.Seconds(), DateSamples: cs.DateSamples,
	}
	pending, oldest, err := d.db.OutboxStats()
	if err != nil {
		return st, err
	}
	st.Outbox.Pending = pending
	if !oldest.IsZero() {
		st.Outbox.OldestAgeSeconds = d.now().Sub(oldest).Seconds()
	}
	st.DB = d.db.Path()
	st.Cluster = d.clusterStatus()
	if t := d.lastTick.Load(); t != 0 {
		st.Daemon = true
		st.LastTickAt = time.Unix(0, t)
		st.Receivers = d.disp.Status()
		st.NotReady, st.NotReadyFix = d.readiness()
	}
	if st.Daemon {
		st.Config = d.configStatus()
	}
	if st.Imports, err = d.importStatus(); err != nil {
		return st, err
	}
	if fs, ok := d.db.(fileStore); ok {
		ki, err := fs.KeyInfo()
		if err != nil {
			return st, err
		}
		st.Key = &ki
	}
	st.NeedsAction = st.ByState[string(store.StateReconnectRequired)] > 0 ||
		st.ByState[string(store.StateOnHold)] > 0 || cs.State == ClockSkewed || st.Stale > 0 ||
		st.Unreadable > 0
	for _, j := range st.Imports {
		if j.State == api.ImportInterrupted || j.State == api.ImportStopped {
			st.NeedsAction = true
		}
	}
	for _, p := range st.Providers {
		if p.State != "ok" {
			st.NeedsAction = true
		}
	}
	return st, nil
}

// stateCounts is provider → state → grants with every state of every
// provider listed, zeros included, configured providers without grants
// too: status's by_state and the grantwatch_grants series show a state
// with no grants as 0 rather than leave it out.
func (d *Daemon) stateCounts() (map[string]map[store.State]int, error) {
	counts, err := d.db.Counts()
	if err != nil {
		return nil, err
	}
	for _, p := range d.Config().Providers {
		if counts[p.Name] == nil {
			counts[p.Name] = map[store.State]int{}
		}
	}
	for _, m := range counts {
		for _, s := range store.States() {
			m[s] += 0
		}
	}
	return counts, nil
}

// Import reads JSON Lines of grants from r and stores them (import.go):
// nothing is written unless every line is valid, and an import a crash
// interrupts is finished at the next start. progress is never called
// concurrently.
func (d *Daemon) Import(ctx context.Context, r io.Reader, opts api.ImportOptions, progress func(api.ImportProgress)) (api.ImportProgress, error) {
	return d.importStream(ctx, r, opts, progress)
}

// importRefusal says why an import was refused and what to do.
func importRefusal(err error) error {
	if errors.Is(err, store.ErrRotated) {
		return fmt.Errorf("nothing imported: %w. The provider rotated these tokens since they were imported: the "+
			"tokens in this input are most likely the ones rotated away (an old export), and presenting one is "+
			"taken for reuse, which revokes the grant. Import current tokens, or add --force (API: force=true) "+
			"to replace them anyway", err)
	}
	also := ""
	var ce *store.ConflictError
	if errors.As(err, &ce) && ce.Rotated > 0 {
		also = fmt.Sprintf(" (%d of them have tokens the provider rotated since they were imported, %s: the input's "+
			"tokens are most likely the rotated-away ones; replacing those also needs --force)", ce.Rotated, strings.Join(quoted(ce.RotatedIDs), ", "))
	}
	return fmt.Errorf("nothing imported: %w. Importing them again replaces their refresh tokens: add --replace "+
		"(API: replace=true) to do so%s", err, also)
}

func quoted(ids []string) []string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = strconv.Quote(id)
	}
	return q
}

// DeadLetters lists the notifications no receiver accepted within max_age.
func (d *Daemon) DeadLetters() ([]api.DeadLetter, error) {
	out := []api.DeadLetter{}
	err := d.db.DeadLetters(func(e store.OutboxEntry) error {
		dl := api.DeadLetter{Receiver: e.Receiver, Seq: e.Seq, NotificationID: e.NotificationID,
			CreatedAt: e.CreatedAt, DeadAt: e.DeadAt, Attempts: e.Attempts, Reason: e.DeadReason}
		if err := json.Unmarshal(e.Payload, &dl.Event); err != nil {
			return fmt.Errorf("dead letter %d of %s: decode its event: %w", e.Seq, e.Receiver, err)
		}
		out = append(out, dl)
		return nil
	})
	return out, err
}

// Redeliver puts dead letters back in the outbox: those of receiver (every
// configured receiver if ""), only seqs if any are given, and only those
// whose news still holds (current). A receiver that is no longer configured
// is refused: nothing would send its entries.
func (d *Daemon) Redeliver(receiver string, seqs []uint64) (api.RedeliverResult, error) {
	var names []string
	for _, c := range d.Config().Notify {
		names = append(names, c.Name)
	}
	switch {
	case receiver != "" && !slices.Contains(names, receiver):
		return api.RedeliverResult{}, api.Invalid(fmt.Errorf("no [[notify]] entry named %q in the daemon's config: its dead letters cannot be sent", receiver))
	case receiver != "":
		names = []string{receiver}
	}
	// Choose first (reads), then move: the store's write transaction does
	// not wait on the grant lookups.
	type candidate struct {
		receiver string
		seq      uint64
		event    notify.Event
		decoded  bool
	}
	var cands []candidate
	err := d.db.DeadLetters(func(e store.OutboxEntry) error {
		if !slices.Contains(names, e.Receiver) || len(seqs) > 0 && !slices.Contains(seqs, e.Seq) {
			return nil
		}
		c := candidate{receiver: e.Receiver, seq: e.Seq}
		c.decoded = json.Unmarshal(e.Payload, &c.event) == nil
		cands = append(cands, c)
		return nil
	})
	if err != nil {
		return api.RedeliverResult{}, err
	}
	res := api.RedeliverResult{}
	send := map[string][]uint64{}
	for _, c := range cands {
		if c.decoded && d.current(c.event) {
			send[c.receiver] = append(send[c.receiver], c.seq)
		} else {
			res.Stale++
		}
	}
	for name, ss := range send {
		n, err := d.db.Redeliver(name, ss, d.now())
		if err != nil {
			return res, err
		}
		res.Requeued += n
	}
	if res.Requeued > 0 {
		d.disp.Kick()
	}
	return res, nil
}

// current reports whether what ev reports still holds: its grant, provider
// or clock is in the state it announced.
func (d *Daemon) current(ev notify.Event) bool {
	switch {
	case ev.Grant != nil:
		g, err := d.db.Get(ev.Grant.ID)
		return err == nil && string(g.State) == ev.Grant.State
	case ev.Provider != nil:
		for _, p := range d.providerStates() {
			if p.Name == ev.Provider.Name {
				return p.State == ev.Provider.State
			}
		}
		return false
	case ev.Clock != nil:
		return string(d.clock.Snapshot().State) == ev.Clock.State
	}
	return true
}

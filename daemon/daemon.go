// Package daemon is grantwatch's long-running process: config, scheduler,
// workers, the transition function, the control API and metrics.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lmittmann/tint"
	"github.com/robfig/cron/v3"
	"golang.org/x/time/rate"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// Options are what Run needs besides the config. Zero values are the
// production defaults; tests and the demo inject the rest.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// HTTPClient is the probes' shared client; nil builds one sized to the
	// worker count.
	HTTPClient *http.Client
	// NTPQuery replaces the NTP query (tests).
	NTPQuery func(ctx context.Context, servers []string) probes.ClockReading
	// Now replaces the wall clock (tests).
	Now func() time.Time
	// Ready is called once the daemon serves (tests, the demo).
	Ready func(*Daemon)
	// NoSync turns off fsync (benchmarks only).
	NoSync bool
	// ConfigPath is re-read on a Reload request.
	ConfigPath string
	// Reload receives a request to reload the config (SIGHUP).
	Reload <-chan struct{}
	// Lease replaces the probe lease, 2×probe_timeout + 10s (tests).
	Lease time.Duration
}

// Run opens the daemon and runs it until ctx is done.
func Run(ctx context.Context, opts Options) error {
	d, err := Open(opts)
	if err != nil {
		return err
	}
	return d.Run(ctx, opts.Ready)
}

// Daemon is a running grantwatch. Create it with Open; Run drives it.
type Daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	db      *store.DB
	now     func() time.Time
	prober  *probes.Prober
	clock   *Clock
	router  *notify.Router
	disp    *notify.Dispatcher
	metrics *promMetrics

	mu        sync.RWMutex
	providers map[string]*provider

	opts     Options
	kickCh   chan struct{}
	jobs     chan job
	leases   *leases
	results  chan result
	lease    time.Duration
	lastTick atomic.Int64 // unix nanos of the last due scan

	listenAddr atomic.Value // string: the TCP listener's address

	warnedOnce sync.Map // keys logged once (unknown providers, store errors)
	inflight   sync.Map // grant id → struct{}: a probe of it is running
	rotated    sync.Map // grant id → struct{}: `grants probe` rotated its token
}

// provider is a configured provider's runtime: its endpoint, policy and
// limits.
type provider struct {
	cfg    config.ProviderConfig
	ep     probes.Endpoint
	policy Policy
	sem    chan struct{}
	lim    *rate.Limiter
	health *health
	// secretErr is why client_secret_file could not be read: the daemon
	// refuses to start (or reload) with it; the CLI refuses to probe.
	secretErr error
}

// secretErrors joins the providers' unreadable client secrets.
func secretErrors(m map[string]*provider) error {
	var errs []error
	for _, p := range m {
		if p.secretErr != nil {
			errs = append(errs, p.secretErr)
		}
	}
	return errors.Join(errs...)
}

// Open opens the store and builds everything Run needs, so that a bad config
// or database fails before anything starts.
func Open(opts Options) (*Daemon, error) {
	cfg := opts.Config
	if cfg == nil {
		return nil, errors.New("no config")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	db, err := OpenStore(cfg, opts.NoSync)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		cfg:    cfg,
		opts:   opts,
		log:    log,
		db:     db,
		now:    now,
		kickCh: make(chan struct{}, 1),
		// Two batches deep: the next due scan runs while the workers still
		// have a batch to probe.
		jobs:    make(chan job, 2*leaseBatch),
		leases:  newLeases(),
		results: make(chan result, 2*maxGroup),
		// A leased grant waits in the job queue for milliseconds, then
		// probes within the timeout; a probe that never reports back lets
		// its grant be handed out again once the lease passes.
		lease: 2*cfg.Daemon.ProbeTimeout + 10*time.Second,
	}
	if opts.Lease > 0 {
		d.lease = opts.Lease
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = probes.NewHTTPClient(cfg.Daemon.Workers, cfg.Daemon.ProbeTimeout)
	}
	d.prober = &probes.Prober{Client: hc, Now: now}
	if d.providers, err = buildProviders(cfg); err != nil {
		db.Close()
		return nil, err
	}
	query := opts.NTPQuery
	if query == nil {
		query = probes.QueryClock
	}
	d.initHealth()
	d.clock = NewClock(cfg.Clock, log, query, now)
	if d.disp, err = notify.NewDispatcher(db, cfg.Notify, log, notify.WithActive(d), notify.WithClock(now)); err != nil {
		db.Close()
		return nil, err
	}
	d.router = d.disp.Router()
	d.metrics = newMetrics(d)
	d.clock.OnChange(d.onClockChange)
	return d, nil
}

// OpenStore opens the configured database with the configured key,
// creating the key file when it is missing.
func OpenStore(cfg *config.Config, noSync bool) (*store.DB, error) {
	return store.OpenWithKeyFile(cfg.Daemon.DB, cfg.Secrets.KeyFile, store.Options{
		MaxBatchSize: cfg.Daemon.Workers,
		NoSync:       noSync,
	})
}

func buildProviders(cfg *config.Config) (map[string]*provider, error) {
	m := make(map[string]*provider, len(cfg.Providers))
	for _, pc := range cfg.Providers {
		ep, secretErr := pc.Endpoint()
		pol := Policy{
			Interval:      pc.Interval,
			DegradedAfter: cfg.Daemon.DegradedAfter,
			BackoffMin:    cfg.Daemon.BackoffMin,
			BackoffMax:    cfg.Daemon.BackoffMax,
		}
		if pc.Schedule != "" {
			var err error
			if pol.Schedule, err = cron.ParseStandard(pc.Schedule); err != nil {
				return nil, fmt.Errorf("providers.%s.schedule: %w", pc.Name, err)
			}
		}
		lim := rate.NewLimiter(rate.Inf, 0)
		if pc.Rate > 0 {
			lim = rate.NewLimiter(rate.Limit(pc.Rate), max(1, int(pc.Rate)))
		}
		m[pc.Name] = &provider{
			cfg: pc, ep: ep, policy: pol,
			sem:       make(chan struct{}, pc.Concurrency),
			lim:       lim,
			health:    newHealth(cfg.Health),
			secretErr: secretErr,
		}
	}
	return m, nil
}

// DB is the daemon's store.
func (d *Daemon) DB() *store.DB { return d.db }

// config.Config is the daemon's current config.
func (d *Daemon) Config() *config.Config {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.cfg
}

// Close closes the store. Run calls it on return.
func (d *Daemon) Close() error { return d.db.Close() }

// Run probes due grants until ctx is done, then stops dispatching, lets
// in-flight probes finish within the shutdown timeout and closes the store.
func (d *Daemon) Run(ctx context.Context, ready func(*Daemon)) error {
	defer d.db.Close()
	cfg := d.Config()
	if err := errors.Join(secretErrors(d.providers), d.disp.SetupErr()); err != nil {
		return err
	}

	c := cron.New(cron.WithChain(cron.Recover(cronLogger{d.log})))
	if _, err := c.AddFunc(cfg.Daemon.Tick, d.Kick); err != nil {
		return fmt.Errorf("daemon.tick: %w", err)
	}
	if _, err := c.AddFunc(cfg.Clock.Schedule, func() { d.checkClock(ctx) }); err != nil {
		return fmt.Errorf("clock.schedule: %w", err)
	}

	// Probes get their own context: on shutdown they may finish within the
	// bound instead of being cut at once.
	probeCtx, cancelProbes := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelProbes()

	var writerWG sync.WaitGroup
	writerWG.Go(func() { d.writer(d.results) })
	var wg sync.WaitGroup
	for range cfg.Daemon.Workers {
		wg.Go(func() { d.worker(ctx, probeCtx) })
	}
	// stopWriting lets the writer store what the workers handed it.
	stopWriting := func() {
		close(d.results)
		writerWG.Wait()
	}
	dispCtx, stopDisp := context.WithCancel(context.WithoutCancel(ctx))
	var dispWG sync.WaitGroup
	dispWG.Go(func() { d.disp.Run(dispCtx) })
	dispWG.Go(func() { d.checkClock(ctx) })

	srv, err := d.serve(ctx)
	if err != nil {
		cancelProbes()
		close(d.jobs)
		wg.Wait()
		stopWriting()
		stopDisp()
		dispWG.Wait()
		return err
	}
	c.Start()
	d.Kick()
	d.log.Info("grantwatch started", "db", d.db.Path(), "socket", cfg.Daemon.Socket,
		"providers", len(cfg.Providers), "workers", cfg.Daemon.Workers)
	if ready != nil {
		ready(d)
	}
	sdNotify(sdReady)

	reloadCtx, stopReload := context.WithCancel(ctx)
	go d.reloadLoop(reloadCtx)
	d.dispatchLoop(ctx)
	stopReload()

	sdNotify(sdStopping)
	d.log.Info("stopping", "shutdown_timeout", cfg.Daemon.ShutdownTimeout.String())
	stopped := c.Stop()
	close(d.jobs)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.Daemon.ShutdownTimeout):
		d.log.Warn("in-flight probes cut off at shutdown", "shutdown_timeout", cfg.Daemon.ShutdownTimeout.String())
		cancelProbes()
		<-done
	}
	stopWriting()
	<-stopped.Done()
	srv.close()
	stopDisp()
	dispWG.Wait()
	d.log.Info("stopped")
	return nil
}

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
			events = events || a.out.Event != nil
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

// logOnce logs a problem the first time key is seen (until the key is
// cleared), so a persistent fault is one line, not one per tick.
func (d *Daemon) logOnce(key string, level slog.Level, msg string, args ...any) {
	if _, seen := d.warnedOnce.LoadOrStore(key, true); seen {
		d.log.Debug(msg, args...)
		return
	}
	d.log.Log(context.Background(), level, msg, args...)
}

// checkClock runs one NTP check; a transition is logged by the clock and
// announced here.
func (d *Daemon) checkClock(ctx context.Context) {
	d.clock.Check(ctx)
}

// cronLogger adapts slog to robfig/cron's logger.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append(kv, tint.Err(err))...)
}

// reloadLoop reloads the config on request: the new one is built and
// validated completely before it replaces the old; a bad file keeps the old
// config running and logs one error naming the problem.
func (d *Daemon) reloadLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.opts.Reload:
		}
		sdNotify(sdReloading)
		if err := d.reload(); err != nil {
			d.log.Error("config reload failed; the previous config stays in force", tint.Err(err))
		}
		sdNotify(sdReady)
	}
}

func (d *Daemon) reload() error {
	if d.opts.ConfigPath == "" {
		return errors.New("no config file to reload")
	}
	cfg, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		return err
	}
	provs, err := buildProviders(cfg)
	if err != nil {
		return err
	}
	if err := secretErrors(provs); err != nil {
		return err
	}
	old := d.Config()
	d.mu.RLock()
	oldProvs := d.providers
	d.mu.RUnlock()
	if keys := config.RestartOnly(old, cfg); len(keys) > 0 {
		d.log.Warn("some changes apply only on restart (systemctl restart grantwatch)", "keys", strings.Join(keys, ", "))
	}
	d.carryHealth(oldProvs, provs)
	d.mu.Lock()
	d.cfg = cfg
	d.providers = provs
	d.mu.Unlock()
	d.log.Info("config reloaded", "providers", len(cfg.Providers))
	d.Kick()
	return nil
}

// ActiveEvents lists every condition that still holds, as events, for
// receivers that re-send firing alerts (Alertmanager): grants that need
// reconnecting, a skewed clock, providers not ok.
func (d *Daemon) ActiveEvents(ctx context.Context, fn func(notify.Event) error) error {
	err := d.db.EachInState(store.StateReconnectRequired, "", func(g store.Grant) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		cause := probes.Cause(g.Cause)
		return fn(*grantEvent(notify.TypeReconnectRequired, g, "", g.StateChangedAt,
			"grant "+g.ID+" needs its user to reconnect: "+cause.Summary(), cause.Fix()))
	})
	if err != nil {
		return err
	}
	if ev := d.clockEvent(d.clock.Snapshot()); ev != nil && ev.Type == notify.TypeClockSkewed {
		if err := fn(*ev); err != nil {
			return err
		}
	}
	d.mu.RLock()
	provs := d.providers
	d.mu.RUnlock()
	for name, p := range provs {
		state, cause, detail, since := p.health.snapshot()
		if state == ProviderOK {
			continue
		}
		ev := d.providerEvent(name, &healthChange{To: state, Cause: cause, Detail: detail})
		ev.OccurredAt = since
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// Package daemon is grantwatch's runtime: Open and Run, the scheduler and
// its in-memory leases, the workers, the writer, the pure transition
// function, provider health, the clock gate, reload and metrics. It serves
// the control API (daemon/api) by implementing api.Service; it parses no
// config (daemon/config), routes no HTTP and runs no doctor checks.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lmittmann/tint"
	"github.com/robfig/cron/v3"
	"golang.org/x/time/rate"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/fdlimit"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
	"github.com/grantwatch/grantwatch/store/etcd"
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
	// TCPHandler, when set, wraps the handler of daemon.listen: the CLI
	// adds the web pages (daemon/web: the status page, reconnect links),
	// which the runtime does not import.
	TCPHandler func(d *Daemon, next http.Handler) http.Handler
	// NoStartCheck skips the database check at the start of Run (bench,
	// whose database was just written and whose round Run begins).
	NoStartCheck bool
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
	db      store.Store
	now     func() time.Time
	prober  *probes.Prober
	clock   *Clock
	router  *notify.Router
	disp    *notify.Dispatcher
	metrics *promMetrics

	mu        sync.RWMutex
	providers map[string]*provider
	// healthMu orders what changes providers' announced health: settle,
	// and a reload's swap of the providers.
	healthMu sync.Mutex
	reloads  reloadState

	opts    Options
	kickCh  chan struct{}
	jobs    chan job
	leases  *leases
	results chan result
	lease   time.Duration
	// lastTick is when the scheduler loop last showed it is alive (unix
	// nanos): a due scan, or a beat while it waits for busy workers.
	lastTick atomic.Int64

	listenAddr atomic.Value  // string: the TCP listener's address
	timeouts   httpTimeouts  // the listeners' (tests shorten them)
	apiProbes  chan struct{} // a slot per on-demand probe in flight (daemon.max_api_probes)

	// applyAll commits probe results: db.ApplyAll, or a failing store in
	// tests.
	applyAll func([]store.ApplyItem) ([]error, error)
	// fault is why the store cannot write, nil while it can: probing is
	// paused meanwhile (writer.go).
	fault atomic.Pointer[storeFault]
	// unstored holds, by grant id, the results whose rotated token the
	// store could not write yet; the writer retries them.
	unstoredMu sync.Mutex
	unstored   map[string]result

	warnedOnce sync.Map   // keys logged once (unknown providers, store errors)
	inflight   sync.Map   // grant id → *flight: a refresh of it runs, or its result is not stored yet
	tokens     tokenCache // the access tokens the broker serves (tokens.go)
	keys       keySet     // the app keys (keys.go)

	notifyLinks notifyLinks // links.go
	importing   sync.Map    // import job id → importRun: an import this process is writing
	spools      sync.Map    // spool path → struct{}: an input this process is reading in (ResumeImports leaves it)

	// cluster is the fleet's leadership with an etcd store; nil with bbolt.
	cluster *cluster
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
	// grace is how long the provider still takes a rotated-away refresh
	// token (rotation_grace, else the preset's): the window in which a
	// refresh whose answer was lost is sent once more.
	grace time.Duration
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
	// Anyone who can read the key can unseal every token, and anyone who
	// can write it can make the daemon seal new ones with a key they know:
	// refuse it, as ssh refuses an unprotected private key. A missing key
	// is created with mode 0600.
	var me *secret.ModeError
	if err := secret.CheckMode(cfg.Secrets.KeyFile); errors.As(err, &me) {
		return nil, fmt.Errorf("secrets.key_file: %w", err)
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
	d.applyAll = db.ApplyAll
	d.timeouts = serverTimeouts(cfg)
	d.apiProbes = make(chan struct{}, cfg.Daemon.MaxAPIProbes)
	if es, ok := db.(*etcd.Store); ok {
		d.cluster = newCluster(es, cfg.Store, log)
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
	if d.cluster == nil {
		d.initHealth() // with etcd, the leader does when it is elected
	}
	d.reloads.loaded(cfg, now())
	d.clock = NewClock(cfg.Clock, log, query, now)
	if d.disp, err = notify.NewDispatcher(db, cfg.Notify, log, notify.WithActive(d), notify.WithClock(now), notify.WithLinks(d)); err != nil {
		db.Close()
		return nil, err
	}
	d.router = d.disp.Router()
	d.metrics = newMetrics(d)
	d.clock.OnChange(d.onClockChange)
	return d, nil
}

// OpenStore opens the configured store (daemon.db, or the etcd cluster of
// [store]) with the configured key, creating the key file when it is
// missing.
func OpenStore(cfg *config.Config, noSync bool) (store.Store, error) {
	if cfg.Store.Backend == config.BackendEtcd {
		st, err := openEtcd(cfg)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	db, err := store.OpenWithKeyFile(cfg.Daemon.DB, cfg.Secrets.KeyFile, store.Options{
		MaxBatchSize: cfg.Daemon.Workers,
		NoSync:       noSync,
	})
	if err != nil {
		return nil, err // not a nil *DB in a non-nil Store
	}
	return db, nil
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
			Observe:       pc.Observe(),
			Lifetimes:     pc.Lifetimes(),
			WarnBefore:    cfg.Forecast.WarnBefore,
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
			grace:     pc.Grace(),
			secretErr: secretErr,
		}
	}
	return m, nil
}

// DB is the daemon's store.
func (d *Daemon) DB() store.Store { return d.db }

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
	// With etcd, ctx ends when this instance's leadership does.
	ctx, leave := d.joinCluster(ctx)
	defer leave()
	cfg := d.Config()
	if err := errors.Join(secretErrors(d.providers), d.disp.SetupErr()); err != nil {
		return err
	}
	if !d.opts.NoStartCheck {
		if err := d.checkStore(ctx); err != nil {
			return err
		}
	}

	d.warnSecretModes(cfg)

	c := cron.New(cron.WithChain(cron.Recover(cronLogger{d.log})))
	if _, err := c.AddFunc(cfg.Daemon.Tick, d.Kick); err != nil {
		return fmt.Errorf("daemon.tick: %w", err)
	}
	if _, err := c.AddFunc(cfg.Clock.Schedule, func() { d.checkClock(ctx) }); err != nil {
		return fmt.Errorf("clock.schedule: %w", err)
	}
	// Client secrets expire by the calendar: hourly is ahead of warn_before.
	if _, err := c.AddFunc("@every 1h", d.checkSecrets); err != nil {
		return fmt.Errorf("secret check: %w", err)
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
	dispWG.Go(func() {
		if d.awaitLead(dispCtx) { // only the leader dispatches
			d.disp.Run(dispCtx)
		}
	})
	dispWG.Go(func() { d.checkClock(ctx) })
	dispWG.Go(d.checkSecrets)

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
	d.syncModes()
	c.Start()
	var resumeWG sync.WaitGroup
	resumeWG.Go(func() {
		if err := d.ResumeImports(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("interrupted import not finished", tint.Err(err))
		}
	})
	defer resumeWG.Wait()
	d.Kick()
	wg.Go(func() { d.canaryLoop(ctx, probeCtx) })
	d.log.Info("grantwatch started", "db", d.db.Path(), "socket", cfg.Daemon.Socket,
		"providers", len(cfg.Providers), "workers", cfg.Daemon.Workers)
	if len(cfg.Providers) == 0 {
		d.log.Warn("no providers configured: nothing will be probed", "config", cfg.Path(), "fix", "add a [[providers]] entry (config.example.toml) and reload")
	}
	d.checkOpenFiles(cfg)
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
	if err := context.Cause(ctx); errors.Is(err, errLeadershipLost) {
		return err
	}
	return nil
}

// checkStore verifies the whole database before anything is written to it
// (store.Check): bbolt keeps no page checksums, and a damaged freelist
// hands out pages still in use, so a daemon writing to a damaged file
// spreads the damage. The check reads every page (about 1 s for 200,000
// grants, 5–8 s for 10⁶ on a 2-core VM) before READY=1, well within
// systemd's start timeout; a damaged file stops the start with the damage
// listed and what to do. It is not run in the background: probing (that
// is, writing) before it ends is what must not happen.
func (d *Daemon) checkStore(ctx context.Context) error {
	fs, ok := d.db.(fileStore)
	if !ok {
		return nil // another backend keeps its own checksums
	}
	start := time.Now()
	if err := fs.Check(ctx); err != nil {
		if errors.Is(err, store.ErrCorrupt) {
			return fmt.Errorf("%w\n(grantwatch does not start on a damaged database: restore the last backup as the README's \"Backups and restore\" says, then start it again)", err)
		}
		return fmt.Errorf("check the database: %w", err)
	}
	d.log.Info("database checked", "db", d.db.Path(), "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// checkOpenFiles warns when the open-file limit (which Go raised to the
// hard limit at start) leaves too little beside the listeners' connection
// caps for the probes' connections, the database and the receivers.
func (d *Daemon) checkOpenFiles(cfg *config.Config) {
	soft, hard, err := fdlimit.OpenFiles()
	if err != nil {
		return
	}
	need := uint64(cfg.Daemon.MaxConnections + cfg.Daemon.SocketMaxConnections + 2*cfg.Daemon.Workers + 64)
	if soft < need {
		d.log.Warn("open-file limit is low for the connection caps", "limit", soft, "hard_limit", hard, "want", need,
			"fix", "raise LimitNOFILE= in the unit, or lower daemon.max_connections, daemon.socket_max_connections or daemon.workers")
	}
}

// warnSecretModes warns once at start for each secret file besides the key
// (which Open refuses) that other users may read or write.
func (d *Daemon) warnSecretModes(cfg *config.Config) {
	for _, f := range cfg.SecretFiles() {
		var me *secret.ModeError
		if err := secret.CheckMode(f.Path); f.Path != cfg.Secrets.KeyFile && errors.As(err, &me) {
			d.log.Warn("secret file is open to other users", "key", f.Key, tint.Err(err))
		}
	}
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

// ActiveEvents lists every condition that still holds, as events, for
// receivers that re-send firing alerts (Alertmanager): grants that need
// reconnecting, a skewed clock, providers not ok.
func (d *Daemon) ActiveEvents(ctx context.Context, fn func(notify.Event) error) error {
	err := d.db.EachInState(store.StateReconnectRequired, "", func(g store.Grant) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(*reconnectEvent(g, "", g.StateChangedAt))
	})
	if err != nil {
		return err
	}
	if err := d.activeWatchEvents(ctx, fn); err != nil {
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

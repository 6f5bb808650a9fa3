package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

// Outbox is the part of the store the dispatcher drains. *store.DB
// implements it; all delivery state lives there, so a new Dispatcher over the
// same store resumes where the last one stopped.
type Outbox interface {
	// PendingOutbox returns up to limit entries of receiver in Seq order.
	PendingOutbox(receiver string, limit int) ([]store.OutboxEntry, error)
	// UpdateOutbox stores the delivery bookkeeping of entries (Attempts,
	// NextAttemptAt, LastError, NotificationID).
	UpdateOutbox(entries ...store.OutboxEntry) error
	// AckOutbox deletes delivered entries.
	AckOutbox(receiver string, seqs ...uint64) error
	// DeadLetter moves entries to the dead-letter bucket with a reason.
	DeadLetter(receiver, reason string, seqs ...uint64) error
}

// Active lists the conditions that hold now — every grant in
// reconnect_required, every provider not ok, the clock if skewed — as
// problem events (Type grant.reconnect_required, provider.outage, …). The
// daemon implements it from the store's current state; the dispatcher uses
// it to re-send firing alerts to Alertmanager every resend_interval. fn's
// error stops the walk and is returned.
type Active interface {
	ActiveEvents(ctx context.Context, fn func(Event) error) error
}

// ErrUnknownReceiver is returned by Test for a receiver name not configured.
var ErrUnknownReceiver = errors.New("no such receiver")

// Dispatcher drains the outbox: per receiver it groups pending entries
// (group_wait, group_by), sends each group as one notification, deletes the
// entries once the receiver accepted them, and retries failures with
// exponential backoff and jitter, honouring 429 and Retry-After. A group's
// notification id is stored before its first attempt and reused on every
// retry. Entries older than max_age move to the dead-letter bucket with one
// ERROR line.
type Dispatcher struct {
	ob     Outbox
	log    *slog.Logger
	opts   options
	router *Router
	recv   []*receiverState
	byName map[string]*receiverState
	// setupErr: receivers whose secrets could not be read (SetupErr).
	setupErr error
}

type receiverState struct {
	cfg    Config
	sender Sender
	red    redactor
	kick   chan struct{}

	sent, events, failed, dead atomic.Uint64

	mu     sync.Mutex
	status ReceiverStatus // guarded by mu

	// Touched only by the receiver's goroutine.
	blockedUntil time.Time // 429 / Retry-After: the whole receiver waits
	lastErr      string    // log a failure at WARN only when it changed
	nextResend   time.Time
	resendErr    string
}

// resender is implemented by the alertmanager receiver.
type resender interface {
	Resend(ctx context.Context, evs []Event) (Delivery, error)
}

// DispatchStats counts deliveries per receiver since the Dispatcher started.
type DispatchStats struct {
	Receivers map[string]ReceiverStats
}

// ReceiverStats counts one receiver's deliveries.
type ReceiverStats struct {
	// Sent counts notifications accepted; Events the events they carried.
	Sent, Events uint64
	// Failed counts failed attempts (each retry counts).
	Failed uint64
	// DeadLettered counts events moved to the dead-letter bucket.
	DeadLettered uint64
}

// ReceiverStatus is how one receiver's deliveries went since the Dispatcher
// started: `grantwatch doctor` shows a receiver that answers 500 as failing,
// with the error and when it last worked. Deliveries of the outbox,
// Alertmanager re-sends and `notify test` count; a delivery cut short by
// shutdown does not.
type ReceiverStatus struct {
	Receiver string `json:"receiver"`
	Type     string `json:"type"`
	// LastSuccess is when the receiver last accepted a request; zero if it
	// has not since the start.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the error of the last failed delivery, redacted like a
	// log line (no URL path or query, user info, signing or routing key),
	// at most 200 bytes. It is kept after a later success: compare the times
	// (Failing).
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when that delivery failed; zero if none has.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Failing reports whether the receiver's last delivery failed.
func (s ReceiverStatus) Failing() bool { return s.LastErrorAt.After(s.LastSuccess) }

// TestResult is the outcome of `grantwatch notify test` for one receiver.
type TestResult struct {
	Receiver string
	// Status is the HTTP status, or the exit code for exec; 0 if no answer.
	Status int
	// Answer is the start of the receiver's reply, redacted.
	Answer string
	// Err is nil when the receiver accepted the test notification.
	Err error
}

type options struct {
	now          func() time.Time
	minBackoff   time.Duration
	maxBackoff   time.Duration
	maxRetryWait time.Duration
	poll         time.Duration
	limit        int
	maxEvents    int
	active       Active
	senders      map[string]Sender
	client       *http.Client
	links        Linker
}

// Option configures a Dispatcher.
type Option func(*options)

// WithClock replaces time.Now (tests). Waits still use real timers: after
// moving a fake clock forward, call Kick.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithBackoff sets the first retry delay and the cap (defaults 1s and 5m).
// Each failure doubles the delay; jitter picks it in [d/2, d].
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// WithPollInterval sets how often each receiver's outbox is looked at
// without a Kick (default 10s): a safety net, not the delivery path.
func WithPollInterval(d time.Duration) Option { return func(o *options) { o.poll = d } }

// WithActive sets the source of conditions that still hold, for
// Alertmanager re-sending. Without it, alerts are sent only on transitions.
func WithActive(a Active) Option { return func(o *options) { o.active = a } }

// WithSender replaces the sender built for a receiver (tests, custom kinds).
func WithSender(receiver string, s Sender) Option {
	return func(o *options) {
		if o.senders == nil {
			o.senders = map[string]Sender{}
		}
		o.senders[receiver] = s
	}
}

// WithLimits sets how many pending entries one pass reads per receiver
// (default 5000) and how many events one notification carries at most
// (default 1000; a larger group is sent as several notifications).
func WithLimits(pending, eventsPerNotification int) Option {
	return func(o *options) { o.limit, o.maxEvents = pending, eventsPerNotification }
}

// WithHTTPClient replaces the HTTP client of the HTTP receivers. It should
// not follow redirects.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// NewDispatcher builds a Sender per receiver, reading url_file, secret_file
// and routing_key_file. cs should have passed ValidateConfigs; unset keys
// take their defaults.
func NewDispatcher(ob Outbox, cs []Config, logger *slog.Logger, opts ...Option) (*Dispatcher, error) {
	o := options{
		now:          time.Now,
		minBackoff:   time.Second,
		maxBackoff:   5 * time.Minute,
		maxRetryWait: time.Hour,
		poll:         10 * time.Second,
		limit:        5000,
		maxEvents:    1000,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.client == nil {
		o.client = newHTTPClient()
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{ob: ob, log: logger, opts: o, router: NewRouter(cs), byName: map[string]*receiverState{}}
	var errs []error
	for _, c := range cs {
		c.ApplyDefaults()
		s, red, err := newSender(c, o.client, o.now)
		if err != nil {
			// Kept, so the receiver's outbox is still counted and the CLI
			// works; its sends fail with the reason, and SetupErr lets the
			// daemon refuse to start.
			errs = append(errs, err)
			s = SenderFunc(func(context.Context, Notification) (Delivery, error) { return Delivery{Retry: true}, err })
		}
		if fake, ok := o.senders[c.Name]; ok {
			s = fake
		}
		rs := &receiverState{cfg: c, sender: s, red: red, kick: make(chan struct{}, 1)}
		d.recv = append(d.recv, rs)
		d.byName[c.Name] = rs
	}
	d.setupErr = errors.Join(errs...)
	return d, nil
}

// SetupErr reports the receivers that could not be built (a *_file that
// cannot be read, a bad URL in it). The daemon refuses to start with it; the
// CLI can still read the outbox.
func (d *Dispatcher) SetupErr() error { return d.setupErr }

// newSender builds the receiver of c's type, reading its *_file secrets.
// Errors name the config key and the file, never a secret.
func newSender(c Config, client *http.Client, now func() time.Time) (Sender, redactor, error) {
	key := func(k string) string { return "notify." + c.Name + "." + k }
	u := c.URL
	if c.URLFile != "" {
		var err error
		if u, err = readSecretFile(c.URLFile); err != nil {
			return nil, redactor{}, fmt.Errorf("%s: %w", key("url_file"), err)
		}
		if err := checkURL(u.Reveal()); err != nil {
			return nil, redactor{}, fmt.Errorf("%s: %s: %w", key("url_file"), c.URLFile, err)
		}
	}
	switch c.Type {
	case KindWebhook:
		w := &webhook{name: c.Name, url: u, client: client, now: now}
		var hide []secret.Secret
		if c.SecretFile != "" {
			content, err := readSecretFile(c.SecretFile)
			if err != nil {
				return nil, redactor{}, fmt.Errorf("%s: %w", key("secret_file"), err)
			}
			var lines []secret.Secret
			if w.keys, lines, err = signingKeys(content); err != nil {
				return nil, redactor{}, fmt.Errorf("%s: %s: %w", key("secret_file"), c.SecretFile, err)
			}
			w.legacy = lines[0]
			for _, l := range lines {
				// A whsec_ key's base64 alone is the secret too.
				hide = append(hide, l, secret.Secret(strings.TrimPrefix(l.Reveal(), whsecPrefix)))
			}
		}
		w.red = newRedactor(u.Reveal(), hide...)
		return w, w.red, nil
	case KindSlack:
		s := &slack{name: c.Name, url: u, client: client, now: now, red: newRedactor(u.Reveal())}
		return s, s.red, nil
	case KindPagerDuty:
		rk := c.RoutingKey
		if c.RoutingKeyFile != "" {
			var err error
			if rk, err = readSecretFile(c.RoutingKeyFile); err != nil {
				return nil, redactor{}, fmt.Errorf("%s: %w", key("routing_key_file"), err)
			}
		}
		if u.IsZero() {
			u = DefaultPagerDutyURL
		}
		p := &pagerduty{name: c.Name, url: u, routingKey: rk, client: client, now: now, red: newRedactor(u.Reveal(), rk)}
		return p, p.red, nil
	case KindAlertmanager:
		a := &alertmanager{name: c.Name, url: u, resend: c.ResendInterval, client: client, now: now, red: newRedactor(u.Reveal())}
		return a, a.red, nil
	case KindExec:
		if len(c.Command) == 0 {
			return nil, redactor{}, fmt.Errorf("%s: must name a program", key("command"))
		}
		e := &execSender{name: c.Name, argv: c.Command}
		return e, e.red, nil
	}
	return nil, redactor{}, fmt.Errorf("%s: unknown type %q", key("type"), c.Type)
}

// Router returns the router built from the same configs, for the daemon's
// outbox writes.
func (d *Dispatcher) Router() *Router { return d.router }

// Kick tells the dispatcher that new entries were committed, so they are
// looked at now rather than at the next poll. It never blocks.
func (d *Dispatcher) Kick() {
	for _, rs := range d.recv {
		select {
		case rs.kick <- struct{}{}:
		default:
		}
	}
}

// Run delivers until ctx is done, one goroutine per receiver, and returns
// ctx's error once they have stopped. An attempt in flight is cancelled; its
// entries stay in the outbox and are sent again by the next Run.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, rs := range d.recv {
		wg.Go(func() { d.loop(ctx, rs) })
	}
	wg.Wait()
	return ctx.Err()
}

// Status returns each receiver's delivery status, in config order. It is
// safe to call while Run delivers.
func (d *Dispatcher) Status() []ReceiverStatus {
	out := make([]ReceiverStatus, 0, len(d.recv))
	for _, rs := range d.recv {
		rs.mu.Lock()
		st := rs.status
		rs.mu.Unlock()
		st.Receiver, st.Type = rs.cfg.Name, rs.cfg.Type
		out = append(out, st)
	}
	return out
}

// record notes the outcome of one delivery attempt at now for Status: a nil
// err is a success; an error is kept redacted and cut short, as logged.
func (rs *receiverState) record(now time.Time, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if err == nil {
		rs.status.LastSuccess = now
		return
	}
	rs.status.LastError, rs.status.LastErrorAt = short(rs.red.String(err.Error())), now
}

// Stats returns the delivery counts per receiver.
func (d *Dispatcher) Stats() DispatchStats {
	st := DispatchStats{Receivers: map[string]ReceiverStats{}}
	for _, rs := range d.recv {
		st.Receivers[rs.cfg.Name] = ReceiverStats{Sent: rs.sent.Load(), Events: rs.events.Load(),
			Failed: rs.failed.Load(), DeadLettered: rs.dead.Load()}
	}
	return st
}

// Test sends a clearly marked test event (Event.Test, "[TEST]" summary)
// through the real render and send path — not the outbox — to the named
// receiver, or to every receiver when receiver is "". It returns one result
// per receiver; the error is only for an unknown receiver name.
func (d *Dispatcher) Test(ctx context.Context, receiver string) ([]TestResult, error) {
	targets := d.recv
	if receiver != "" {
		rs, ok := d.byName[receiver]
		if !ok {
			return nil, fmt.Errorf("notify test %s: %w", receiver, ErrUnknownReceiver)
		}
		targets = []*receiverState{rs}
	}
	now := d.opts.now().UTC()
	var out []TestResult
	for _, rs := range targets {
		ev := TestEvent(now)
		n := Notification{ID: newID(), Receiver: rs.cfg.Name, Events: []Event{ev}}
		actx, cancel := context.WithTimeout(ctx, rs.cfg.Timeout)
		del, err := rs.sender.Send(actx, n)
		cancel()
		if ctx.Err() == nil {
			rs.record(d.opts.now(), err)
		}
		out = append(out, TestResult{Receiver: rs.cfg.Name, Status: del.Status,
			Answer: rs.red.String(del.Answer), Err: rs.red.Error(err)})
	}
	return out, nil
}

// TestEvent is the event `grantwatch notify test` sends: a reconnect_required
// of a grant that does not exist, marked Test and "[TEST]" everywhere a
// person reads it.
func TestEvent(now time.Time) Event {
	return Event{
		ID:         newID(),
		Type:       TypeReconnectRequired,
		OccurredAt: now,
		Test:       true,
		Grant: &Grant{ID: "grantwatch-test", Provider: "test", Subject: "notify test",
			State: "reconnect_required", Cause: "revoked", Action: "reconnect"},
		Summary: testPrefix + "grantwatch notification test: no grant is affected, no action needed",
		Fix:     "Nothing to fix: this message was sent by `grantwatch notify test` to check the receiver.",
	}
}

func (d *Dispatcher) loop(ctx context.Context, rs *receiverState) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rs.kick:
		case <-timer.C:
		}
		next := d.pass(ctx, rs)
		wait := d.opts.poll
		if !next.IsZero() {
			if w := next.Sub(d.opts.now()); w < wait {
				wait = max(w, 0)
			}
		}
		timer.Reset(wait)
	}
}

// group is the entries sent as one notification.
type group struct {
	nid     string // "" until the first attempt is prepared
	entries []store.OutboxEntry
}

// groupEntries partitions entries (Seq order) into notifications: entries
// already given a notification id keep it (their membership is fixed, so a
// retry carries the same events under the same id); the others group by
// GroupKey, at most maxEvents per group.
func groupEntries(entries []store.OutboxEntry, maxEvents int) []*group {
	var out []*group
	byNID := map[string]*group{}
	open := map[string]*group{}
	for _, e := range entries {
		if e.NotificationID != "" {
			g := byNID[e.NotificationID]
			if g == nil {
				g = &group{nid: e.NotificationID}
				byNID[e.NotificationID] = g
				out = append(out, g)
			}
			g.entries = append(g.entries, e)
			continue
		}
		g := open[e.GroupKey]
		if g == nil || len(g.entries) >= maxEvents {
			g = &group{}
			open[e.GroupKey] = g
			out = append(out, g)
		}
		g.entries = append(g.entries, e)
	}
	return out
}

// readyAt is when g may be sent: a new group waits group_wait from its oldest
// event; a group already tried waits for its next attempt.
func (g *group) readyAt(wait time.Duration) time.Time {
	if g.nid == "" {
		oldest := g.entries[0].CreatedAt
		for _, e := range g.entries[1:] {
			if e.CreatedAt.Before(oldest) {
				oldest = e.CreatedAt
			}
		}
		return oldest.Add(wait)
	}
	var t time.Time
	for _, e := range g.entries {
		if e.NextAttemptAt.After(t) {
			t = e.NextAttemptAt
		}
	}
	return t
}

// subjects names what g's events are about: grant/<id>, provider/<name>,
// clock. Events about one subject must reach the receiver in order.
func (g *group) subjects() []string {
	var out []string
	for _, e := range g.entries {
		var ev struct {
			Grant    *struct{ ID string }   `json:"grant"`
			Provider *struct{ Name string } `json:"provider"`
			Clock    json.RawMessage        `json:"clock"`
		}
		if json.Unmarshal(e.Payload, &ev) != nil {
			continue
		}
		switch {
		case ev.Grant != nil:
			out = append(out, "grant/"+ev.Grant.ID)
		case ev.Provider != nil:
			out = append(out, "provider/"+ev.Provider.Name)
		case ev.Clock != nil:
			out = append(out, "clock")
		}
	}
	return out
}

func (g *group) seqs() []uint64 {
	s := make([]uint64, len(g.entries))
	for i, e := range g.entries {
		s[i] = e.Seq
	}
	return s
}

// pass looks at one receiver's outbox once: re-sends alerts when due,
// dead-letters what is too old, sends the groups that are ready. It returns
// when to look next (zero: at the poll interval).
func (d *Dispatcher) pass(ctx context.Context, rs *receiverState) time.Time {
	var next time.Time
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if r, ok := rs.sender.(resender); ok && d.opts.active != nil {
		if now := d.opts.now(); !now.Before(rs.nextResend) {
			d.resend(ctx, rs, r)
			rs.nextResend = now.Add(rs.cfg.ResendInterval)
		}
		soonest(rs.nextResend)
	}

	entries, err := d.ob.PendingOutbox(rs.cfg.Name, d.opts.limit)
	if err != nil {
		d.logFailure(rs, "read outbox", err, slog.String("receiver", rs.cfg.Name))
		soonest(d.opts.now().Add(d.opts.minBackoff))
		return next
	}
	now := d.opts.now()
	live := entries[:0:0]
	var expired []store.OutboxEntry
	for _, e := range entries {
		if now.Sub(e.CreatedAt) > rs.cfg.MaxAge {
			expired = append(expired, e)
		} else {
			live = append(live, e)
		}
	}
	if len(expired) > 0 {
		d.deadLetter(rs, expired, now)
	}

	wait := rs.cfg.wait()
	progressed := false
	// held lists the subjects (grant, provider, clock) of groups not
	// delivered in this pass: a later group about one of them waits, so that
	// a receiver never gets a resolve before the trigger it closes.
	held := map[string]bool{}
	hold := func(g *group) {
		for _, s := range g.subjects() {
			held[s] = true
		}
	}
	for _, g := range groupEntries(live, d.opts.maxEvents) {
		if len(held) > 0 {
			subs := g.subjects()
			if slices.ContainsFunc(subs, func(s string) bool { return held[s] }) {
				for _, s := range subs {
					held[s] = true
				}
				continue
			}
		}
		ready := g.readyAt(wait)
		if rs.blockedUntil.After(ready) {
			ready = rs.blockedUntil
		}
		if ready.After(now) {
			soonest(ready)
			hold(g)
			continue
		}
		if ctx.Err() != nil {
			return next
		}
		if retryAt, ok := d.deliver(ctx, rs, g); ok {
			progressed = true
		} else {
			hold(g)
			if !retryAt.IsZero() {
				soonest(retryAt)
			}
		}
		now = d.opts.now()
	}
	if progressed && len(entries) == d.opts.limit {
		soonest(now) // more may be waiting beyond this page
	}
	return next
}

// deadLetter moves entries past max_age out of the outbox, with one ERROR
// line for the lot.
func (d *Dispatcher) deadLetter(rs *receiverState, expired []store.OutboxEntry, now time.Time) {
	seqs := make([]uint64, len(expired))
	oldest := expired[0].CreatedAt
	lastErr := ""
	for i, e := range expired {
		seqs[i] = e.Seq
		if e.CreatedAt.Before(oldest) {
			oldest = e.CreatedAt
		}
		if e.LastError != "" {
			lastErr = e.LastError
		}
	}
	reason := fmt.Sprintf("not delivered within max_age %s", rs.cfg.MaxAge)
	if lastErr != "" {
		reason += ": " + lastErr
	}
	if err := d.ob.DeadLetter(rs.cfg.Name, reason, seqs...); err != nil {
		d.logFailure(rs, "dead-letter outbox entries", err, slog.String("receiver", rs.cfg.Name))
		return
	}
	d.log.Error("notifications dead-lettered",
		slog.String("receiver", rs.cfg.Name),
		slog.Int("events", len(seqs)),
		slog.Duration("max_age", rs.cfg.MaxAge),
		slog.Time("oldest", oldest),
		slog.String("last_error", rs.red.String(lastErr)),
		slog.String("fix", "grantwatch notify dead lists them; once the receiver works (notify test), grantwatch notify redeliver "+rs.cfg.Name+" sends them again"))
	rs.dead.Add(uint64(len(seqs)))
}

// deliver sends one group. It returns ok when the receiver accepted it, or
// the time of the next attempt.
func (d *Dispatcher) deliver(ctx context.Context, rs *receiverState, g *group) (retryAt time.Time, ok bool) {
	name := rs.cfg.Name
	if g.nid == "" {
		// Persist the id before the first attempt: if we crash after the
		// receiver accepted, the retry carries the same id and it can dedupe.
		g.nid = newID()
		for i := range g.entries {
			g.entries[i].NotificationID = g.nid
		}
		if err := d.ob.UpdateOutbox(g.entries...); err != nil {
			d.logFailure(rs, "store notification id", err, slog.String("receiver", name))
			return d.opts.now().Add(d.opts.minBackoff), false
		}
	}
	n := Notification{ID: g.nid, Receiver: name, Events: make([]Event, 0, len(g.entries))}
	var bad []uint64
	for _, e := range g.entries {
		var ev Event
		if err := json.Unmarshal(e.Payload, &ev); err != nil {
			bad = append(bad, e.Seq)
			continue
		}
		n.Events = append(n.Events, ev)
	}
	if len(bad) > 0 {
		// A payload this version cannot read will never send: set it aside.
		if err := d.ob.DeadLetter(name, "payload is not an event", bad...); err == nil {
			rs.dead.Add(uint64(len(bad)))
			d.log.Error("outbox entries unreadable, dead-lettered", slog.String("receiver", name), slog.Int("events", len(bad)))
		}
		if len(n.Events) == 0 {
			return time.Time{}, true
		}
	}

	d.addLinks(ctx, rs, n.Events)
	actx, cancel := context.WithTimeout(ctx, rs.cfg.Timeout)
	del, err := rs.sender.Send(actx, n)
	cancel()
	if ctx.Err() == nil {
		rs.record(d.opts.now(), err)
	}
	if err == nil {
		seqs := g.seqs()
		if aerr := d.ob.AckOutbox(name, seqs...); aerr != nil {
			// Delivered but not deleted: the retry carries the same id.
			d.logFailure(rs, "acknowledge outbox entries", aerr, slog.String("receiver", name))
			return d.opts.now().Add(d.opts.minBackoff), false
		}
		rs.sent.Add(1)
		rs.events.Add(uint64(len(n.Events)))
		if rs.lastErr != "" {
			d.log.Info("receiver accepts notifications again", slog.String("receiver", name))
			rs.lastErr = ""
		}
		d.log.Debug("notification delivered", slog.String("receiver", name),
			slog.String("notification", n.ID), slog.Int("events", len(n.Events)), slog.Int("status", del.Status))
		return time.Time{}, true
	}
	if ctx.Err() != nil {
		// Shutting down: not the receiver's fault; the next Run retries.
		return time.Time{}, false
	}
	rs.failed.Add(1)
	now := d.opts.now()
	attempts := g.entries[0].Attempts + 1
	wait := d.backoff(attempts, del.Retry)
	if del.RetryAfter > 0 {
		wait = min(del.RetryAfter, d.opts.maxRetryWait)
	}
	if del.RetryAfter > 0 || del.Status == http.StatusTooManyRequests {
		rs.blockedUntil = now.Add(wait)
	}
	retryAt = now.Add(wait)
	msg := short(rs.red.String(err.Error()))
	for i := range g.entries {
		g.entries[i].Attempts = attempts
		g.entries[i].NextAttemptAt = retryAt
		g.entries[i].LastError = msg
	}
	if uerr := d.ob.UpdateOutbox(g.entries...); uerr != nil {
		d.logFailure(rs, "store delivery attempt", uerr, slog.String("receiver", name))
	}
	level := slog.LevelDebug
	if msg != rs.lastErr {
		level = slog.LevelWarn
		rs.lastErr = msg
	}
	d.log.Log(ctx, level, "notification not delivered, will retry",
		slog.String("receiver", name),
		slog.String("notification", n.ID),
		slog.Int("events", len(n.Events)),
		slog.Int("attempt", attempts),
		slog.Duration("retry_in", wait),
		slog.String("err", msg))
	return retryAt, false
}

// backoff is the wait before attempt n+1 after n failures: min·2^(n-1)
// capped at max, with jitter in [d/2, d]. A refusal (not retryable) waits the
// maximum: someone must fix the receiver first.
func (d *Dispatcher) backoff(n int, retryable bool) time.Duration {
	b := d.opts.maxBackoff
	if retryable {
		b = d.opts.minBackoff
		for i := 1; i < n && b < d.opts.maxBackoff; i++ {
			b *= 2
		}
		b = min(b, d.opts.maxBackoff)
	}
	if b <= 1 {
		return b
	}
	half := b / 2
	return half + rand.N(b-half+1)
}

// resend re-posts every condition that still holds to an Alertmanager
// receiver, in batches.
func (d *Dispatcher) resend(ctx context.Context, rs *receiverState, r resender) {
	const batch = 1000
	var evs []Event
	var sendErr error
	flush := func() {
		if len(evs) == 0 || sendErr != nil {
			return
		}
		d.addLinks(ctx, rs, evs)
		actx, cancel := context.WithTimeout(ctx, rs.cfg.Timeout)
		_, sendErr = r.Resend(actx, evs)
		cancel()
		if ctx.Err() == nil {
			rs.record(d.opts.now(), sendErr)
		}
		evs = evs[:0]
	}
	err := d.opts.active.ActiveEvents(ctx, func(ev Event) error {
		if !d.router.Wants(rs.cfg.Name, ev) {
			return nil
		}
		evs = append(evs, ev)
		if len(evs) == batch {
			flush()
		}
		return sendErr
	})
	flush()
	if err == nil {
		err = sendErr
	}
	if err != nil {
		msg := short(rs.red.String(err.Error()))
		level := slog.LevelDebug
		if msg != rs.resendErr {
			level = slog.LevelWarn
		}
		rs.resendErr = msg
		d.log.Log(ctx, level, "alerts not re-sent", slog.String("receiver", rs.cfg.Name), slog.String("err", msg))
		return
	}
	rs.resendErr = ""
}

// logFailure logs a store error at WARN once per distinct message.
func (d *Dispatcher) logFailure(rs *receiverState, what string, err error, attrs ...slog.Attr) {
	msg := what + ": " + err.Error()
	level := slog.LevelDebug
	if msg != rs.lastErr {
		level = slog.LevelWarn
		rs.lastErr = msg
	}
	d.log.LogAttrs(context.Background(), level, "outbox", append(attrs, slog.String("err", msg))...)
}

package daemon

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lmittmann/tint"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/probes"
)

// ClockState is the clock checker's verdict on this host's clock.
type ClockState string

// The clock states. Their names appear in status output, events and logs.
const (
	// ClockOK: the offset is within clock.warn_offset.
	ClockOK ClockState = "ok"
	// ClockWarn: the offset is beyond clock.warn_offset but within
	// clock.max_offset. Verdicts are trusted; the operator should look.
	ClockWarn ClockState = "warn"
	// ClockSkewed: the offset is beyond clock.max_offset. Providers may
	// reject requests for it, so invalid_grant verdicts are held.
	ClockSkewed ClockState = "skewed"
	// ClockUnknown: no NTP server answered and no recent Date header tells.
	// It is not a skew: verdicts are trusted.
	ClockUnknown ClockState = "unknown"
)

// The sources of a clock estimate (ClockSnapshot.Source).
const (
	ClockSourceNTP        = "ntp"
	ClockSourceDateHeader = "date_header"
)

const (
	// clockDateRing is how many recent Date-header samples are kept per
	// provider.
	clockDateRing = 15
	// clockDateMinSamples is how many fresh Date-header samples, over all
	// providers, it takes before they count as evidence: one answer from a
	// misbehaving proxy must not hold every verdict.
	clockDateMinSamples = 3
	// clockDateMaxAge is how long a Date-header sample counts. Old samples
	// expire so that a fixed clock is seen even when few probes run (held
	// grants are not probed, so they send no new samples).
	clockDateMaxAge = 30 * time.Minute
	// clockDateWarnFloor: Date headers have one-second resolution, so they
	// alone never make the state warn below this offset.
	clockDateWarnFloor = 2 * time.Second
	// clockStepTolerance: a sample whose age by the wall clock differs from
	// its age by the monotonic clock by more than this was taken before the
	// clock was stepped (chronyc makestep) and no longer describes it.
	clockStepTolerance = time.Second
	// clockFix is the advice logged when the clock is skewed.
	clockFix = "sync the clock: chronyc makestep / timedatectl set-ntp true"
)

// ClockSnapshot is the clock checker's state at one moment. Offsets are this
// host's clock minus true time: positive when our clock is ahead.
type ClockSnapshot struct {
	// State is the verdict.
	State ClockState
	// Offset is the estimate the verdict is based on, from Source.
	Offset time.Duration
	// Source is "ntp", "date_header", or "" when State is unknown.
	Source string
	// NTPOffset is the median offset of the last NTP check; NTPOK reports
	// that at least one server answered validly, NTPServers how many.
	NTPOffset  time.Duration
	NTPOK      bool
	NTPServers int
	// DateOffset is the Date-header estimate: the median over providers of
	// each provider's median of its recent samples. DateSamples counts the
	// fresh samples; DateOffset is zero and not used while DateSamples is
	// below 3.
	DateOffset  time.Duration
	DateSamples int
	// CheckedAt is when the last NTP check (Check) ran; zero before the first.
	CheckedAt time.Time
	// ChangedAt is when State last changed (by Check or ObserveDate); zero
	// while it is the initial unknown.
	ChangedAt time.Time
}

// Clock watches this host's clock: an NTP check on the daemon's schedule
// (Check) and the Date headers of provider answers (ObserveDate).
//
// The state rule: when an NTP server answered at the last check, NTP decides;
// |offset| > MaxOffset is skewed, > WarnOffset is warn, else ok. Without an
// NTP answer the Date-header estimate decides, once it has 3 fresh samples:
// skewed beyond MaxOffset, warn beyond max(WarnOffset, 2s), else ok. With
// neither the state is unknown, which is not a skew. Date headers arriving
// while NTP answers change the estimate shown, never the state.
//
// Hysteresis: a state is entered when |offset| exceeds its threshold and left
// only when |offset| has fallen below 80% of it (skewed is left at or below
// 0.8×MaxOffset, warn at or below 0.8×WarnOffset), so an offset hovering at a
// threshold does not flap. Entering a worse state has no margin.
//
// All methods are safe for concurrent use. ObserveDate and Skewed are cheap
// enough to call on every probe.
type Clock struct {
	servers   []string
	warn, max time.Duration
	log       *slog.Logger
	query     func(ctx context.Context, servers []string) probes.ClockReading
	now       func() time.Time

	skewed atomic.Bool // snap.State == ClockSkewed, read without the lock

	checkMu   sync.Mutex // serializes Check
	deliverMu sync.Mutex // orders transition logs and OnChange calls

	mu          sync.Mutex
	snap        ClockSnapshot
	ntpDown     bool // the last check got no NTP answer (and it was logged)
	ntpOffNoted bool // "ntp checks off" was logged
	dates       map[string]*clockRing
	medians     []time.Duration // scratch for the per-provider medians
	onChange    []func(from, to ClockSnapshot)
	pending     []clockChange
}

// clockRing holds a provider's most recent Date-header offsets.
type clockRing struct {
	offset [clockDateRing]time.Duration
	at     [clockDateRing]time.Time // c.now() when observed
	n      int                      // valid entries
	next   int                      // where the next one goes
}

type clockChange struct {
	from, to ClockSnapshot
	// quiet: this change was already told by the "ntp unreachable" line.
	quiet bool
}

// NewClock returns a clock checker in state unknown. cfg comes from config
// loading, which fills the defaults; an empty cfg.Servers turns the NTP check
// off, and a non-positive WarnOffset or MaxOffset takes its default (1s,
// 30s). query is the NTP probe (probes.QueryClock when nil) and now the
// clock the checker reads (time.Now when nil); tests inject both. A nil
// logger discards.
func NewClock(cfg config.ClockConfig, logger *slog.Logger, query func(ctx context.Context, servers []string) probes.ClockReading, now func() time.Time) *Clock {
	c := &Clock{
		servers: slices.Clone(cfg.Servers),
		warn:    cfg.WarnOffset,
		max:     cfg.MaxOffset,
		log:     logger,
		query:   query,
		now:     now,
		snap:    ClockSnapshot{State: ClockUnknown},
		dates:   make(map[string]*clockRing),
	}
	if c.warn <= 0 {
		c.warn = time.Second
	}
	if c.max <= 0 {
		c.max = 30 * time.Second
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.query == nil {
		c.query = probes.QueryClock
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// OnChange registers f to be called after every change of State, with the
// snapshots before and after. Calls are made one at a time, in the order of
// the changes, from the goroutine that caused the change (Check or
// ObserveDate), without any lock of the Clock held: f may call Snapshot and
// Skewed but not Check or ObserveDate, and should only enqueue work. The
// daemon sends clock.skewed when to.State is ClockSkewed, and clock.ok (and
// releases held grants) when from.State is ClockSkewed.
func (c *Clock) OnChange(f func(from, to ClockSnapshot)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onChange = append(c.onChange, f)
}

// Snapshot returns the current state and both estimates.
func (c *Clock) Snapshot() ClockSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

// Skewed reports whether the clock is known to be off beyond MaxOffset, so
// that an invalid_grant verdict cannot be trusted. It takes no lock.
func (c *Clock) Skewed() bool { return c.skewed.Load() }

// Check runs one NTP check: it queries the configured servers (none when the
// list is empty), re-evaluates the state, logs, and calls the OnChange
// functions if the state changed, which it reports. ctx bounds the queries;
// give it a deadline (each query otherwise waits up to 5s). Concurrent calls
// run one after the other.
func (c *Clock) Check(ctx context.Context) (changed bool) {
	c.checkMu.Lock()
	defer c.checkMu.Unlock()

	ntpOn := len(c.servers) > 0
	var r probes.ClockReading
	if ntpOn {
		r = c.query(ctx, c.servers)
	}
	now := c.now()

	c.mu.Lock()
	next := c.snap
	next.CheckedAt = now
	next.NTPOK, next.NTPServers, next.NTPOffset = r.OK, r.Servers, 0
	if r.OK {
		next.NTPOffset = r.Offset
	}
	down := ntpOn && !r.OK
	wentDown, cameBack := down && !c.ntpDown, !down && c.ntpDown
	c.ntpDown = down
	noteOff := !ntpOn && !c.ntpOffNoted
	c.ntpOffNoted = c.ntpOffNoted || noteOff
	changed = c.setLocked(c.evaluateLocked(next, now), wentDown)
	snap := c.snap
	c.mu.Unlock()

	switch {
	case wentDown:
		c.log.Warn("ntp unreachable",
			"servers", len(c.servers), firstClockErr(r),
			"state", snap.State, "date_samples", snap.DateSamples,
			"hint", "clock state falls back to provider Date headers; allow UDP 123 to clock.servers, point them at an internal NTP server, or set servers = [] to rely on Date headers")
	case cameBack:
		c.log.Info("ntp reachable", "servers", r.Servers, "ntp_offset", r.Offset, "state", snap.State)
	case down:
		c.log.Debug("ntp unreachable", "servers", len(c.servers), firstClockErr(r), "state", snap.State)
	case noteOff:
		c.log.Info("ntp checks off (clock.servers is empty): the clock is judged by provider Date headers only")
	}
	if changed {
		c.deliver() // the change's line carries the check's attributes
	} else {
		c.log.Debug("clock check", clockAttrs(snap)...)
	}
	return changed
}

// ObserveDate adds a Date-header sample of provider: date is the header's
// value, sent when the request was sent, latency the full round trip (see
// probes.DateOffset). A zero date or sent is no sample. It re-evaluates the
// state, so Date-header skew is seen at once when NTP is unreachable; if the
// state changes it logs and calls the OnChange functions before returning.
// It does not allocate, except for a provider's first sample.
func (c *Clock) ObserveDate(provider string, date, sent time.Time, latency time.Duration) {
	if date.IsZero() || sent.IsZero() {
		return
	}
	off := probes.DateOffset(date, sent, latency)
	now := c.now()

	c.mu.Lock()
	r := c.dates[provider]
	if r == nil {
		r = new(clockRing)
		c.dates[provider] = r
	}
	r.offset[r.next], r.at[r.next] = off, now
	r.next = (r.next + 1) % clockDateRing
	r.n = min(r.n+1, clockDateRing)
	changed := c.setLocked(c.evaluateLocked(c.snap, now), false)
	c.mu.Unlock()

	if changed {
		c.deliver()
	}
}

// evaluateLocked recomputes the Date-header estimate and the state of next,
// whose NTP fields are current. c.mu is held.
func (c *Clock) evaluateLocked(next ClockSnapshot, now time.Time) ClockSnapshot {
	next.DateOffset, next.DateSamples = c.dateEstimateLocked(now)
	dateOK := next.DateSamples >= clockDateMinSamples
	if !dateOK {
		next.DateOffset = 0
	}
	prev := c.snap.State
	switch {
	case next.NTPOK:
		next.Source, next.Offset = ClockSourceNTP, next.NTPOffset
		next.State = clockLevel(next.Offset, prev, c.warn, c.max)
	case dateOK:
		next.Source, next.Offset = ClockSourceDateHeader, next.DateOffset
		next.State = clockLevel(next.Offset, prev, max(c.warn, clockDateWarnFloor), c.max)
	default:
		next.Source, next.Offset, next.State = "", 0, ClockUnknown
	}
	if next.State != prev {
		next.ChangedAt = now
	}
	return next
}

// dateEstimateLocked returns the median over providers of each provider's
// median of its fresh samples, and how many fresh samples there are. For an
// even number of providers it takes the middle value nearer zero: skew is
// only concluded when at least half the providers' clocks (or one of one)
// agree, so one provider with a wrong clock among two cannot hold verdicts.
// c.mu is held.
func (c *Clock) dateEstimateLocked(now time.Time) (time.Duration, int) {
	c.medians = c.medians[:0]
	total := 0
	for _, r := range c.dates {
		var fresh [clockDateRing]time.Duration
		n := 0
		for i := range r.n {
			if clockSampleFresh(r.at[i], now) {
				fresh[n] = r.offset[i]
				n++
			}
		}
		if n == 0 {
			continue
		}
		total += n
		c.medians = append(c.medians, clockMedian(fresh[:n]))
	}
	if len(c.medians) == 0 {
		return 0, 0
	}
	slices.Sort(c.medians)
	m := len(c.medians)
	if m%2 == 1 {
		return c.medians[m/2], total
	}
	lo, hi := c.medians[m/2-1], c.medians[m/2]
	if clockAbs(lo) < clockAbs(hi) {
		return lo, total
	}
	return hi, total
}

// clockSampleFresh reports whether a sample observed at at still counts at
// now: not older than clockDateMaxAge, and not from before a step of the
// wall clock. Times from time.Now carry a monotonic reading; when the wall
// clock was stepped between at and now, the wall-clock age and the
// monotonic age differ by the step. Without monotonic readings (injected
// clocks) both ages are the same.
func clockSampleFresh(at, now time.Time) bool {
	age := now.Sub(at)
	wallAge := now.Round(0).Sub(at.Round(0))
	return age <= clockDateMaxAge && wallAge <= clockDateMaxAge &&
		clockAbs(wallAge-age) <= clockStepTolerance
}

// clockLevel is the state for offset off given the previous state, with the
// hysteresis described on Clock.
func clockLevel(off time.Duration, prev ClockState, warn, maxOff time.Duration) ClockState {
	a := clockAbs(off)
	switch {
	case a > maxOff, prev == ClockSkewed && a > maxOff-maxOff/5:
		return ClockSkewed
	case a > warn, (prev == ClockWarn || prev == ClockSkewed) && a > warn-warn/5:
		return ClockWarn
	}
	return ClockOK
}

// setLocked makes next the current snapshot and queues a change when the
// state differs; it reports whether it did. c.mu is held.
func (c *Clock) setLocked(next ClockSnapshot, quiet bool) bool {
	prev := c.snap
	c.snap = next
	c.skewed.Store(next.State == ClockSkewed)
	if prev.State == next.State {
		return false
	}
	c.pending = append(c.pending, clockChange{from: prev, to: next, quiet: quiet})
	return true
}

// deliver logs the queued changes and calls the OnChange functions, in
// order. Whoever calls it first after a change delivers every change queued
// until then; deliverMu keeps the batches in order.
func (c *Clock) deliver() {
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	c.mu.Lock()
	changes, fns := c.pending, c.onChange
	c.pending = nil
	c.mu.Unlock()
	for _, ch := range changes {
		c.logChange(ch)
		for _, f := range fns {
			f(ch.from, ch.to)
		}
	}
}

// logChange logs a state change once, at the level its new state deserves.
func (c *Clock) logChange(ch clockChange) {
	to := ch.to
	switch to.State {
	case ClockSkewed:
		c.log.Error("clock skewed", append(clockAttrs(to),
			"max_offset", c.max, "fix", clockFix)...)
	case ClockWarn:
		c.log.Warn("clock offset high", append(clockAttrs(to),
			"warn_offset", c.warn, "max_offset", c.max)...)
	case ClockOK:
		level := slog.LevelInfo
		if ch.from.State == ClockUnknown {
			// The first check at start (or a recovery told by "ntp
			// reachable"): nothing was wrong that this resolves.
			level = slog.LevelDebug
		}
		c.log.Log(context.Background(), level, "clock ok", clockAttrs(to)...)
	case ClockUnknown:
		level := slog.LevelWarn
		if ch.quiet {
			level = slog.LevelDebug
		}
		c.log.Log(context.Background(), level, "clock unknown",
			"reason", "no ntp answer and no recent provider Date headers; verdicts are not held",
			"from", ch.from.State)
	}
}

// clockAttrs are the log attributes describing a snapshot.
func clockAttrs(s ClockSnapshot) []any {
	dir := ""
	switch {
	case s.Offset > 0:
		dir = "ahead"
	case s.Offset < 0:
		dir = "behind"
	}
	return []any{
		"state", s.State, "offset", s.Offset, "direction", dir, "source", s.Source,
		"ntp_ok", s.NTPOK, "ntp_offset", s.NTPOffset, "ntp_servers", s.NTPServers,
		"date_offset", s.DateOffset, "date_samples", s.DateSamples,
	}
}

// firstClockErr is the first sample error of r, as the err attribute.
func firstClockErr(r probes.ClockReading) slog.Attr {
	for _, s := range r.Samples {
		if s.Err != nil {
			return tint.Err(s.Err)
		}
	}
	return slog.Attr{}
}

// clockMedian returns the median of ds (the mean of the middle two for an
// even count), reordering ds.
func clockMedian(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return ds[n/2-1] + (ds[n/2]-ds[n/2-1])/2
}

func clockAbs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

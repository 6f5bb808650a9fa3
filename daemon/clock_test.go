package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
)

// clockLog captures a Clock's log lines (text handler, level DEBUG).
type clockLog struct{ testutil.LogBuffer }

func (l *clockLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// count returns how many lines were logged at each level (keys "DEBUG",
// "INFO", "WARN", "ERROR").
func (l *clockLog) count() map[string]int {
	n := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		for _, lv := range []string{"DEBUG", "INFO", "WARN", "ERROR"} {
			if strings.Contains(line, " level="+lv+" ") {
				n[lv]++
			}
		}
	}
	return n
}

// above returns the lines logged above DEBUG.
func (l *clockLog) above() []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line != "" && !strings.Contains(line, " level=DEBUG ") {
			out = append(out, line)
		}
	}
	return out
}

// clockNow is an injected clock.
type clockNow struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clockNow) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clockNow) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// clockNTP is a fake NTP probe: one server, answering offset (our clock
// minus true time) unless down.
type clockNTP struct {
	mu     sync.Mutex
	offset time.Duration
	down   bool
	calls  int
}

func (f *clockNTP) set(offset time.Duration, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.offset, f.down = offset, down
}

func (f *clockNTP) query(_ context.Context, servers []string) probes.ClockReading {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return probes.ClockReading{Samples: []probes.ClockSample{{Server: servers[0], Err: errors.New("i/o timeout")}}}
	}
	return probes.ClockReading{Offset: f.offset, Servers: 1, OK: true,
		Samples: []probes.ClockSample{{Server: servers[0], Offset: f.offset, RTT: time.Millisecond}}}
}

// clockChanges records OnChange calls.
type clockChanges struct {
	mu  sync.Mutex
	got []string // "from>to"
}

func (c *clockChanges) record(from, to ClockSnapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, string(from.State)+">"+string(to.State))
}

func (c *clockChanges) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

var clockT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type clockRig struct {
	clock   *Clock
	log     *clockLog
	now     *clockNow
	ntp     *clockNTP
	changes *clockChanges
}

func newClockRig(t *testing.T, cfg config.ClockConfig) *clockRig {
	t.Helper()
	r := &clockRig{log: &clockLog{}, now: &clockNow{t: clockT0}, ntp: &clockNTP{}, changes: &clockChanges{}}
	if cfg.Servers == nil {
		cfg.Servers = []string{"127.0.0.1:1"} // never dialled: the probe is fake
	}
	if cfg.WarnOffset == 0 {
		cfg.WarnOffset = time.Second
	}
	if cfg.MaxOffset == 0 {
		cfg.MaxOffset = 30 * time.Second
	}
	r.clock = NewClock(cfg, r.log.logger(), r.ntp.query, r.now.now)
	r.clock.OnChange(r.changes.record)
	return r
}

// observe feeds n Date-header samples of provider saying our clock is off by
// skew (ahead when positive), with a 100ms round trip.
func (r *clockRig) observe(provider string, skew time.Duration, n int) {
	for range n {
		sent := r.now.now()
		// The provider's clock at mid-flight, truncated to the second as
		// a Date header is.
		date := sent.Add(50*time.Millisecond - skew).Truncate(time.Second)
		r.clock.ObserveDate(provider, date, sent, 100*time.Millisecond)
		r.now.advance(1300 * time.Millisecond) // vary the truncation
	}
}

func equalStrings(a, b []string) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// TestClockNTPOffsets: one offset per case, checked many times. Within
// warn_offset nothing is logged above DEBUG; beyond it, exactly one line at
// the state's level and one OnChange, however many checks.
func TestClockNTPOffsets(t *testing.T) {
	tests := []struct {
		offset time.Duration
		want   ClockState
		level  string // the one line above DEBUG; "" for none
	}{
		{0, ClockOK, ""},
		{500 * time.Millisecond, ClockOK, ""},
		{-500 * time.Millisecond, ClockOK, ""},
		{time.Second, ClockOK, ""}, // at the threshold: not beyond it
		{1500 * time.Millisecond, ClockWarn, "WARN"},
		{-1500 * time.Millisecond, ClockWarn, "WARN"},
		{30 * time.Second, ClockWarn, "WARN"},
		{31 * time.Second, ClockSkewed, "ERROR"},
		{5 * time.Minute, ClockSkewed, "ERROR"},
		{-5 * time.Minute, ClockSkewed, "ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.offset.String(), func(t *testing.T) {
			r := newClockRig(t, config.ClockConfig{})
			r.ntp.set(tt.offset, false)
			for range 10 {
				r.clock.Check(t.Context())
				r.now.advance(10 * time.Minute)
			}
			s := r.clock.Snapshot()
			if s.State != tt.want || s.Offset != tt.offset || s.Source != ClockSourceNTP || !s.NTPOK || s.NTPServers != 1 {
				t.Errorf("snapshot %+v, want %s at %v from ntp", s, tt.want, tt.offset)
			}
			if got := r.clock.Skewed(); got != (tt.want == ClockSkewed) {
				t.Errorf("Skewed() = %v", got)
			}
			above := r.log.above()
			switch {
			case tt.level == "" && len(above) != 0:
				t.Errorf("logged above DEBUG:\n%s", strings.Join(above, "\n"))
			case tt.level != "" && (len(above) != 1 || !strings.Contains(above[0], "level="+tt.level)):
				t.Errorf("lines above DEBUG:\n%s\nwant one at %s", strings.Join(above, "\n"), tt.level)
			}
			if want := []string{"unknown>" + string(tt.want)}; !equalStrings(r.changes.list(), want) {
				t.Errorf("OnChange calls %v, want %v", r.changes.list(), want)
			}
		})
	}
}

// TestClockSkewedOnceAndBack runs against the sandbox NTP server: +5 min
// turns the clock skewed once (one ERROR line with the fix, one OnChange)
// across many checks; back to 0, ok once (one INFO line).
func TestClockSkewedOnceAndBack(t *testing.T) {
	srv, err := sandbox.StartNTP()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	log, changes := &clockLog{}, &clockChanges{}
	c := NewClock(config.ClockConfig{Servers: []string{srv.Addr()}, WarnOffset: time.Second, MaxOffset: 30 * time.Second},
		log.logger(), probes.QueryClock, time.Now)
	c.OnChange(changes.record)
	check := func(n int) {
		for range n {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			c.Check(ctx)
			cancel()
		}
	}

	check(3)
	if s := c.Snapshot(); s.State != ClockOK {
		t.Fatalf("in sync: snapshot %+v, want ok", s)
	}
	if above := log.above(); len(above) != 0 {
		t.Errorf("in sync: logged above DEBUG:\n%s", strings.Join(above, "\n"))
	}

	srv.SetOffset(5 * time.Minute) // the server is ahead: we are 5 min behind
	check(10)
	s := c.Snapshot()
	if s.State != ClockSkewed || !c.Skewed() || s.Source != ClockSourceNTP {
		t.Fatalf("at +5m: snapshot %+v, want skewed from ntp", s)
	}
	if d := s.Offset + 5*time.Minute; d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("offset %v, want -5m ± 50ms", s.Offset)
	}
	above := log.above()
	if len(above) != 1 || !strings.Contains(above[0], "level=ERROR") || !strings.Contains(above[0], `msg="clock skewed"`) ||
		!strings.Contains(above[0], "chronyc makestep") || !strings.Contains(above[0], "direction=behind") {
		t.Errorf("at +5m: lines above DEBUG:\n%s\nwant one ERROR \"clock skewed\" with the fix", strings.Join(above, "\n"))
	}

	log.Reset()
	srv.SetOffset(0)
	check(10)
	if s := c.Snapshot(); s.State != ClockOK || c.Skewed() {
		t.Fatalf("back to 0: snapshot %+v, want ok", s)
	}
	if n := log.count(); n["INFO"] != 1 || n["WARN"]+n["ERROR"] != 0 {
		t.Errorf("back to 0: lines by level %v, want one INFO", n)
	}
	if want := []string{"unknown>ok", "ok>skewed", "skewed>ok"}; !equalStrings(changes.list(), want) {
		t.Errorf("OnChange calls %v, want %v", changes.list(), want)
	}
}

// TestClockNTPUnreachable: the sandbox drops every packet. The state is
// unknown, not skewed, and one WARN line is logged across 10 checks; when
// NTP answers again, one INFO line.
func TestClockNTPUnreachable(t *testing.T) {
	srv, err := sandbox.StartNTP()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetDown(true)
	log, changes := &clockLog{}, &clockChanges{}
	c := NewClock(config.ClockConfig{Servers: []string{srv.Addr()}}, log.logger(), probes.QueryClock, time.Now)
	c.OnChange(changes.record)
	check := func(timeout time.Duration) {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		c.Check(ctx)
	}

	for range 10 {
		check(50 * time.Millisecond)
	}
	s := c.Snapshot()
	if s.State != ClockUnknown || c.Skewed() || s.NTPOK || s.Source != "" || s.CheckedAt.IsZero() {
		t.Errorf("snapshot %+v, want unknown, not skewed", s)
	}
	above := log.above()
	if len(above) != 1 || !strings.Contains(above[0], "level=WARN") || !strings.Contains(above[0], `msg="ntp unreachable"`) {
		t.Errorf("lines above DEBUG:\n%s\nwant one WARN \"ntp unreachable\"", strings.Join(above, "\n"))
	}
	if srv.Queries() != 10 {
		t.Errorf("sandbox saw %d queries, want 10", srv.Queries())
	}
	if got := changes.list(); len(got) != 0 {
		t.Errorf("OnChange calls %v, want none (unknown from the start)", got)
	}

	log.Reset()
	srv.SetDown(false)
	check(2 * time.Second)
	check(2 * time.Second)
	if s := c.Snapshot(); s.State != ClockOK {
		t.Errorf("back up: snapshot %+v, want ok", s)
	}
	if above := log.above(); len(above) != 1 || !strings.Contains(above[0], `msg="ntp reachable"`) {
		t.Errorf("back up: lines above DEBUG:\n%s\nwant one INFO \"ntp reachable\"", strings.Join(above, "\n"))
	}
}

// TestClockUnreachableAfterSkew: NTP said skewed, then stops answering with
// no Date headers to tell: unknown (holds released), with the one WARN line.
func TestClockUnreachableAfterSkew(t *testing.T) {
	r := newClockRig(t, config.ClockConfig{})
	r.ntp.set(5*time.Minute, false)
	r.clock.Check(t.Context())
	r.log.Reset()
	r.ntp.set(0, true)
	for range 5 {
		r.clock.Check(t.Context())
	}
	if s := r.clock.Snapshot(); s.State != ClockUnknown || r.clock.Skewed() {
		t.Errorf("snapshot %+v, want unknown", s)
	}
	if n := r.log.count(); n["WARN"] != 1 || n["ERROR"]+n["INFO"] != 0 {
		t.Errorf("lines by level %v, want one WARN", n)
	}
	if want := []string{"unknown>skewed", "skewed>unknown"}; !equalStrings(r.changes.list(), want) {
		t.Errorf("OnChange calls %v, want %v", r.changes.list(), want)
	}
}

// TestClockDateHeaderSkew: NTP unreachable, the providers' Date headers say
// our clock is 5 min ahead. Skewed from the third sample, logged once,
// whatever the number of samples and checks.
func TestClockDateHeaderSkew(t *testing.T) {
	r := newClockRig(t, config.ClockConfig{})
	r.ntp.set(0, true)
	r.clock.Check(t.Context())
	r.log.Reset()

	r.observe("google", 5*time.Minute, 2)
	if s := r.clock.Snapshot(); s.State != ClockUnknown || s.DateSamples != 2 || s.DateOffset != 0 {
		t.Fatalf("after 2 samples: snapshot %+v, want unknown (too few samples)", s)
	}
	r.observe("google", 5*time.Minute, 1)
	if !r.clock.Skewed() {
		t.Fatalf("after 3 samples: not skewed: %+v", r.clock.Snapshot())
	}
	if s := r.clock.Snapshot(); !s.ChangedAt.Equal(r.now.now().Add(-1300*time.Millisecond)) || !s.CheckedAt.Equal(clockT0) {
		t.Errorf("ChangedAt %v, CheckedAt %v; want the third sample's time and the check's", s.ChangedAt, s.CheckedAt)
	}
	r.observe("microsoft", 5*time.Minute, 20)
	r.clock.Check(t.Context())
	r.clock.Check(t.Context())
	s := r.clock.Snapshot()
	if s.State != ClockSkewed || s.Source != ClockSourceDateHeader || s.DateSamples != 18 {
		t.Errorf("snapshot %+v, want skewed from date_header with 18 samples", s)
	}
	if d := s.Offset - 5*time.Minute; d < -time.Second || d > time.Second {
		t.Errorf("offset %v, want 5m ± 1s", s.Offset)
	}
	above := r.log.above()
	if len(above) != 1 || !strings.Contains(above[0], "level=ERROR") || !strings.Contains(above[0], "source=date_header") ||
		!strings.Contains(above[0], "direction=ahead") {
		t.Errorf("lines above DEBUG:\n%s\nwant one ERROR from date_header", strings.Join(above, "\n"))
	}
	if want := []string{"unknown>skewed"}; !equalStrings(r.changes.list(), want) {
		t.Errorf("OnChange calls %v, want %v", r.changes.list(), want)
	}

	// NTP answers again, in sync: NTP decides; the Date headers that keep
	// saying +5m change the estimate shown, not the state.
	r.ntp.set(0, false)
	r.clock.Check(t.Context())
	r.observe("google", 5*time.Minute, 10)
	s = r.clock.Snapshot()
	if s.State != ClockOK || s.Source != ClockSourceNTP || s.DateOffset < 4*time.Minute {
		t.Errorf("ntp back: snapshot %+v, want ok from ntp, the date estimate still shown", s)
	}
	if want := []string{"unknown>skewed", "skewed>ok"}; !equalStrings(r.changes.list(), want) {
		t.Errorf("OnChange calls %v, want %v", r.changes.list(), want)
	}
}

// TestClockDateHeaderSmallOffsets: with NTP unreachable, Date headers within
// ±1.5s (their resolution is 1s) make the state ok and log nothing but the
// "ntp unreachable" line.
func TestClockDateHeaderSmallOffsets(t *testing.T) {
	for _, skew := range []time.Duration{0, 500 * time.Millisecond, -500 * time.Millisecond, 1500 * time.Millisecond, -1500 * time.Millisecond} {
		t.Run(skew.String(), func(t *testing.T) {
			r := newClockRig(t, config.ClockConfig{})
			r.ntp.set(0, true)
			r.clock.Check(t.Context())
			r.observe("google", skew, 15)
			r.clock.Check(t.Context())
			if s := r.clock.Snapshot(); s.State != ClockOK || s.Source != ClockSourceDateHeader {
				t.Errorf("snapshot %+v, want ok from date_header", s)
			}
			if n := r.log.count(); n["WARN"] != 1 || n["INFO"]+n["ERROR"] != 0 {
				t.Errorf("lines by level %v, want only the ntp unreachable WARN", n)
			}
		})
	}
}

// TestClockDateHeaderWarn: Date headers alone warn only beyond 2s.
func TestClockDateHeaderWarn(t *testing.T) {
	r := newClockRig(t, config.ClockConfig{Servers: []string{}})
	r.observe("google", 10*time.Second, 5)
	if s := r.clock.Snapshot(); s.State != ClockWarn {
		t.Errorf("snapshot %+v, want warn", s)
	}
	if r.ntp.calls != 0 {
		t.Errorf("NTP queried %d times with servers = []", r.ntp.calls)
	}
}

// TestClockDateHeaderMajority: skew from Date headers needs half the
// providers or more to agree.
func TestClockDateHeaderMajority(t *testing.T) {
	tests := []struct {
		name   string
		skews  []time.Duration // per provider
		skewed bool
	}{
		{"one provider", []time.Duration{5 * time.Minute}, true},
		{"one of two", []time.Duration{5 * time.Minute, 0}, false},
		{"one of two, behind", []time.Duration{-5 * time.Minute, 0}, false},
		{"two of two", []time.Duration{5 * time.Minute, 6 * time.Minute}, true},
		{"one of three", []time.Duration{5 * time.Minute, 0, 0}, false},
		{"two of three", []time.Duration{5 * time.Minute, 0, 5 * time.Minute}, true},
		{"two of four", []time.Duration{5 * time.Minute, 0, 5 * time.Minute, 0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newClockRig(t, config.ClockConfig{Servers: []string{}})
			for i, skew := range tt.skews {
				r.observe(fmt.Sprintf("p%d", i), skew, 5)
			}
			if got := r.clock.Skewed(); got != tt.skewed {
				t.Errorf("Skewed() = %v, want %v (%+v)", got, tt.skewed, r.clock.Snapshot())
			}
		})
	}
}

// TestClockDateHeaderRecovery: Date-header evidence follows the clock: the
// ring keeps 15 samples per provider, so 8 good ones outvote 7 old skewed
// ones; samples older than 30 minutes no longer count.
func TestClockDateHeaderRecovery(t *testing.T) {
	r := newClockRig(t, config.ClockConfig{Servers: []string{}})
	r.observe("google", 5*time.Minute, 15)
	if !r.clock.Skewed() {
		t.Fatal("not skewed after 15 skewed samples")
	}
	r.observe("google", 0, 7)
	if !r.clock.Skewed() {
		t.Fatal("not skewed with 8 of 15 samples skewed")
	}
	r.observe("google", 0, 1)
	if s := r.clock.Snapshot(); s.State != ClockOK || s.DateSamples != clockDateRing {
		t.Fatalf("snapshot %+v, want ok with %d samples", s, clockDateRing)
	}

	r.now.advance(31 * time.Minute)
	r.clock.Check(t.Context())
	if s := r.clock.Snapshot(); s.State != ClockUnknown || s.DateSamples != 0 {
		t.Errorf("after 31 min: snapshot %+v, want unknown with no fresh samples", s)
	}
	if n := r.log.count(); n["WARN"] != 1 {
		t.Errorf("lines by level %v, want one WARN (clock unknown)", n)
	}
	if want := []string{"unknown>skewed", "skewed>ok", "ok>unknown"}; !equalStrings(r.changes.list(), want) {
		t.Errorf("OnChange calls %v, want %v", r.changes.list(), want)
	}
}

func TestClockIgnoresZeroDate(t *testing.T) {
	r := newClockRig(t, config.ClockConfig{Servers: []string{}})
	for range 5 {
		r.clock.ObserveDate("google", time.Time{}, clockT0, time.Millisecond)
	}
	if s := r.clock.Snapshot(); s.DateSamples != 0 || s.State != ClockUnknown {
		t.Errorf("snapshot %+v, want no samples", s)
	}
}

// TestClockHysteresis: offsets hovering at a threshold do not flap; the
// state is left only at or below 80% of the threshold.
func TestClockHysteresis(t *testing.T) {
	steps := []struct {
		offset time.Duration
		want   ClockState
	}{
		{500 * time.Millisecond, ClockOK},
		{1050 * time.Millisecond, ClockWarn}, // beyond 1s: warn
		{950 * time.Millisecond, ClockWarn},  // hovering: stays
		{1100 * time.Millisecond, ClockWarn},
		{850 * time.Millisecond, ClockWarn}, // still above 0.8s
		{-900 * time.Millisecond, ClockWarn},
		{800 * time.Millisecond, ClockOK}, // at 80%: ok
		{950 * time.Millisecond, ClockOK}, // entering needs beyond 1s again
		{31 * time.Second, ClockSkewed},
		{29 * time.Second, ClockSkewed}, // hovering at 30s
		{31 * time.Second, ClockSkewed},
		{-25 * time.Second, ClockSkewed}, // above 24s
		{23 * time.Second, ClockWarn},    // below 24s, above the warn threshold
		{25 * time.Second, ClockWarn},    // entering skewed needs beyond 30s
		{0, ClockOK},
	}
	r := newClockRig(t, config.ClockConfig{})
	for i, st := range steps {
		r.ntp.set(st.offset, false)
		r.clock.Check(t.Context())
		if got := r.clock.Snapshot().State; got != st.want {
			t.Fatalf("step %d (%v): state %s, want %s", i, st.offset, got, st.want)
		}
	}
	want := []string{"unknown>ok", "ok>warn", "warn>ok", "ok>skewed", "skewed>warn", "warn>ok"}
	if !equalStrings(r.changes.list(), want) {
		t.Errorf("OnChange calls %v, want %v", r.changes.list(), want)
	}
	if n := r.log.count(); n["WARN"] != 2 || n["ERROR"] != 1 || n["INFO"] != 2 {
		t.Errorf("lines by level %v, want 2 WARN, 1 ERROR, 2 INFO (one per change)", n)
	}
}

func TestClockLevel(t *testing.T) {
	const warn, maxOff = time.Second, 30 * time.Second
	tests := []struct {
		off  time.Duration
		prev ClockState
		want ClockState
	}{
		{0, ClockUnknown, ClockOK},
		{31 * time.Second, ClockUnknown, ClockSkewed},
		{25 * time.Second, ClockUnknown, ClockWarn},
		{25 * time.Second, ClockSkewed, ClockSkewed},
		{24 * time.Second, ClockSkewed, ClockWarn},
		{900 * time.Millisecond, ClockSkewed, ClockWarn},
		{800 * time.Millisecond, ClockSkewed, ClockOK},
		{900 * time.Millisecond, ClockOK, ClockOK},
		{-900 * time.Millisecond, ClockWarn, ClockWarn},
	}
	for _, tt := range tests {
		if got := clockLevel(tt.off, tt.prev, warn, maxOff); got != tt.want {
			t.Errorf("clockLevel(%v, %s) = %s, want %s", tt.off, tt.prev, got, tt.want)
		}
	}
}

// TestClockNTPOff: servers = [] never queries; it says so once at INFO.
func TestClockNTPOff(t *testing.T) {
	r := newClockRig(t, config.ClockConfig{Servers: []string{}})
	for range 5 {
		r.clock.Check(t.Context())
	}
	if r.ntp.calls != 0 {
		t.Errorf("NTP queried %d times", r.ntp.calls)
	}
	if n := r.log.count(); n["INFO"] != 1 || n["WARN"]+n["ERROR"] != 0 {
		t.Errorf("lines by level %v, want one INFO", n)
	}
	if s := r.clock.Snapshot(); s.State != ClockUnknown {
		t.Errorf("snapshot %+v, want unknown", s)
	}
}

func TestClockObserveDateAllocs(t *testing.T) {
	c := NewClock(config.ClockConfig{Servers: []string{}}, nil, nil, time.Now)
	for _, p := range []string{"google", "microsoft", "github"} {
		c.ObserveDate(p, time.Now().Truncate(time.Second), time.Now(), time.Millisecond)
	}
	allocs := testing.AllocsPerRun(100, func() {
		now := time.Now()
		c.ObserveDate("microsoft", now.Truncate(time.Second), now, 20*time.Millisecond)
		_ = c.Skewed()
	})
	if allocs != 0 {
		t.Errorf("ObserveDate allocates %v times per call, want 0", allocs)
	}
}

// TestClockConcurrent is for the race detector: workers observing Date
// headers and reading the state while checks run and the state changes.
func TestClockConcurrent(t *testing.T) {
	r := newClockRig(t, config.ClockConfig{})
	var calls sync.Mutex
	order := []ClockState{}
	r.clock.OnChange(func(from, to ClockSnapshot) {
		_ = r.clock.Snapshot() // allowed from a callback
		calls.Lock()
		defer calls.Unlock()
		if len(order) > 0 && order[len(order)-1] != from.State {
			t.Errorf("OnChange out of order: %s after %s", from.State, order[len(order)-1])
		}
		order = append(order, to.State)
	})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				skew := time.Duration(0)
				if (i/20)%2 == 1 {
					skew = 5 * time.Minute
				}
				sent := r.now.now()
				r.clock.ObserveDate(fmt.Sprintf("p%d", w%3), sent.Add(-skew), sent, 0)
				_ = r.clock.Skewed()
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			r.ntp.set(0, i%2 == 0)
			r.clock.Check(t.Context())
			_ = r.clock.Snapshot()
		}
	})
	wg.Wait()
}

func TestClockSampleFresh(t *testing.T) {
	at := time.Now() // with a monotonic reading
	tests := []struct {
		name string
		now  time.Time
		want bool
	}{
		{"just now", at, true},
		{"a minute later", at.Add(time.Minute), true},
		{"31 minutes later", at.Add(31 * time.Minute), false},
		{"injected clock (no monotonic reading)", at.Round(0).Add(time.Minute), true},
		{"injected clock, too old", at.Round(0).Add(31 * time.Minute), false},
	}
	for _, tt := range tests {
		if got := clockSampleFresh(at, tt.now); got != tt.want {
			t.Errorf("%s: clockSampleFresh = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestClockRestartWhileSkewedThenFixed: the daemon stopped while the skew
// was announced (meta says skewed) and the clock was fixed before the next
// start. The first check (unknown > ok) must announce the end once; a later
// skew must then be announced again.
func TestClockRestartWhileSkewedThenFixed(t *testing.T) {
	sb := testutil.Sandbox(t)
	ntp := testutil.NTP(t)
	in := newInbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "google", sb)+in.config())
	cfg.Clock.Servers = []string{ntp.Addr()}
	cfg.Clock.Schedule = "@every 1s"

	db, err := OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutMeta(metaClockState, []byte(ClockSkewed)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	td := startDaemon(t, cfg, &testutil.LogBuffer{}, nil)
	testutil.WaitFor(t, 10*time.Second, "clock ok", func() bool { return td.d.clock.Snapshot().State == ClockOK })
	testutil.WaitFor(t, 5*time.Second, "clock.ok notification after the restart", func() bool {
		return in.count()[notify.TypeClockOK] == 1
	})
	ntp.SetOffset(5 * time.Minute)
	testutil.WaitFor(t, 10*time.Second, "clock skewed", td.d.clock.Skewed)
	testutil.WaitFor(t, 5*time.Second, "clock.skewed notification for the new skew", func() bool {
		return in.count()[notify.TypeClockSkewed] == 1
	})
	td.stop()
}

// TestClockSkewedEventIDPerEpisode: with NTP off (or between two checks), two
// skew episodes told by Date headers share CheckedAt. Their clock.skewed
// events must still have distinct IDs: receivers dedupe on the id.
func TestClockSkewedEventIDPerEpisode(t *testing.T) {
	r := newClockRig(t, config.ClockConfig{Servers: []string{}})
	var ids []string
	d := &Daemon{now: r.now.now}
	r.clock.OnChange(func(_, to ClockSnapshot) {
		if to.State == ClockSkewed {
			ids = append(ids, d.clockEvent(to).ID)
		}
	})
	r.observe("a", 5*time.Minute, 3)
	r.now.advance(clockDateMaxAge + time.Minute) // the samples expire
	r.observe("a", 0, 3)
	r.now.advance(clockDateMaxAge + time.Minute)
	r.observe("a", 5*time.Minute, 3)
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Errorf("clock.skewed event ids %v, want two distinct", ids)
	}
}

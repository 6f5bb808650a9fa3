// Package bench is grantwatch's benchmark harness (grantwatch bench): a real
// daemon against the loopback sandbox's token endpoint, a full round over N
// grants compared with a bare HTTP client on the same machine, the import
// path, and the idle cost. It imports probes/sandbox, so the sandbox ships in
// the binary: bench and demo need a token endpoint that answers at full speed
// without a network.
package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/grantwatch/grantwatch/daemon"
	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// Options configures Run. Zero values select the defaults noted per
// field.
type Options struct {
	// Grants is how many grants are imported, all due at once. Default
	// 100,000.
	Grants int
	// Concurrency is the daemon's worker count and the bare client's number
	// of goroutines. Default 64.
	Concurrency int
	// Duration bounds the ceiling measurement; 0 sends as many requests as
	// there are grants.
	Duration time.Duration
	// Idle, when positive, keeps the daemon running this long after the
	// round with nothing due and measures its CPU and heap.
	Idle time.Duration
	// Dir holds the database; "" uses a temporary directory removed at the
	// end.
	Dir string
	// NoSync turns fsync off (a crash could corrupt the database). The
	// default measures with fsync, as the daemon runs.
	NoSync bool
	// Logger receives the daemon's log; nil discards it.
	Logger *slog.Logger
	// Progress receives one status line, rewritten in place ("\r"); nil
	// prints nothing.
	Progress io.Writer
	// Store, when set, is a [store] table for the bench daemon's config
	// (the etcd backend's measurement; its lease_ttl must allow the
	// bench's 10s probe_timeout). Default: bbolt in Dir.
	Store string
}

// Result is what Run measured. The JSON names are part of
// grantwatch's interface (`grantwatch bench --json`).
type Result struct {
	Grants      int `json:"grants"`
	Concurrency int `json:"concurrency"`
	GOMAXPROCS  int `json:"gomaxprocs"`
	// Load1 is the host's 1-minute load average when the bench started:
	// anything else running skews every figure.
	Load1 float64 `json:"load1"`
	// ImportS is the time `grants import` took for every grant (JSON Lines
	// through the control API, parsing, sealing, store writes).
	ImportS      float64 `json:"import_s"`
	ImportPerSec float64 `json:"import_per_sec"`
	// DurationS is the full round: from the daemon's start until every
	// grant was probed once and its result stored.
	DurationS    float64 `json:"duration_s"`
	ProbesPerSec float64 `json:"probes_per_sec"`
	// CeilingPerSec is a bare net/http client (the same tuned transport and
	// concurrency, no probe logic, no store) against the same sandbox,
	// measured in two halves: right before and right after the round.
	CeilingPerSec   float64 `json:"ceiling_per_sec"`
	CeilingRequests int64   `json:"ceiling_requests"`
	Ratio           float64 `json:"ratio"`
	// P50Ms and P99Ms are the probes' HTTP exchange times in the round
	// (request sent to answer read); CeilingP50Ms, CeilingP99Ms the bare
	// client's.
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	CeilingP50Ms float64 `json:"ceiling_p50_ms"`
	CeilingP99Ms float64 `json:"ceiling_p99_ms"`
	// HeapMB is the Go heap (HeapAlloc) at the end of the round,
	// PeakHeapMB the highest sampled during it.
	HeapMB     float64 `json:"heap_mb"`
	PeakHeapMB float64 `json:"peak_heap_mb"`
	// RSSMB is the resident set at the end of the round; PeakRSSMB the
	// process's high-water mark (the import included).
	RSSMB     float64 `json:"rss_mb"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// CPUSPer1000 is process CPU (user+system) per 1000 probes in the round;
	// the in-process sandbox's share is included, as it is in
	// CeilingCPUSPer1000, so their difference is the daemon's own cost.
	CPUSPer1000        float64 `json:"cpu_s_per_1000"`
	CeilingCPUSPer1000 float64 `json:"ceiling_cpu_s_per_1000"`
	DBMB               float64 `json:"db_mb"`
	// Idle is set when Options.Idle was.
	Idle *Idle `json:"idle,omitempty"`
}

// Idle is the daemon's cost with every grant scheduled and none due.
type Idle struct {
	Seconds float64 `json:"idle_s"`
	// CPUPercent is process CPU over the idle period, in % of one core.
	CPUPercent float64 `json:"idle_cpu_pct"`
	// HeapMB is HeapAlloc at the end of the period; LiveHeapMB the heap
	// that survived the last collection.
	HeapMB     float64 `json:"idle_heap_mb"`
	LiveHeapMB float64 `json:"idle_live_heap_mb"`
}

const (
	benchProvider = "bench"
	benchClientID = "grantwatch-bench"
	benchSecret   = "bench-client-secret"
)

// Run runs the real pipeline — `grants import`, the scheduler, workers,
// probes, classification, transitions, batched writes — on a temporary
// database against an in-process sandbox token endpoint on 127.0.0.1, with
// every grant due at once, and measures one full round. Right before and
// right after the round it measures a bare net/http client against the same
// sandbox, half the requests each time, as the ceiling. The
// sandbox answers every refresh as healthy (non-rotating).
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Grants <= 0 {
		o.Grants = 100_000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pr := newProgress(o.Progress)
	defer pr.done()
	res := Result{Grants: o.Grants, Concurrency: o.Concurrency, GOMAXPROCS: runtime.GOMAXPROCS(0), Load1: load1()}

	dir := o.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "grantwatch-bench-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}

	sb, err := benchSandbox()
	if err != nil {
		return res, err
	}
	defer sb.Close()

	cfg, err := benchConfig(dir, sb.TokenURL(), o.Concurrency, o.Store)
	if err != nil {
		return res, err
	}
	const probeTimeout = 10 * time.Second
	var roundLat latencyHist
	hc := probes.NewHTTPClient(o.Concurrency, probeTimeout)
	hc.Transport = &timedTransport{base: hc.Transport, h: &roundLat}
	d, err := daemon.Open(daemon.Options{Config: cfg, Logger: log, HTTPClient: hc, NoSync: o.NoSync, NoStartCheck: true})
	if err != nil {
		return res, err
	}

	// Import, as `grants import` does it, minus the socket.
	start := time.Now()
	c := daemon.InProcess(d, false)
	_, err = c.Import(ctx, benchJSONL(o.Grants), api.ImportOptions{Source: "bench"}, func(p api.ImportProgress) {
		pr.printf("import: %d of %d grants (%.0f%%), %.0f/s", p.Done, p.Total,
			100*float64(p.Done)/float64(max(p.Total, 1)), float64(p.Done)/time.Since(start).Seconds())
	})
	c.Close()
	res.ImportS = time.Since(start).Seconds()
	res.ImportPerSec = float64(o.Grants) / res.ImportS
	if err != nil {
		d.Close()
		return res, fmt.Errorf("import: %w", err)
	}
	// The import's garbage (every parsed line) is not the round's.
	runtime.GC()
	debug.FreeOSMemory()

	// The ceiling: the same transport, concurrency and sandbox, no
	// grantwatch in between. It is measured in two halves, right before and
	// right after the round, so that a machine whose speed drifts (a VM's
	// neighbours, the kernel writing back the database) weighs on both
	// figures alike.
	want := int64(o.Grants)
	if o.Duration > 0 {
		want = 0
	}
	var (
		ceilLat           latencyHist
		ceilN             int64
		ceilTime, ceilCPU time.Duration
	)
	bare := probes.NewHTTPClient(o.Concurrency, probeTimeout)
	bare.Transport = &timedTransport{base: bare.Transport, h: &ceilLat}
	ceiling := func(half int) error {
		n := want / 2
		if half == 2 {
			n = want - want/2
		}
		cpu0 := cpuTime()
		k, el, err := bareClient(ctx, bare, sb.TokenURL(), o.Concurrency, n, o.Duration/2, half, pr)
		ceilCPU += cpuTime() - cpu0
		ceilN, ceilTime = ceilN+k, ceilTime+el
		if err != nil {
			return fmt.Errorf("bare client: %w", err)
		}
		return nil
	}
	if err := ceiling(1); err != nil {
		d.Close()
		return res, err
	}
	runtime.GC()

	// The round: Run starts with a due scan, and every grant is due.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	cpu0 := cpuTime()
	start = time.Now()
	go func() { runErr <- d.Run(runCtx, nil) }()
	var heapPeak uint64
	sampleHeap := func() uint64 {
		h := heapAlloc()
		heapPeak = max(heapPeak, h)
		return h
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	lastPrint := time.Time{}
	for {
		select {
		case <-ctx.Done():
			stop()
			<-runErr
			return res, ctx.Err()
		case err := <-runErr:
			if err == nil {
				err = errors.New("daemon stopped during the round")
			}
			return res, err
		case <-tick.C:
		}
		h := sampleHeap()
		probed, err := benchProbed(d.DB(), o.Grants)
		if err != nil {
			stop()
			<-runErr
			return res, err
		}
		if probed >= o.Grants {
			break
		}
		if time.Since(lastPrint) >= 250*time.Millisecond {
			lastPrint = time.Now()
			el := time.Since(start).Seconds()
			pr.printf("round: %d of %d probed (%.0f%%), %.0f/s, heap %.0f MB", probed, o.Grants,
				100*float64(probed)/float64(o.Grants), float64(probed)/el, mb(h))
		}
	}
	res.DurationS = time.Since(start).Seconds()
	cpu := cpuTime() - cpu0
	res.ProbesPerSec = float64(o.Grants) / res.DurationS
	res.CPUSPer1000 = cpu.Seconds() / (float64(o.Grants) / 1000)
	res.HeapMB = mb(sampleHeap())
	res.PeakHeapMB = mb(heapPeak)
	res.RSSMB, res.PeakRSSMB = rss()
	res.P50Ms, res.P99Ms = roundLat.quantile(0.50), roundLat.quantile(0.99)

	if o.Idle > 0 {
		res.Idle = benchIdle(ctx, o.Idle, pr)
	}
	stop()
	if err := <-runErr; err != nil {
		return res, err
	}
	if fi, err := os.Stat(cfg.Daemon.DB); err == nil {
		res.DBMB = mb(uint64(fi.Size()))
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}

	runtime.GC()
	if err := ceiling(2); err != nil {
		return res, err
	}
	res.CeilingRequests = ceilN
	res.CeilingPerSec = float64(ceilN) / ceilTime.Seconds()
	res.CeilingCPUSPer1000 = ceilCPU.Seconds() / (float64(ceilN) / 1000)
	res.CeilingP50Ms, res.CeilingP99Ms = ceilLat.quantile(0.50), ceilLat.quantile(0.99)
	if res.CeilingPerSec > 0 {
		res.Ratio = res.ProbesPerSec / res.CeilingPerSec
	}
	return res, nil
}

// benchSandbox starts the sandbox the bench probes: it requires the bench's
// client and answers every token as a healthy, non-rotating grant without a
// million registrations in its map (whose heap would count as ours).
func benchSandbox() (*sandbox.Server, error) {
	sb, err := sandbox.Start()
	if err != nil {
		return nil, err
	}
	sb.SetClient(benchClientID, benchSecret)
	sb.SetAll(sandbox.Healthy)
	return sb, nil
}

// benchConfig is the bench daemon's config: the given worker count, no
// listener, no NTP, one provider at the sandbox with a 24h interval (so a
// probed grant is not due again during the bench).
func benchConfig(dir, tokenURL string, workers int, storeTable string) (*config.Config, error) {
	toml := fmt.Sprintf(`
[daemon]
db = %q
socket = %q
listen = ""
workers = %d
probe_timeout = "10s"
shutdown_timeout = "5s"

[clock]
servers = []

[[providers]]
name = %q
token_url = %q
client_id = %q
client_secret = %q
auth_style = "header"
interval = "24h"
`, filepath.Join(dir, "bench.db"), filepath.Join(dir, "bench.sock"), workers,
		benchProvider, tokenURL, benchClientID, benchSecret) + storeTable
	return config.Parse(filepath.Join(dir, "grantwatch.toml"), []byte(toml))
}

// benchJSONL streams the import input: n grants with ids spread over the key
// space (as UUIDs or e-mail addresses are), generated as they are read.
func benchJSONL(n int) io.Reader {
	r, w := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(w, 64<<10)
		var line []byte
		for i := range n {
			line = append(line[:0], `{"id":"`...)
			line = appendBenchID(line, i)
			line = append(line, `","provider":"`+benchProvider+`","refresh_token":"rt-bench-`...)
			line = strconv.AppendInt(line, int64(i), 10)
			line = append(line, `","subject":"user`...)
			line = strconv.AppendInt(line, int64(i), 10)
			line = append(line, "@example.com\"}\n"...)
			if _, err := bw.Write(line); err != nil {
				return // the reader gave up
			}
		}
		w.CloseWithError(bw.Flush())
	}()
	return r
}

// appendBenchID appends grant i's id: a 64-bit mix of i, then i.
func appendBenchID(b []byte, i int) []byte {
	x := uint64(i) + 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	const hex = "0123456789abcdef"
	for s := 60; s >= 0; s -= 4 {
		b = append(b, hex[(x>>s)&0xf])
	}
	b = append(b, '-')
	return strconv.AppendInt(b, int64(i), 10)
}

// benchProbed is how many of the bench's grants left pending, from the
// store's counters (O(states), not a scan).
func benchProbed(db store.Store, total int) (int, error) {
	counts, err := db.Counts()
	if err != nil {
		return 0, err
	}
	return total - counts[benchProvider][store.StatePending], nil
}

// benchIdle waits for idle with the daemon running and nothing due, and
// measures its CPU and heap.
func benchIdle(ctx context.Context, idle time.Duration, pr *progress) *Idle {
	pr.printf("idle: measuring for %s", idle)
	runtime.GC()
	cpu0, start := cpuTime(), time.Now()
	select {
	case <-time.After(idle):
	case <-ctx.Done():
	}
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	out := &Idle{Seconds: el.Seconds(), CPUPercent: 100 * cpu.Seconds() / el.Seconds(), HeapMB: mb(heapAlloc())}
	runtime.GC()
	out.LiveHeapMB = mb(heapAlloc())
	return out
}

// bareClient POSTs refresh requests to tokenURL from concurrency goroutines
// until n requests were answered (n > 0) or d passed, and returns how many
// were answered and how long it took. half (1 or 2) is for the progress line.
func bareClient(ctx context.Context, hc *http.Client, tokenURL string, concurrency int, n int64, d time.Duration, half int, pr *progress) (int64, time.Duration, error) {
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var (
		next, done atomic.Int64
		errOnce    sync.Once
		firstErr   error
		wg         sync.WaitGroup
	)
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			var body []byte
			for ctx.Err() == nil {
				i := next.Add(1)
				if n > 0 && i > n {
					return
				}
				body = append(body[:0], "grant_type=refresh_token&refresh_token=rt-bench-"...)
				body = strconv.AppendInt(body, i, 10)
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(string(body)))
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(benchClientID, benchSecret)
				resp, err := hc.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errOnce.Do(func() { firstErr = err })
					}
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("sandbox answered %s", resp.Status)
				}
				if err != nil {
					if ctx.Err() == nil {
						errOnce.Do(func() { firstErr = err })
					}
					return
				}
				done.Add(1)
			}
		})
	}
	stopPrint := make(chan struct{})
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopPrint:
				return
			case <-t.C:
				k := done.Load()
				pr.printf("ceiling (bare client, half %d of 2): %d requests, %.0f/s", half, k, float64(k)/time.Since(start).Seconds())
			}
		}
	}()
	wg.Wait()
	el := time.Since(start)
	close(stopPrint)
	<-printed
	return done.Load(), el, firstErr
}

// timedTransport records each exchange's time, from sending the request to
// closing its answer's body (read to the end by the caller), in h.
type timedTransport struct {
	base http.RoundTripper
	h    *latencyHist
}

func (t *timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &timedBody{ReadCloser: resp.Body, start: start, h: t.h}
	return resp, nil
}

type timedBody struct {
	io.ReadCloser
	start time.Time
	h     *latencyHist
	once  bool
}

func (b *timedBody) Close() error {
	if !b.once {
		b.once = true
		b.h.add(time.Since(b.start))
	}
	return b.ReadCloser.Close()
}

// latencyHist is a lock-free log-linear histogram of durations in
// microseconds: exact below 256 µs, then 128 buckets per power of two
// (under 1 % error).
type latencyHist struct {
	counts [256 + 48*128]atomic.Int64
}

func histBucket(us int64) int {
	if us < 256 {
		return int(max(us, 0))
	}
	e := bits.Len64(uint64(us)) - 8 // us>>e is in [128, 256)
	return min(256+(e-1)*128+int(us>>e)-128, len(latencyHist{}.counts)-1)
}

func histValue(i int) int64 {
	if i < 256 {
		return int64(i)
	}
	e := (i-256)/128 + 1
	m := int64((i-256)%128 + 128)
	return m<<e + (int64(1)<<e)/2 // the bucket's middle
}

func (h *latencyHist) add(d time.Duration) { h.counts[histBucket(d.Microseconds())].Add(1) }

// quantile returns the q-quantile in milliseconds, 0 when empty.
func (h *latencyHist) quantile(q float64) float64 {
	var total int64
	for i := range h.counts {
		total += h.counts[i].Load()
	}
	if total == 0 {
		return 0
	}
	rank := int64(q*float64(total-1)) + 1
	var seen int64
	for i := range h.counts {
		if seen += h.counts[i].Load(); seen >= rank {
			return float64(histValue(i)) / 1000
		}
	}
	return 0
}

// heapAlloc is runtime.MemStats.HeapAlloc without stopping the world.
func heapAlloc() uint64 {
	heapSample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(heapSample)
	if heapSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return heapSample[0].Value.Uint64()
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rss returns VmRSS and VmHWM from /proc/self/status in MB (0 elsewhere).
func rss() (cur, peak float64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			continue
		}
		if k == "VmRSS" {
			cur = kb / 1024
		} else {
			peak = kb / 1024
		}
	}
	return cur, peak
}

// load1 is the 1-minute load average (0 when unknown).
func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// progress writes one status line, rewritten in place.
type progress struct {
	mu sync.Mutex
	w  io.Writer
}

func newProgress(w io.Writer) *progress { return &progress{w: w} }

func (p *progress) printf(format string, args ...any) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\r\033[K"+format, args...)
}

func (p *progress) done() {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, "\r\033[K")
}

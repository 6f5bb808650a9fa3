package daemon

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// meter wraps the sandbox's token endpoint and records what the provider
// would see: concurrent requests and when each arrived.
type meter struct {
	srv           *httptest.Server
	cur, maxSeen  atomic.Int64
	mu            sync.Mutex
	arrivals      []time.Time
	rateLimitedAt []time.Time
}

func newMeter(t *testing.T, sb *sandbox.Server) *meter {
	m := &meter{}
	h := sb.Handler()
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := m.cur.Add(1)
		defer m.cur.Add(-1)
		for {
			old := m.maxSeen.Load()
			if n <= old || m.maxSeen.CompareAndSwap(old, n) {
				break
			}
		}
		m.mu.Lock()
		m.arrivals = append(m.arrivals, time.Now())
		m.mu.Unlock()
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusTooManyRequests {
			m.mu.Lock()
			m.rateLimitedAt = append(m.rateLimitedAt, time.Now())
			m.mu.Unlock()
		}
	}))
	t.Cleanup(m.srv.Close)
	return m
}

// busiestSecond returns the most requests that arrived within one second
// and when that second began.
func (m *meter) busiestSecond() (int, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	most, from := 0, time.Time{}
	for i, a := range m.arrivals {
		n := 0
		for _, b := range m.arrivals[i:] {
			if b.Sub(a) < time.Second {
				n++
			}
		}
		if n > most {
			most, from = n, a
		}
	}
	return most, from
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (m *meter) provider(name string, extra string) string {
	return fmt.Sprintf(`
[[providers]]
name = %q
token_url = %q
client_id = "test-client"
client_secret = "s"
auth_style = "params"
interval = "1h"
%s
`, name, m.srv.URL+sandbox.TokenPath, extra)
}

// TestProviderConcurrencyAndRateAreNeverExceeded counts, at the provider,
// the requests in flight and per second.
func TestProviderConcurrencyAndRateAreNeverExceeded(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for a few seconds")
	}
	sb := sandbox.New()
	sb.SetSlowDelay(30 * time.Millisecond)
	m := newMeter(t, sb)
	cfg := testConfig(t, t.TempDir(), m.provider("acme", "concurrency = 3\nrate = 40.0"))
	var lines []string
	for i := range 80 {
		lines = append(lines, fmt.Sprintf(`{"id":"g%d","provider":"acme","refresh_token":%q}`, i, sb.Issue(sandbox.Slow)))
	}
	importLines(t, cfg, lines)
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, nil)
	testutil.WaitFor(t, 30*time.Second, "80 healthy grants", func() bool {
		return countStates(t, td.d.DB())[store.StateHealthy] == 80
	})
	td.stop()
	if got := m.maxSeen.Load(); got > 3 {
		t.Errorf("%d requests in flight at once, provider concurrency is 3", got)
	}
	if got := m.maxSeen.Load(); got < 2 {
		t.Errorf("at most %d request in flight: the concurrency is not used", got)
	}
	// Rate 40/s with a burst of 40: no second-long window holds more than
	// 40 + 40 requests, and the whole run takes at least (80-40)/40 s.
	if n, from := m.busiestSecond(); n > 80 {
		t.Fatalf("%d requests within one second from %v, rate is 40/s", n, from)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if span := m.arrivals[len(m.arrivals)-1].Sub(m.arrivals[0]); span < 900*time.Millisecond {
		t.Errorf("80 requests in %s: the rate limit of 40/s was not applied", span)
	}
}

// TestRateLimitPausesTheProvider: after a 429 with Retry-After: 1, the
// provider gets no request until the second has passed.
func TestRateLimitPausesTheProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for a few seconds")
	}
	sb := sandbox.New()
	m := newMeter(t, sb)
	cfg := testConfig(t, t.TempDir(), m.provider("acme", "concurrency = 1"))
	limited := sb.Issue(sandbox.RateLimited)
	lines := []string{fmt.Sprintf(`{"id":"a-limited","provider":"acme","refresh_token":%q}`, limited)}
	for i := range 30 {
		lines = append(lines, fmt.Sprintf(`{"id":"g%02d","provider":"acme","refresh_token":%q}`, i, sb.Issue(sandbox.Healthy)))
	}
	importLines(t, cfg, lines)
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, nil)
	testutil.WaitFor(t, 20*time.Second, "a 429 and then every other grant probed", func() bool {
		m.mu.Lock()
		limitedSeen := len(m.rateLimitedAt) > 0
		m.mu.Unlock()
		return limitedSeen && countStates(t, td.d.DB())[store.StateHealthy] == 30
	})
	td.stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	first := m.rateLimitedAt[0]
	for _, a := range m.arrivals {
		if a.After(first) && a.Sub(first) < 900*time.Millisecond {
			t.Fatalf("a request %s after a 429 with Retry-After: 1", a.Sub(first))
		}
	}
}

// TestSlowProviderNeverPresentsATokenTwice: behind a provider rate that
// keeps leases waiting longer than they last, a grant must not be probed on
// an old lease and again on its new one: with rotation and reuse detection
// that would revoke healthy grants.
func TestSlowProviderNeverPresentsATokenTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for several seconds")
	}
	sb := testutil.Sandbox(t)
	provider := strings.Replace(sandboxProvider("acme", "hydra", sb), `interval = "1s"`, `interval = "1h"`, 1)
	cfg := testConfig(t, t.TempDir(), provider+"rate = 25.0\nconcurrency = 2\n")
	importGrants(t, cfg, sb, "acme", 200, sandbox.Rotate)
	// A lease far shorter than the 8 s the queue takes at 25/s.
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, func(o *Options) { o.Lease = 2 * time.Second })
	testutil.WaitFor(t, 60*time.Second, "every grant probed once", func() bool {
		return countStates(t, td.d.DB())[store.StatePending] == 0
	})
	// Leases handed out again queue behind the first ones: keep running
	// until the provider hears nothing more.
	last, quiet := sb.Stats().Requests, time.Now()
	testutil.WaitFor(t, 60*time.Second, "the queue to drain", func() bool {
		if n := sb.Stats().Requests; n != last {
			last, quiet = n, time.Now()
		}
		return time.Since(quiet) > 1500*time.Millisecond
	})
	td.stop()
	t.Logf("sandbox: %+v", sb.Stats())
	if st := sb.Stats(); st.Reused != 0 {
		t.Errorf("the sandbox saw %d reused tokens: a grant was probed on a stale lease", st.Reused)
	}
	db, err := OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if c := countStates(t, db); c[store.StateHealthy] != 200 {
		t.Errorf("states %v, want 200 healthy", c)
	}
}

// TestOnDemandProbesObeyProviderLimits: with rate = 1 and concurrency = 1,
// 40 parallel PUT /v1/grants/{id}/refresh_token sent 32 requests to the
// token endpoint within a second (issue 13 item 3). On-demand probes go
// through the provider's semaphore and rate limiter like scheduled ones:
// the endpoint never sees two requests at once, nor more than the rate
// allows; a PUT that cannot get a turn within probe_timeout answers 503
// with Retry-After, its token stored.
func TestOnDemandProbesObeyProviderLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for a few seconds")
	}
	sb := sandbox.New()
	m := newMeter(t, sb)
	dir := t.TempDir()
	token := "test-api-token-0123456789"
	if err := os.WriteFile(filepath.Join(dir, "api.token"), []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir, m.provider("acme", "concurrency = 1\nrate = 1.0"))
	cfg.Daemon.Listen = "127.0.0.1:0"
	cfg.Daemon.APITokenFile = filepath.Join(dir, "api.token")
	var lines []string
	for i := range 40 {
		lines = append(lines, fmt.Sprintf(`{"id":"g%02d","provider":"acme","refresh_token":%q}`, i, sb.Issue(sandbox.Healthy)))
	}
	importLines(t, cfg, lines)
	// Probed an hour from now: only the PUTs' probes are due.
	db, err := OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		err := db.Apply(fmt.Sprintf("g%02d", i), func(g store.Grant) (store.Change, error) {
			g.State, g.NextDueAt = store.StateHealthy, time.Now().Add(time.Hour)
			return store.Change{Grant: g}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	cfg.Daemon.ProbeTimeout = 2 * time.Second // how long a PUT waits for its turn
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, nil)

	var wg sync.WaitGroup
	codes := make([]int, 40)
	for i := range 40 {
		wg.Go(func() {
			body := fmt.Sprintf(`{"refresh_token":%q}`, sb.Issue(sandbox.Healthy))
			req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v1/grants/g%02d/refresh_token", td.d.ListenAddr(), i), strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
	wg.Wait()
	// The scheduler keeps probing the new tokens meanwhile, within the
	// same limits.
	time.Sleep(1500 * time.Millisecond)
	td.stop()

	byCode := map[int]int{}
	for _, c := range codes {
		byCode[c]++
	}
	t.Logf("answers by status: %v; the endpoint saw %d requests, at most %d at once", byCode, len(m.arrivals), m.maxSeen.Load())
	if byCode[http.StatusOK]+byCode[http.StatusServiceUnavailable] != 40 || byCode[http.StatusOK] == 0 {
		t.Errorf("answers by status %v, want 200 or 503 each, some 200", byCode)
	}
	if got := m.maxSeen.Load(); got > 1 {
		t.Errorf("%d requests in flight at once, provider concurrency is 1", got)
	}
	// Rate 1/s with a burst of 1: no second-long window holds more than 2.
	if n, from := m.busiestSecond(); n > 2 {
		t.Fatalf("%d requests within one second from %v, rate is 1/s", n, from)
	}
	db, err = OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for id, g := range grantsByID(t, db) {
		if g.TokenGen != 2 {
			t.Errorf("grant %s: token gen %d, want the PUT's token stored (2)", id, g.TokenGen)
		}
	}
}

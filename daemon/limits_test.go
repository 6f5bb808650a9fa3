package daemon

import (
	"fmt"
	"net/http"
	"net/http/httptest"
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
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, a := range m.arrivals {
		n := 0
		for _, b := range m.arrivals[i:] {
			if b.Sub(a) < time.Second {
				n++
			}
		}
		if n > 80 {
			t.Fatalf("%d requests within one second from %v, rate is 40/s", n, a)
		}
	}
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

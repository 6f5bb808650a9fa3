package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// TestBrokerSoak is the broker's acceptance test: 100 grants of a provider
// with strict rotation and reuse detection, 64 clients fetching tokens for
// 60 s while the scheduler probes every 2 s. Afterwards no grant has lost
// its token (each is healthy, holds its chain's current refresh token, and
// the provider saw no reuse), every token served was issued by the
// provider and live when served, and no grant was refreshed more than
// duration / (lifetime − min_ttl) + 2 times.
//
// It takes about 65 s and runs by default; -short skips it, and
// GRANTWATCH_SOAK=10s shortens it.
func TestBrokerSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: 60 s (run without -short)")
	}
	duration := 60 * time.Second
	if v := os.Getenv("GRANTWATCH_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("GRANTWATCH_SOAK=%q: %v", v, err)
		}
		duration = d
	}
	const (
		grants   = 100
		clients  = 64
		lifetime = 10 * time.Second
		minTTL   = 5 * time.Second
	)
	sb := testutil.Sandbox(t)
	sb.SetAccessTokenLifetime(lifetime)
	sb.SetRotationGrace(0) // strict: a rotated-away token revokes its chain
	cfg := testConfig(t, t.TempDir(), sandboxProvider("hydra", "hydra", sb))
	first := make([]string, grants)
	var lines []string
	for i := range first {
		first[i] = sb.Issue(sandbox.Rotate)
		lines = append(lines, fmt.Sprintf(`{"id":"g%03d","provider":"hydra","refresh_token":%q}`, i, first[i]))
	}
	importLines(t, cfg, lines)
	b := startBroker(t, cfg, func(c *config.Config) {
		c.Providers[0].Interval = 2 * time.Second
		// With strict rotation a lost answer loses the grant (the
		// provider rotated, the answer never came): on a loaded CI machine
		// under -race no answer may be given up on as late.
		c.Daemon.ProbeTimeout, c.Daemon.ShutdownTimeout = 30*time.Second, 30*time.Second
		c.Broker.Wait = 30 * time.Second
		c.Log.Level = "info"
	})
	for i := range grants {
		waitState(t, b.d.DB(), fmt.Sprintf("g%03d", i), store.StateHealthy)
	}
	before := make([]int64, grants)
	for i, rt := range first {
		before[i] = sb.Exchanges(rt)
	}

	var (
		served, notLive, failed atomic.Int64
		firstFail               sync.Once
		wg                      sync.WaitGroup
	)
	deadline := time.Now().Add(duration)
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for time.Now().Before(deadline) {
				id := fmt.Sprintf("g%03d", rng.IntN(grants))
				req, _ := http.NewRequest("GET", b.url+"/v1/grants/"+id+"/token?min_ttl="+minTTL.String(), nil)
				req.Header.Set("Authorization", "Bearer "+b.key)
				resp, err := b.hc.Do(req)
				if err != nil {
					failed.Add(1)
					firstFail.Do(func() { t.Errorf("%s: %v", id, err) })
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				now := time.Now()
				var a struct {
					AccessToken string    `json:"access_token"`
					ExpiresAt   time.Time `json:"expires_at"`
				}
				if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil {
					failed.Add(1)
					firstFail.Do(func() { t.Errorf("%s: %d %s", id, resp.StatusCode, body) })
					continue
				}
				served.Add(1)
				// Issued by the provider, live now, and for as long as the
				// broker said (its clock may only be early).
				exp, ok := sb.AccessTokenExpiry(a.AccessToken)
				if !ok || !now.Before(exp) || a.ExpiresAt.After(exp.Add(time.Second)) {
					if notLive.Add(1) == 1 {
						t.Errorf("%s: served %q, expiry %v (issued here: %v), broker said %v, now %v", id, a.AccessToken, exp, ok, a.ExpiresAt, now)
					}
				}
			}
		})
	}
	wg.Wait()
	// Stopped, the daemon has stored every refresh it made (the scheduler
	// goes on probing once the clients stop).
	b.stop()
	db, err := OpenStore(b.cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t.Logf("%d tokens served in %s by %d clients (%d failed, %d not live)", served.Load(), duration, clients, failed.Load(), notLive.Load())
	if failed.Load() != 0 || notLive.Load() != 0 {
		t.Errorf("%d requests failed, %d tokens were not the provider's or not live", failed.Load(), notLive.Load())
	}

	st := sb.Stats()
	if st.Reused != 0 {
		t.Errorf("the provider saw %d reused refresh tokens", st.Reused)
	}
	limit := int64(duration/(lifetime-minTTL)) + 2
	var most int64
	for i, rt := range first {
		id := fmt.Sprintf("g%03d", i)
		l, err := db.GetLease(id)
		if err != nil {
			t.Fatal(err)
		}
		if l.Grant.State != store.StateHealthy || l.Token.Reveal() != sb.Current(rt) {
			t.Errorf("%s lost its token: %s (%s: %s), holds the current one: %v", id, l.Grant.State, l.Grant.Cause, l.Grant.ErrorDescription, l.Token.Reveal() == sb.Current(rt))
		}
		n := sb.Exchanges(rt) - before[i]
		most = max(most, n)
		if n > limit {
			t.Errorf("%s was refreshed %d times in %s, want at most %d", id, n, duration, limit)
		}
	}
	t.Logf("at most %d refreshes of a grant (limit %d)", most, limit)
}

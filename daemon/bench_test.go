package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// BenchmarkTickScan is one scheduler tick as dispatchLoop runs it (Due with
// the daemon's batch and in-memory leases) on a fsyncing store holding N grants,
// none or 100 of them due. Its time should not depend on N (issue 7: a tick
// is O(due)). 10⁶ grants only with GRANTWATCH_BENCH_1M=1:
//
//	GRANTWATCH_BENCH_1M=1 go test -run '^$' -bench TickScan -benchtime 2000x ./daemon/
func BenchmarkTickScan(b *testing.B) {
	sizes := []int{10_000, 100_000}
	if os.Getenv("GRANTWATCH_BENCH_1M") == "1" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		dir := b.TempDir()
		cfg, err := config.Parse(filepath.Join(dir, "grantwatch.toml"), []byte(fmt.Sprintf(`
[daemon]
db = %q
socket = %q
listen = ""
workers = 64
[clock]
servers = []
[[providers]]
name = %q
token_url = "http://127.0.0.1:9/token"
client_id = "c"
client_secret = "s"
`, filepath.Join(dir, "gw.db"), filepath.Join(dir, "gw.sock"), tickProvider)))
		if err != nil {
			b.Fatal(err)
		}
		d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		const hot = 100
		fillTick(b, d, 0, n-hot, now.Add(1000*time.Hour)) // due far later
		fillTick(b, d, n-hot, hot, now)
		batch := max(64, cap(d.jobs)) // as dispatchLoop
		for _, due := range []int{0, hot} {
			b.Run(fmt.Sprintf("grants=%d/due=%d", n, due), func(b *testing.B) {
				at := now.Add(-time.Hour) // nothing due yet
				if due > 0 {
					at = now
				}
				b.ReportAllocs()
				for b.Loop() {
					until := at.Add(d.lease)
					ls, err := d.db.Due(at, batch, func(row uint64) bool { return d.leases.take(row, at, until) })
					if err != nil || len(ls) != due {
						b.Fatalf("Due = %d, %v; want %d", len(ls), err, due)
					}
					if due > 0 {
						at = until // the same ones are due again next tick
					}
				}
			})
		}
		d.Close()
	}
}

// tickProvider is the provider of BenchmarkTickScan's grants.
const tickProvider = "bench"

func fillTick(tb testing.TB, d *Daemon, from, n int, due time.Time) {
	tb.Helper()
	const chunk = 10_000
	gs := make([]store.NewGrant, 0, chunk)
	for i := from; i < from+n; i++ {
		gs = append(gs, store.NewGrant{ID: fmt.Sprintf("tick-%08x", uint32(i)*2654435761), Provider: tickProvider,
			RefreshToken: secret.Secret("rt-bench-" + strconv.Itoa(i))})
		if len(gs) == chunk || i == from+n-1 {
			if _, _, err := d.db.Import(gs, due, store.ImportOptions{Replace: true, Force: true}); err != nil {
				tb.Fatal(err)
			}
			gs = gs[:0]
		}
	}
}

// classifyBodies are token-endpoint answers as providers send them, one per
// classification path: success, RFC 6749 error with a provider pattern
// (Google, Entra), a 200 carrying an error (GitHub), a form-encoded error,
// an HTML gateway page.
var classifyBodies = []struct {
	name, preset string
	status       int
	ctype        string
	body         string
}{
	{"ok", "", 200, "application/json", `{"access_token":"at_1","token_type":"Bearer","expires_in":3599}`},
	{"google_revoked", "google", 400, "application/json", `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`},
	{"entra_50173", "microsoft", 400, "application/json", `{"error":"invalid_grant","error_description":"AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. Trace ID: 6a2c4e8f Correlation ID: 9e8d7c6b Timestamp: 2025-04-07 10:20:31Z","error_codes":[50173]}`},
	{"github_200", "github", 200, "application/json", `{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired."}`},
	{"form", "", 400, "application/x-www-form-urlencoded", `error=invalid_grant&error_description=Invalid+refresh+token`},
	{"html_502", "", 502, "text/html", "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"},
}

// BenchmarkEvaluate is the classify path of one answer (parse + rules).
func BenchmarkEvaluate(b *testing.B) {
	for _, c := range classifyBodies {
		b.Run(c.name, func(b *testing.B) {
			h := http.Header{"Content-Type": {c.ctype}}
			body := []byte(c.body)
			b.ReportAllocs()
			for b.Loop() {
				probes.Evaluate(c.preset, c.status, h, body)
			}
		})
	}
}

// webhookArrivals is a loopback webhook receiver that reports when each
// grant's reconnect_required event arrives.
func webhookArrivals(tb testing.TB) (*httptest.Server, chan arrival) {
	ch := make(chan arrival, 1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		var n notify.Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, e := range n.Events {
			if e.Type == notify.TypeReconnectRequired && e.Grant != nil {
				ch <- arrival{id: e.Grant.ID, at: at}
			}
		}
	}))
	tb.Cleanup(srv.Close)
	return srv, ch
}

type arrival struct {
	id string
	at time.Time
}

// revokedToWebhook runs a daemon (fsync on, group_wait 0) and n times stores
// a grant whose token the provider has revoked, kicks the scheduler and waits
// for the webhook: the whole path, scheduler, probe, classification,
// transition, outbox, dispatcher, HTTP. It returns the latencies, sorted.
func revokedToWebhook(tb testing.TB, n int) []time.Duration {
	sb, err := sandbox.Start()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(sb.Close)
	hook, arrivals := webhookArrivals(tb)
	dir := tb.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "grantwatch.toml"), []byte(fmt.Sprintf(`
[daemon]
db = %q
socket = %q
listen = ""
workers = 16
[clock]
servers = []
[[providers]]
name = "google"
preset = "google"
token_url = %q
client_id = "c"
client_secret = "s"
auth_style = "params"
[[notify]]
name = "hook"
type = "webhook"
url = %q
group_wait = "0s"
`, filepath.Join(dir, "gw.db"), filepath.Join(dir, "gw.sock"), sb.TokenURL(), hook.URL)))
	if err != nil {
		tb.Fatal(err)
	}
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- d.Run(ctx, func(*Daemon) { close(ready) }) }()
	defer func() { cancel(); <-done }()
	<-ready
	lat := make([]time.Duration, 0, n)
	for i := range n {
		id := "revoked-" + strconv.Itoa(i)
		tok := sb.Issue(sandbox.Revoked)
		begin := time.Now()
		if _, _, err := d.DB().Import([]store.NewGrant{{ID: id, Provider: "google", RefreshToken: secret.Secret(tok)}}, time.Now(), store.ImportOptions{Replace: true, Force: true}); err != nil {
			tb.Fatal(err)
		}
		d.Kick()
		select {
		case a := <-arrivals:
			if a.id != id {
				tb.Fatalf("webhook got %s, want %s", a.id, id)
			}
			lat = append(lat, a.at.Sub(begin))
		case <-time.After(10 * time.Second):
			tb.Fatalf("no webhook for %s within 10s", id)
		}
	}
	slices.Sort(lat)
	return lat
}

// BenchmarkRevokedToWebhook: a transition to reconnect_required reaches a
// loopback webhook (issue 7: p99 under 200 ms with group_wait 0).
func BenchmarkRevokedToWebhook(b *testing.B) {
	lat := revokedToWebhook(b, max(b.N, 200))
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func TestRevokedReachesWebhook(t *testing.T) {
	lat := revokedToWebhook(t, 20)
	t.Logf("revoked → webhook: p50 %v, max %v", lat[len(lat)/2], lat[len(lat)-1])
	if !testutil.RaceEnabled() && lat[len(lat)/2] > time.Second {
		t.Errorf("median %v, want well under 200ms", lat[len(lat)/2])
	}
}

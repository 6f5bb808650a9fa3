package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// TestOddGrantIDsReachableThroughAPI: every id import accepts is reachable by show and
// rm through the control API's URL paths; an id the URL paths cannot carry
// is refused at import.
func TestOddGrantIDsReachableThroughAPI(t *testing.T) {
	c, _ := apiClient(t)
	ctx := context.Background()
	ids := []string{" sp ace ", "50%", "%2F", "ünïcødé", "a#b", "q?x=1", "a..b", "..", ".", "a\\b", "+&;="}
	for _, id := range ids {
		b, _ := json.Marshal(map[string]string{"id": id, "provider": "acme", "refresh_token": "rt-secret"})
		_, err := c.Import(ctx, strings.NewReader(string(b)+"\n"), api.ImportOptions{}, nil)
		if err != nil {
			if id == "." || id == ".." {
				continue // refused at import: fine
			}
			t.Errorf("import of id %q: %v", id, err)
			continue
		}
		g, err := c.Show(ctx, id)
		if err != nil || g.ID != id {
			t.Errorf("show %q: %v (got id %q)", id, err, g.ID)
			continue
		}
		if err := c.Remove(ctx, id); err != nil {
			t.Errorf("rm %q: %v", id, err)
		}
		if _, err := c.Show(ctx, id); err == nil {
			t.Errorf("show %q after rm: no error", id)
		}
	}
}

// TestSetTokenWhileProbed: set-token on a grant a probe holds right
// now stores the token — and must then not answer as if it had failed
// (reconnect would tell the user to sign in again for nothing).
func TestSetTokenWhileProbed(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb))
	importLines(t, cfg, []string{`{"id":"g","provider":"acme","refresh_token":"` + sb.Issue(sandbox.Revoked) + `"}`})
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := InProcess(d, true)
	defer c.Close()
	if !d.claim("g") { // a scheduled probe of the old token is in flight
		t.Fatal("claim")
	}
	go func() { time.Sleep(200 * time.Millisecond); d.unclaim("g") }()
	rep, err := c.SetToken(context.Background(), "g", secret.Secret(sb.Issue(sandbox.Healthy)))
	if err != nil {
		g, _ := d.DB().Get("g")
		t.Fatalf("set-token while probed: %v (grant now %s, token gen %d)", err, g.State, g.TokenGen)
	}
	if !rep.Result.OK || rep.Grant.State != store.StateHealthy {
		t.Errorf("set-token report: %+v", rep)
	}
}

// TestImportStreamsProgressWhileReading: the import answer streams progress
// while the input is still being read. The input must arrive intact all the
// same (an HTTP/1 server that flushed its answer stops reading the request
// unless asked for full duplex), and the client sees both phases.
func TestImportStreamsProgressWhileReading(t *testing.T) {
	old := importProgressEvery
	importProgressEvery = time.Millisecond
	defer func() { importProgressEvery = old }()

	c, d := apiClient(t)

	const n = 40000
	pr, pw := io.Pipe()
	go func() {
		for i := range n {
			fmt.Fprintf(pw, `{"id":"bulk-%06d","provider":"acme","refresh_token":"rt_%016x","labels":{"tenant":"t%d"}}`+"\n", i, i*7919, i%7)
			if i%5000 == 0 {
				time.Sleep(5 * time.Millisecond) // a slow uploader: progress goes out meanwhile
			}
		}
		pw.Close()
	}()
	phases := map[string]int{}
	p, err := c.Import(context.Background(), pr, api.ImportOptions{}, func(p api.ImportProgress) { phases[p.Phase]++ })
	if err != nil {
		t.Fatal(err)
	}
	if p.Created != n {
		t.Fatalf("created %d of %d grants", p.Created, n)
	}
	if phases["validating"] == 0 {
		t.Errorf("no progress while reading the input: %v", phases)
	}
	g, err := d.DB().Get("bulk-039999")
	if err != nil || g.Labels["tenant"] != fmt.Sprintf("t%d", 39999%7) || !strings.HasPrefix(g.ID, "bulk-") {
		t.Fatalf("last grant: %v %+v", err, g)
	}
}

// TestAPIProbesInFlightCapped: at most daemon.max_api_probes on-demand
// probes are in flight at once, whatever the provider's own concurrency
// allows (issue 13 item 3: 36 PUTs on hanging tokens held everything up);
// the others wait their turn, within probe_timeout.
func TestAPIProbesInFlightCapped(t *testing.T) {
	sb := sandbox.New()
	sb.SetSlowDelay(150 * time.Millisecond)
	m := newMeter(t, sb)
	cfg := testConfig(t, t.TempDir(), m.provider("acme", "concurrency = 10"))
	cfg.Daemon.MaxAPIProbes = 2
	cfg.Daemon.ProbeTimeout = 5 * time.Second
	var lines []string
	for i := range 8 {
		lines = append(lines, fmt.Sprintf(`{"id":"g%d","provider":"acme","refresh_token":%q}`, i, sb.Issue(sandbox.Slow)))
	}
	importLines(t, cfg, lines)
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	c := InProcess(d, true)
	defer c.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := c.Probe(context.Background(), fmt.Sprintf("g%d", i)); err != nil {
				t.Errorf("probe g%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if got := m.maxSeen.Load(); got != 2 {
		t.Errorf("%d on-demand probes in flight at once, want daemon.max_api_probes = 2", got)
	}
}

package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// offsetClock is the wall clock moved by an offset a test sets.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) now() time.Time           { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) advance(by time.Duration) { c.off.Add(int64(by)) }

// TestLongRoundKeepsSchedulerAlive: a first round over many grants behind
// a slow provider (rate 2/s) lasts far longer than the readiness bound;
// meanwhile the dispatch loop waits for busy workers. /readyz, status's
// last_tick_at and doctor must see a loop that is alive (issue 12 item 3),
// not a tick that froze when the round began.
func TestLongRoundKeepsSchedulerAlive(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for a few seconds")
	}
	sb := testutil.Sandbox(t)
	provider := strings.Replace(sandboxProvider("acme", "", sb), `interval = "1s"`, `interval = "1h"`, 1)
	cfg := testConfig(t, t.TempDir(), provider+"rate = 2.0\nconcurrency = 1\n")
	// More than the job queue holds (2 batches) plus a batch: the loop
	// blocks handing out the third batch, for ~25 minutes at 2/s.
	importGrants(t, cfg, sb, "acme", 3*leaseBatch+500, sandbox.Healthy)
	clk := &offsetClock{}
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, func(o *Options) {
		o.Now = clk.now
		o.Lease = 24 * time.Hour // the jump below must not end the leases
	})
	testutil.WaitFor(t, 10*time.Second, "the round to be under way", func() bool {
		return sb.Stats().Requests >= 2 && len(td.d.jobs) == cap(td.d.jobs)
	})
	if err := td.d.Ready(); err != nil {
		t.Fatalf("not ready at the start of the round: %v", err)
	}
	// Ten minutes into the round (the provider still has ~3000 grants to go).
	jump := clk.now().Add(10 * time.Minute)
	clk.advance(10 * time.Minute)
	testutil.WaitFor(t, 5*time.Second, "the loop to show it is alive", func() bool {
		st, err := td.d.Status()
		return err == nil && !st.LastTickAt.Before(jump) && td.d.Ready() == nil
	})
	if n := sb.Stats().Requests; n > 100 {
		t.Fatalf("%d probes: the round was not slow, the test proves nothing", n)
	}
}

// lossyGateway stands between grantwatch and the sandbox's token endpoint:
// it forwards every request, and for the first lose of them throws the
// endpoint's answer away after delay and answers nginx's 502 instead, as a
// gateway whose upstream connection broke does (the endpoint has handled
// the request: with rotation, the new refresh token is lost).
type lossyGateway struct {
	*httptest.Server
	lose     atomic.Int32
	delay    time.Duration
	requests atomic.Int32
}

func newLossyGateway(t *testing.T, sb *sandbox.Server) *lossyGateway {
	g := &lossyGateway{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.requests.Add(1)
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequest(r.Method, sb.TokenURL(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if g.lose.Add(-1) >= 0 {
			time.Sleep(g.delay)
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(answer)
	}))
	t.Cleanup(g.Close)
	return g
}

// TestLostAnswerRepresentedWithinGrace: a refresh whose answer was lost
// (the gateway's 502 after the provider rotated the token) is sent once
// more with the same token while the provider's rotation grace is open, and
// the rotated token it gets is stored: the grant is healthy at once instead
// of failing until its next probe. Without grace (rotation_grace = "0s"),
// or once the window has passed, it is not sent again.
func TestLostAnswerRepresentedWithinGrace(t *testing.T) {
	for _, tc := range []struct {
		name     string
		grace    string
		delay    time.Duration
		wantSent int32
		wantOK   bool
	}{
		{"within the grace", "30s", 0, 2, true},
		{"no grace", "0s", 0, 1, false},
		{"grace passed while the answer was lost", "1s", 1200 * time.Millisecond, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := testutil.Sandbox(t)
			sb.SetRotationGrace(30 * time.Second) // the provider's own; grantwatch knows its config's
			gw := newLossyGateway(t, sb)
			gw.delay = tc.delay
			provider := strings.Replace(sandboxProvider("okta", "okta", sb), sb.TokenURL(), gw.URL, 1)
			cfg := testConfig(t, t.TempDir(), provider+"rotation_grace = \""+tc.grace+"\"\n")
			cfg.Daemon.ProbeTimeout = 5 * time.Second
			tok := sb.Issue(sandbox.Rotate)
			importLines(t, cfg, []string{fmt.Sprintf(`{"id":"g","provider":"okta","refresh_token":%q}`, tok)})
			logs := &testutil.LogBuffer{}
			d, err := Open(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			gw.lose.Store(1)

			rep, err := d.ProbeNow(t.Context(), "g")
			if err != nil {
				t.Fatal(err)
			}
			if n := gw.requests.Load(); n != tc.wantSent {
				t.Errorf("%d requests sent, want %d", n, tc.wantSent)
			}
			if rep.Result.OK != tc.wantOK {
				t.Errorf("probe ok = %v (%s), want %v", rep.Result.OK, rep.Result.Cause, tc.wantOK)
			}
			g, _ := d.DB().Get("g")
			l, _ := d.DB().GetLease("g")
			if tc.wantOK {
				if g.State != store.StateHealthy || g.LostAnswer || l.Token.Reveal() != sb.Current(tok) || sb.Stats().GraceReused != 1 {
					t.Errorf("grant %s lost=%v, stored token current %v, grace reuses %d; want healthy with the token issued on the second try",
						g.State, g.LostAnswer, l.Token.Reveal() == sb.Current(tok), sb.Stats().GraceReused)
				}
				if !strings.Contains(logs.String(), "presenting the token once more") {
					t.Errorf("no line for the second try: %s", logs.String())
				}
			} else if !g.LostAnswer || g.State == store.StateHealthy {
				t.Errorf("grant %s lost=%v; want the lost answer on record, not healthy", g.State, g.LostAnswer)
			}
			if sb.Stats().Reused != 0 {
				t.Error("the sandbox saw a reuse")
			}
		})
	}
}

// TestJobWithSupersededLeaseIsDropped: a job holds the token read when its
// grant was leased. Once that lease is no longer the job's (it ran out and
// the grant was leased again, or a stored result ended it), the token may
// be one the provider rotated away: the job is dropped, not probed.
func TestJobWithSupersededLeaseIsDropped(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "hydra", sb))
	importGrants(t, cfg, sb, "acme", 1, sandbox.Rotate)
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l, err := d.DB().GetLease("acme-0")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	first := now.Add(time.Minute)
	d.leases.take(l.Grant.Row, now, first)
	// The lease runs out and the grant is leased again.
	d.leases.take(l.Grant.Row, first, first.Add(time.Minute))
	ctx := context.Background()
	d.probeLease(ctx, ctx, job{l, first})
	if n := sb.Stats().Requests; n != 0 {
		t.Errorf("a job whose lease was taken again sent %d probe(s)", n)
	}
	// A result stored meanwhile ended the lease.
	second := now.Add(time.Hour)
	d.leases.end(l.Grant.Row)
	d.probeLease(ctx, ctx, job{l, second})
	if n := sb.Stats().Requests; n != 0 {
		t.Errorf("a job whose lease was ended sent %d probe(s)", n)
	}
	// Its own lease: probed.
	d.leases.take(l.Grant.Row, now, second)
	d.probeLease(ctx, ctx, job{l, second})
	if n := sb.Stats().Requests; n != 1 {
		t.Errorf("a job on its own lease sent %d probe(s), want 1", n)
	}
}

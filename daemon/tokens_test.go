package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
	"github.com/grantwatch/grantwatch/tokensource"
)

// fakeClock is a wall clock the test moves forward.
type fakeClock struct{ off atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// broker is a daemon serving the broker on a loopback TCP listener, with
// an app key for every grant.
type broker struct {
	*testDaemon
	url, key string
	clock    *fakeClock
	hc       *http.Client
}

// brokerOnOneGrant starts a broker (startBroker, mod) whose one grant, g1
// of provider acme at sb, holds a refresh token of behaviour b, and waits
// until its first probe made it healthy; extra is appended to the config.
// It returns the broker and g1's first refresh token.
func brokerOnOneGrant(t *testing.T, sb *sandbox.Server, b sandbox.Behavior, extra string, mod func(*config.Config)) (*broker, string) {
	t.Helper()
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb)+extra)
	rt := sb.Issue(b)
	importLines(t, cfg, []string{`{"id":"g1","provider":"acme","refresh_token":"` + rt + `"}`})
	br := startBroker(t, cfg, mod)
	waitState(t, br.d.DB(), "g1", store.StateHealthy)
	return br, rt
}

// startBroker runs a daemon on cfg (modified by mod before it opens) with
// daemon.listen on 127.0.0.1 and a key with every scope.
func startBroker(t *testing.T, cfg *config.Config, mod func(*config.Config)) *broker {
	t.Helper()
	cfg.Daemon.Listen = "127.0.0.1:0"
	cfg.Daemon.MaxConnections = 4096
	// After its first probe the scheduler leaves the grants alone (tests
	// that want it back set an interval).
	for i := range cfg.Providers {
		cfg.Providers[i].Interval = 24 * time.Hour
	}
	if mod != nil {
		mod(cfg)
	}
	clock := &fakeClock{}
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, func(o *Options) { o.Now = clock.now })
	td.d.RevokeKey("test-app") // made by an earlier daemon on this database
	_, key, err := td.d.CreateKey(api.Key{Name: "test-app", Scopes: api.Scopes()})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 2048}
	t.Cleanup(tr.CloseIdleConnections)
	return &broker{testDaemon: td, url: "http://" + td.d.ListenAddr(), key: key, clock: clock, hc: &http.Client{Transport: tr}}
}

// deadHook is a receiver that never answers: notifications stay in the
// outbox, where a test can read them.
const deadHook = `
[[notify]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:1/hook"
`

// tokenAnswer is what a token route answered.
type tokenAnswer struct {
	code       int
	retryAfter string
	tok        api.TokenAnswer
	err        api.TokenErrorBody
}

func (b *broker) get(t testing.TB, method, path string) tokenAnswer {
	t.Helper()
	req, _ := http.NewRequest(method, b.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+b.key)
	resp, err := b.hc.Do(req)
	if err != nil {
		t.Error(err)
		return tokenAnswer{}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := tokenAnswer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode == 200 {
		err = json.Unmarshal(body, &a.tok)
	} else {
		err = json.Unmarshal(body, &a.err)
	}
	if err != nil {
		t.Errorf("%s %s: %d %s: %v", method, path, resp.StatusCode, body, err)
	}
	return a
}

func (b *broker) token(t testing.TB, id string) tokenAnswer {
	return b.get(t, "GET", "/v1/grants/"+id+"/token")
}

// waitState waits until the scheduler's first probe has judged grant id.
func waitState(t *testing.T, db store.Store, id string, want store.State) store.Grant {
	t.Helper()
	var g store.Grant
	testutil.WaitFor(t, 10*time.Second, "grant "+id+" "+string(want), func() bool {
		g, _ = db.Get(id)
		return g.State == want
	})
	return g
}

// TestBrokerHoldsTheToken: the first request refreshes, the next ones get
// the token held (the sandbox sees one refresh), live and issued by the
// provider, with expires_at from the answer's expires_in; once it has less
// than min_ttl left the next request refreshes first.
func TestBrokerHoldsTheToken(t *testing.T) {
	sb := testutil.Sandbox(t)
	sb.SetAccessTokenLifetime(10 * time.Minute)
	b, rt := brokerOnOneGrant(t, sb, sandbox.Rotate, "", nil)
	// The first request refreshes, or gets the token of the scheduler's
	// first probe if it was still being stored: one mechanism.
	first := b.token(t, "g1")
	if first.code != 200 || !sb.AccessTokenLive(first.tok.AccessToken) || first.tok.GrantID != "g1" ||
		first.tok.TokenType != "Bearer" || first.tok.Scope != "openid offline_access" {
		t.Fatalf("first: %+v", first)
	}
	before := sb.Exchanges(rt)
	if left := time.Until(first.tok.ExpiresAt) - time.Duration(b.clock.off.Load()); left < 9*time.Minute || left > 10*time.Minute {
		t.Errorf("expires_at %s is %s away, want the 10m lifetime", first.tok.ExpiresAt, left)
	}
	for range 20 {
		if a := b.token(t, "g1"); a.tok.AccessToken != first.tok.AccessToken {
			t.Fatalf("a token held 10m was refreshed: %+v", a)
		}
	}
	if n := sb.Exchanges(rt) - before; n != 0 {
		t.Errorf("%d refreshes for 20 requests of a token held, want 0", n)
	}
	// Just obtained (within refresh_pace), a token that no longer has the
	// min_ttl asked is refreshed all the same when a new one would have it;
	// a min_ttl longer than tokens live gets the token just obtained.
	b.clock.advance(5 * time.Second)
	renewed := b.get(t, "GET", "/v1/grants/g1/token?min_ttl=9m58s")
	if renewed.code != 200 || renewed.tok.AccessToken == first.tok.AccessToken {
		t.Errorf("9m55s left, min_ttl 9m58s: %+v, want a new token", renewed)
	}
	if long := b.get(t, "GET", "/v1/grants/g1/token?min_ttl=20m"); long.tok.AccessToken != renewed.tok.AccessToken {
		t.Errorf("min_ttl 20m of 10m tokens, within refresh_pace: %+v, want the token just obtained", long)
	}
	if n := sb.Exchanges(rt) - before; n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	first, before = renewed, sb.Exchanges(rt)
	// 8m30s later 90s are left: enough for min_ttl=60s, not for 2m.
	b.clock.advance(8*time.Minute + 30*time.Second)
	if a := b.get(t, "GET", "/v1/grants/g1/token?min_ttl=60s"); a.tok.AccessToken != first.tok.AccessToken {
		t.Error("refreshed with 90s left and min_ttl 60s")
	}
	next := b.get(t, "GET", "/v1/grants/g1/token?min_ttl=2m")
	if next.code != 200 || next.tok.AccessToken == first.tok.AccessToken || !sb.AccessTokenLive(next.tok.AccessToken) {
		t.Errorf("min_ttl 2m with 90s left: %+v, want a new token", next)
	}
	if n := sb.Exchanges(rt) - before; n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	if st := sb.Stats(); st.Reused != 0 {
		t.Errorf("the sandbox saw %d reuses", st.Reused)
	}
}

// TestBrokerOneRefreshForAThousand: 1,000 concurrent requests for a grant
// whose token just expired send exactly one request to the provider, and
// every one of them gets its token.
func TestBrokerOneRefreshForAThousand(t *testing.T) {
	sb := testutil.Sandbox(t)
	sb.SetAccessTokenLifetime(time.Hour)
	// A thousand connections at once on this host: the answer may be late.
	// The scheduler stays out of it: the clock jumps an hour, the interval is a day.
	b, rt := brokerOnOneGrant(t, sb, sandbox.Healthy, "", func(c *config.Config) {
		c.Daemon.ProbeTimeout, c.Broker.Wait = 30*time.Second, 30*time.Second
	})
	first := b.token(t, "g1")
	if first.code != 200 {
		t.Fatalf("%+v", first)
	}
	// The answer takes 300ms, so every request arrives while it runs.
	sb.SetSlowDelay(300 * time.Millisecond)
	sb.Set(rt, sandbox.Slow)
	b.clock.advance(time.Hour) // the token just expired
	before := sb.Stats().Requests

	const n = 1000
	var wg sync.WaitGroup
	got := make([]tokenAnswer, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			got[i] = b.token(t, "g1")
		})
	}
	close(start)
	wg.Wait()
	if sent := sb.Stats().Requests - before; sent != 1 {
		t.Errorf("%d requests reached the provider, want exactly 1", sent)
	}
	for i, a := range got {
		if a.code != 200 || a.tok.AccessToken == first.tok.AccessToken || a.tok.AccessToken != got[0].tok.AccessToken {
			t.Fatalf("request %d: %d %+v, want the one new token", i, a.code, a.err)
		}
	}
}

// TestBrokerRefusesADeadGrant: a grant that needs its user answers 409
// with its cause and fix, and nothing is sent to the provider, forced or
// not; a refresh that finds the grant dead is a probe's verdict: the grant
// turns reconnect_required with its history, notification and one ERROR.
func TestBrokerRefusesADeadGrant(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("google", "google", sb)+deadHook)
	rt := sb.Issue(sandbox.Healthy)
	importLines(t, cfg, []string{`{"id":"g1","provider":"google","refresh_token":"` + rt + `"}`})
	b := startBroker(t, cfg, nil)
	waitState(t, b.d.DB(), "g1", store.StateHealthy)
	if a := b.token(t, "g1"); a.code != 200 {
		t.Fatalf("%+v", a)
	}
	sb.Set(rt, sandbox.Revoked)
	b.clock.advance(11 * time.Second) // past refresh_pace
	dead := b.get(t, "POST", "/v1/grants/g1/token/refresh")
	g, _ := b.d.DB().Get("g1")
	if dead.code != 409 || dead.err.Error != api.CodeReconnectRequired || dead.err.State != "reconnect_required" ||
		dead.err.Cause != g.Cause || dead.err.Cause == "" || dead.err.Action != "reconnect" || dead.err.Fix == "" {
		t.Fatalf("refresh of a revoked grant: %d %+v (grant's cause %q)", dead.code, dead.err, g.Cause)
	}
	h, _ := b.d.DB().History("g1")
	if g.State != store.StateReconnectRequired || len(h) == 0 || h[len(h)-1].To != store.StateReconnectRequired {
		t.Errorf("grant %s, history %+v", g.State, h)
	}
	if n, _, _ := b.d.DB().OutboxStats(); n != 1 {
		t.Errorf("%d notifications queued, want 1 (grant.reconnect_required)", n)
	}
	before := sb.Stats().Requests
	for _, m := range []string{"GET", "POST"} {
		path := "/v1/grants/g1/token"
		if m == "POST" {
			path += "/refresh"
		}
		if a := b.get(t, m, path); a.code != 409 || a.err.Cause != g.Cause {
			t.Errorf("%s: %d %+v", m, a.code, a.err)
		}
	}
	if sb.Stats().Requests != before {
		t.Error("a dead grant's token was sent to the provider")
	}
	errs := 0
	for _, l := range b.logs.Lines(t) {
		if l["level"] == "ERROR" && l["grant"] == "g1" {
			errs++
		}
	}
	if errs != 1 {
		t.Errorf("%d ERROR lines for the grant, want 1", errs)
	}
}

// TestBrokerPassingTrouble: what passes by itself answers 503 with
// Retry-After: a provider that asked to slow down, one in outage, a grant
// on hold, a refresh still running past broker.wait ("busy").
func TestBrokerPassingTrouble(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("okta", "", sb))
	lines := []string{}
	toks := map[string]string{}
	for _, id := range []string{"limited", "outage", "held", "slow"} {
		toks[id] = sb.Issue(sandbox.Healthy)
		lines = append(lines, `{"id":"`+id+`","provider":"okta","refresh_token":"`+toks[id]+`"}`)
	}
	importLines(t, cfg, lines)
	b := startBroker(t, cfg, func(c *config.Config) { c.Broker.Wait = 300 * time.Millisecond })
	for id := range toks {
		waitState(t, b.d.DB(), id, store.StateHealthy)
	}

	sb.Set(toks["limited"], sandbox.RateLimited)
	if a := b.token(t, "limited"); a.code != 503 || a.err.Error != api.CodeRateLimited || a.retryAfter == "" {
		t.Errorf("429 from the provider: %d %q %+v", a.code, a.retryAfter, a.err)
	}
	// The provider's pause holds for every grant of it, without a request.
	before := sb.Stats().Requests
	if a := b.token(t, "outage"); a.code != 503 || a.err.Error != api.CodeRateLimited || a.retryAfter == "" {
		t.Errorf("while paused: %d %q %+v", a.code, a.retryAfter, a.err)
	}
	if sb.Stats().Requests != before {
		t.Error("a request went out while the provider asked for a pause")
	}
	p := b.d.provider("okta")
	p.health.mu.Lock()
	p.health.pausedUntil = time.Time{}
	p.health.state, p.health.cause, p.health.canary = ProviderOutage, probes.CauseServerError, true
	p.health.mu.Unlock()
	if a := b.token(t, "outage"); a.code != 503 || a.err.Error != api.CodeProviderOutage || a.err.Cause != "server_error" || a.retryAfter == "" {
		t.Errorf("outage: %d %q %+v", a.code, a.retryAfter, a.err)
	}
	p.health.mu.Lock()
	p.health.state, p.health.canary = ProviderOK, false
	p.health.mu.Unlock()

	err := b.d.DB().Apply("held", func(g store.Grant) (store.Change, error) {
		g.State, g.Cause, g.Action = store.StateOnHold, string(probes.CauseClockSkew), string(probes.ActionSyncClock)
		return store.Change{Grant: g}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if a := b.token(t, "held"); a.code != 503 || a.err.Error != api.CodeOnHold || a.err.Cause != "clock_skew" || a.retryAfter == "" {
		t.Errorf("on hold: %d %q %+v", a.code, a.retryAfter, a.err)
	}

	sb.Set(toks["slow"], sandbox.Hang)
	start := time.Now()
	if a := b.token(t, "slow"); a.code != 503 || a.err.Error != api.CodeBusy || a.retryAfter == "" {
		t.Errorf("hanging refresh: %d %q %+v", a.code, a.retryAfter, a.err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("busy after %s, want about broker.wait", el)
	}
}

// TestBrokerForceIsPaced: a forced refresh gets a new token, but within
// broker.refresh_pace of the last one it gets the token just obtained.
func TestBrokerForceIsPaced(t *testing.T) {
	sb := testutil.Sandbox(t)
	b, _ := brokerOnOneGrant(t, sb, sandbox.Rotate, "", nil)
	a := b.token(t, "g1")
	f1 := b.get(t, "POST", "/v1/grants/g1/token/refresh")
	if f1.code != 200 || f1.tok.AccessToken != a.tok.AccessToken {
		t.Errorf("forced within the pace of the first: %+v, want the token just obtained", f1)
	}
	b.clock.advance(11 * time.Second)
	f2 := b.get(t, "POST", "/v1/grants/g1/token/refresh")
	if f2.code != 200 || f2.tok.AccessToken == a.tok.AccessToken || !sb.AccessTokenLive(f2.tok.AccessToken) {
		t.Errorf("forced after the pace: %+v, want a new token", f2)
	}
	if a := b.token(t, "g1"); a.tok.AccessToken != f2.tok.AccessToken {
		t.Error("the forced token is not the one held")
	}
	if st := sb.Stats(); st.Reused != 0 {
		t.Errorf("%d reuses", st.Reused)
	}
}

// TestBrokerUseDefersTheProbe: while apps fetch a grant's token, the
// scheduler does not probe it; once they stop, it does, an interval after
// the last use.
func TestBrokerUseDefersTheProbe(t *testing.T) {
	sb := testutil.Sandbox(t)
	b, rt := brokerOnOneGrant(t, sb, sandbox.Healthy, "", func(c *config.Config) { c.Providers[0].Interval = time.Second }) // tick 1s
	b.token(t, "g1")
	before := sb.Exchanges(rt)
	for end := time.Now().Add(3500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		b.token(t, "g1")
	}
	if n := sb.Exchanges(rt) - before; n != 0 {
		t.Errorf("%d scheduled probes of a grant in use within its 1s interval, want 0", n)
	}
	testutil.WaitFor(t, 5*time.Second, "a scheduled probe once the grant is not used", func() bool {
		return sb.Exchanges(rt) > before
	})
}

// TestBrokerTokensStayInside: no access token the broker served appears in
// the log (at debug), status, grants show, grants list, the notifications
// or the metrics.
func TestBrokerTokensStayInside(t *testing.T) {
	sb := testutil.Sandbox(t)
	b, rt := brokerOnOneGrant(t, sb, sandbox.Rotate, deadHook, nil)
	var served []string
	for range 3 {
		b.clock.advance(11 * time.Second)
		served = append(served, b.get(t, "POST", "/v1/grants/g1/token/refresh").tok.AccessToken)
	}
	sb.Set(sb.Current(rt), sandbox.Revoked) // a notification is written too
	b.clock.advance(11 * time.Second)
	b.get(t, "POST", "/v1/grants/g1/token/refresh")

	c := InProcess(b.d, false)
	defer c.Close()
	ctx := context.Background()
	var out []string
	st, _ := c.Status(ctx)
	show, _ := c.Show(ctx, "g1")
	for _, v := range []any{st, show} {
		j, _ := json.Marshal(v)
		out = append(out, string(j))
	}
	c.List(ctx, "", "", func(g store.Grant) error { j, _ := json.Marshal(g); out = append(out, string(j)); return nil })
	if pend, err := b.d.DB().PendingOutbox("hook", 100); err == nil {
		for _, e := range pend {
			out = append(out, string(e.Payload))
		}
	}
	resp, err := http.Get(b.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out = append(out, string(m), b.logs.String())
	for _, tok := range served {
		if tok == "" {
			t.Fatal("no token served")
		}
		for i, o := range out {
			if strings.Contains(o, tok) {
				t.Errorf("output %d holds a served access token", i)
			}
		}
	}
}

// TestHeldTokenMemory: a held token costs under 1 KB besides its own bytes
// (a 200-byte token, Google's are about that).
func TestHeldTokenMemory(t *testing.T) {
	var c tokenCache
	const n = 20000
	// The ids and tokens exist before (the store's and the answer's): what
	// is measured is what holding them costs.
	ids, toks := make([]string, n), make([]secret.Secret, n)
	for i := range n {
		ids[i] = fmt.Sprintf("grant-%08d", i)
		toks[i] = secret.Secret(strings.Repeat("a", 200) + ids[i])
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	now := time.Now()
	for i := range n {
		e := c.entry(ids[i])
		e.used.Store(now.UnixNano())
		g := store.Grant{ID: ids[i], Provider: "google", Labels: map[string]string{"tenant": "acme"}, TokenGen: 1,
			State: store.StateHealthy, LastProbeAt: now, LastSuccessAt: now, NextDueAt: now}
		c.stored(g, probes.Result{OK: true, AccessToken: toks[i],
			TokenType: "Bearer", Scope: "https://www.googleapis.com/auth/gmail.readonly openid", ExpiresIn: time.Hour}, now)
		e.view.Store(&grantView{gen: g.TokenGen, labels: g.Labels, state: g.State, at: now.UnixNano()}) // the grant as the broker read it
	}
	runtime.ReadMemStats(&after)
	per := float64(after.TotalAlloc-before.TotalAlloc) / n
	t.Logf("%.0f bytes allocated per held token besides the token", per)
	if per > 1024 {
		t.Errorf("%.0f bytes per held token, want under 1 KB besides the token", per)
	}
	if h := c.get("grant-00000001").held.Load(); h == nil || h.scope.Value() == "" {
		t.Fatal("token not held")
	}
	runtime.KeepAlive(&c)
}

// TestBrokerRequestsSeeNoOtherError: an unknown grant is 404 and a key that
// was revoked is 401, through the running daemon.
func TestBrokerRevokedKey(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb))
	importLines(t, cfg, []string{`{"id":"g1","provider":"acme","refresh_token":"` + sb.Issue(sandbox.Healthy) + `"}`})
	b := startBroker(t, cfg, nil)
	if a := b.token(t, "nope"); a.code != 404 || a.err.Error != "not_found" {
		t.Errorf("unknown grant: %d %+v", a.code, a.err)
	}
	if a := b.token(t, "g1"); a.code != 200 {
		t.Fatalf("%+v", a)
	}
	if err := b.d.RevokeKey("test-app"); err != nil {
		t.Fatal(err)
	}
	if a := b.token(t, "g1"); a.code != 401 {
		t.Errorf("revoked key: %d %+v", a.code, a.err)
	}
	if err := b.d.RevokeKey("test-app"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoke twice: %v", err)
	}
}

// TestTokenSourceAgainstTheBroker: the Go token source speaks the broker's
// contract: a live token from the provider, held by the app until it
// expires less the margin, and a dead grant as ErrReconnectRequired with
// its cause.
func TestTokenSourceAgainstTheBroker(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb))
	rt, dead := sb.Issue(sandbox.Healthy), sb.Issue(sandbox.PasswordChanged)
	importLines(t, cfg, []string{
		`{"id":"u1 gmail","provider":"acme","refresh_token":"` + rt + `"}`,
		`{"id":"u2","provider":"acme","refresh_token":"` + dead + `"}`,
	})
	b := startBroker(t, cfg, nil)
	waitState(t, b.d.DB(), "u1 gmail", store.StateHealthy)
	g2 := waitState(t, b.d.DB(), "u2", store.StateReconnectRequired)
	ts := tokensource.Config{URL: b.url, GrantID: "u1 gmail", Key: b.key, HTTPClient: b.hc}.TokenSource(t.Context())
	tok, err := ts.Token()
	if err != nil || !sb.AccessTokenLive(tok.AccessToken) || tok.Expiry.IsZero() {
		t.Fatalf("%+v %v", tok, err)
	}
	before := sb.Stats().Requests
	for range 10 {
		if again, err := ts.Token(); err != nil || again.AccessToken != tok.AccessToken {
			t.Fatalf("%+v %v", again, err)
		}
	}
	if sb.Stats().Requests != before {
		t.Error("the token source asked the provider again")
	}
	_, err = tokensource.Config{URL: b.url, GrantID: "u2", Key: b.key, HTTPClient: b.hc}.TokenSource(t.Context()).Token()
	var e *tokensource.Error
	if !errors.Is(err, tokensource.ErrReconnectRequired) || !errors.As(err, &e) || e.Cause != g2.Cause || e.Cause == "" || e.Action != "reconnect" {
		t.Errorf("dead grant: %v", err)
	}
}

// TestBrokerRereadsAfterATokenIsStored: a token stored from outside
// (import over the grant, set-token) is seen by the next request: the token
// held for the old refresh token is not served, and new labels scope the
// grant at once.
func TestBrokerRereadsAfterATokenIsStored(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb))
	importLines(t, cfg, []string{`{"id":"g1","provider":"acme","refresh_token":"` + sb.Issue(sandbox.Healthy) + `","labels":{"tenant":"acme"}}`})
	b := startBroker(t, cfg, nil)
	waitState(t, b.d.DB(), "g1", store.StateHealthy)
	_, acmeKey, err := b.d.CreateKey(api.Key{Name: "acme", Labels: map[string]string{"tenant": "acme"}, Scopes: []api.Scope{api.ScopeToken}})
	if err != nil {
		t.Fatal(err)
	}
	allKey := b.key
	old := b.token(t, "g1")
	b.key = acmeKey
	if a := b.token(t, "g1"); a.code != 200 || a.tok.AccessToken != old.tok.AccessToken {
		t.Fatalf("%+v", a)
	}

	// The grant moves to tenant beta with a new refresh token.
	c := InProcess(b.d, false)
	defer c.Close()
	line := `{"id":"g1","provider":"acme","refresh_token":"` + sb.Issue(sandbox.Healthy) + `","labels":{"tenant":"beta"}}` + "\n"
	if _, err := c.Import(t.Context(), strings.NewReader(line), api.ImportOptions{Replace: true}, nil); err != nil {
		t.Fatal(err)
	}
	if a := b.token(t, "g1"); a.code != 404 {
		t.Errorf("acme's key after the grant moved to beta: %d, want 404 at once", a.code)
	}
	b.key = allKey
	moved := b.token(t, "g1")
	if moved.code != 200 || moved.tok.AccessToken == old.tok.AccessToken {
		t.Errorf("after the import: %+v, want a token of the new refresh token", moved)
	}
	if _, err := c.SetToken(t.Context(), "g1", secret.Secret(sb.Issue(sandbox.Healthy))); err != nil {
		t.Fatal(err)
	}
	if a := b.token(t, "g1"); a.code != 200 || a.tok.AccessToken == moved.tok.AccessToken {
		t.Errorf("after set-token: %+v, want a token of the new refresh token", a)
	}
}

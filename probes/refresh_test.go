package probes_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
)

// startSandbox starts a sandbox token endpoint closed with the test.
func startSandbox(t testing.TB) *sandbox.Server {
	t.Helper()
	s, err := sandbox.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newProber(concurrency int) *probes.Prober {
	return &probes.Prober{Client: probes.NewHTTPClient(concurrency, 10*time.Second)}
}

func endpoint(s *sandbox.Server, preset string) probes.Endpoint {
	return probes.Endpoint{
		Preset:       preset,
		TokenURL:     s.TokenURL(),
		ClientID:     "grantwatch",
		ClientSecret: "client-secret-value",
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
}

// refresh probes token with a per-probe deadline, as the daemon does.
func refresh(t testing.TB, p *probes.Prober, ep probes.Endpoint, token string, timeout time.Duration) probes.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Refresh(ctx, ep, secret.Secret(token))
}

func TestRefreshBehaviors(t *testing.T) {
	s := startSandbox(t)
	s.SetSlowDelay(50 * time.Millisecond)
	p := newProber(4)

	for _, tc := range []struct {
		b       sandbox.Behavior
		preset  string
		timeout time.Duration // default 5s
		// want
		ok         bool
		cause      probes.Cause
		status     int
		errorCode  string
		retryAfter time.Duration
		lost       bool
	}{
		{b: sandbox.Healthy, ok: true, status: 200},
		// A single use of a rotating token: checked further in TestRefreshRotation.
		{b: sandbox.Rotate, preset: "hydra", ok: true, status: 200},
		// Google does not say whether it expired or was revoked.
		{b: sandbox.Revoked, preset: "google", cause: probes.CauseInvalidGrant, status: 400, errorCode: "invalid_grant"},
		{b: sandbox.Revoked, cause: probes.CauseInvalidGrant, status: 400, errorCode: "invalid_grant"},
		{b: sandbox.Expired, preset: "microsoft", cause: probes.CauseExpired, status: 400, errorCode: "invalid_grant"},
		{b: sandbox.PasswordChanged, preset: "microsoft", cause: probes.CausePasswordChanged, status: 400, errorCode: "invalid_grant"},
		{b: sandbox.InteractionRequired, preset: "microsoft", cause: probes.CauseInteractionRequired, status: 400, errorCode: "invalid_grant"},
		{b: sandbox.ClockWindow, preset: "google", cause: probes.CauseClockSkew, status: 400, errorCode: "invalid_grant"},
		{b: sandbox.ClockWindow, cause: probes.CauseClockSkew, status: 400, errorCode: "invalid_grant"},
		{b: sandbox.ServerError, cause: probes.CauseServerError, status: 500, errorCode: "server_error"},
		{b: sandbox.BadGateway, cause: probes.CauseServerError, status: 502, lost: true}, // the endpoint may have answered behind the gateway
		{b: sandbox.Unavailable, cause: probes.CauseServerError, status: 503, retryAfter: 2 * time.Second},
		{b: sandbox.RateLimited, preset: "okta", cause: probes.CauseRateLimited, status: 429, errorCode: "E0000047", retryAfter: time.Second},
		{b: sandbox.Slow, ok: true, status: 200},
		// Cut by the probe's deadline, after the request was sent.
		{b: sandbox.Hang, timeout: 200 * time.Millisecond, cause: probes.CauseServerError, lost: true},
		{b: sandbox.FormError, cause: probes.CauseInvalidGrant, status: 400, errorCode: "invalid_grant"},
		// HTTP 200 with an error body: x/oauth2 returns a RetrieveError.
		{b: sandbox.Error200, preset: "github", cause: probes.CauseInvalidGrant, status: 200, errorCode: "bad_refresh_token"},
		// HTTP 200, empty: x/oauth2 fails to parse it, no RetrieveError.
		{b: sandbox.Empty, cause: probes.CauseMalformed, status: 200},
		// A client error no rule reads: unreadable, retried.
		{b: sandbox.Unreadable, preset: "reddit", cause: probes.CauseMalformed, status: 400},
	} {
		t.Run(string(tc.b)+"/"+tc.preset, func(t *testing.T) {
			token := "rt-" + string(tc.b) + "-" + tc.preset
			s.Add(token, tc.b)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			before := time.Now()
			got := refresh(t, p, endpoint(s, tc.preset), token, timeout)

			if got.OK != tc.ok || got.Cause != tc.cause || got.Action != tc.cause.Action() {
				t.Errorf("got OK %v cause %q action %q (rule %q), want OK %v cause %q action %q",
					got.OK, got.Cause, got.Action, got.Rule, tc.ok, tc.cause, tc.cause.Action())
			}
			if got.Status != tc.status {
				t.Errorf("Status: got %d, want %d", got.Status, tc.status)
			}
			if got.Error != tc.errorCode {
				t.Errorf("Error: got %q, want %q", got.Error, tc.errorCode)
			}
			if got.RetryAfter != tc.retryAfter {
				t.Errorf("RetryAfter: got %v, want %v", got.RetryAfter, tc.retryAfter)
			}
			if got.Lost != tc.lost {
				t.Errorf("Lost: got %v, want %v", got.Lost, tc.lost)
			}
			if tc.status != 0 && (got.Date.IsZero() || got.Date.Sub(before).Abs() > 5*time.Second) {
				t.Errorf("Date: got %v, want about %v", got.Date, before)
			}
			if got.Started.Before(before.Add(-time.Second)) || got.Latency <= 0 || got.Latency > timeout+time.Second {
				t.Errorf("Started %v, Latency %v: want a start after %v and a latency within %v", got.Started, got.Latency, before, timeout)
			}
			if tc.b == sandbox.Slow && got.Latency < 50*time.Millisecond {
				t.Errorf("Latency: got %v for a 50ms answer", got.Latency)
			}
			if rotated := !got.NewRefreshToken.IsZero(); rotated != (tc.b == sandbox.Rotate) {
				t.Errorf("NewRefreshToken set: got %v, want %v", rotated, tc.b == sandbox.Rotate)
			}
		})
	}
}

// TestRefreshRotation follows a rotating grant through 50 refreshes, each
// presenting the token the one before returned, then presents a
// rotated-away token: the provider detects reuse and revokes the chain.
func TestRefreshRotation(t *testing.T) {
	s := startSandbox(t)
	p := newProber(2)
	ep := endpoint(s, "hydra")
	s.Add("rt-0", sandbox.Rotate)

	tokens := []string{"rt-0"}
	for i := range 50 {
		got := refresh(t, p, ep, tokens[i], 5*time.Second)
		if !got.OK || got.NewRefreshToken.IsZero() {
			t.Fatalf("refresh %d: got OK %v cause %q, rotated %v; want a rotated token", i, got.OK, got.Cause, !got.NewRefreshToken.IsZero())
		}
		next := got.NewRefreshToken.Reveal()
		if next == tokens[i] {
			t.Fatalf("refresh %d: NewRefreshToken is the presented token", i)
		}
		if cur := s.Current("rt-0"); next != cur {
			t.Fatalf("refresh %d: NewRefreshToken %q, sandbox's current %q", i, next, cur)
		}
		tokens = append(tokens, next)
	}

	// A rotated-away token comes back (a lost write, two workers): reuse.
	got := refresh(t, p, ep, tokens[10], 5*time.Second)
	if got.OK || got.Cause != probes.CauseCodeReused {
		t.Fatalf("reused token: got OK %v cause %q (rule %q), want code_reused", got.OK, got.Cause, got.Rule)
	}
	if got := s.Stats().Reused; got != 1 {
		t.Errorf("sandbox Reused: got %d, want 1", got)
	}
	// The chain is dead: even the newest token fails now.
	got = refresh(t, p, ep, tokens[len(tokens)-1], 5*time.Second)
	if got.OK || got.Action != probes.ActionReconnect {
		t.Errorf("current token after reuse: got OK %v cause %q, want a reconnect cause", got.OK, got.Cause)
	}
}

// TestRefreshTransientNeverReconnect: an outage, whatever a preset's rules
// say about wording, must never tell a user to reconnect.
func TestRefreshTransientNeverReconnect(t *testing.T) {
	s := startSandbox(t)
	p := newProber(4)
	transient := []sandbox.Behavior{sandbox.ServerError, sandbox.BadGateway, sandbox.Unavailable,
		sandbox.RateLimited, sandbox.Hang, sandbox.Empty}
	for _, b := range transient {
		s.Add("rt-"+string(b), b)
	}
	for _, preset := range append([]string{""}, probes.PresetNames()...) {
		for _, b := range transient {
			got := refresh(t, p, endpoint(s, preset), "rt-"+string(b), 100*time.Millisecond)
			if got.OK || got.Action != probes.ActionRetry {
				t.Errorf("preset %q, %s: got OK %v cause %q action %q (rule %q), want action retry",
					preset, b, got.OK, got.Cause, got.Action, got.Rule)
			}
		}
	}
}

func TestRefreshClientAuth(t *testing.T) {
	s := startSandbox(t)
	const id, clientSecret = "grant watch", "s3:cr/t+%=" // characters Basic must escape
	s.SetClient(id, clientSecret)
	s.Add("rt", sandbox.Healthy)
	p := newProber(2)

	for name, style := range map[string]oauth2.AuthStyle{
		"header": oauth2.AuthStyleInHeader, "params": oauth2.AuthStyleInParams, "auto": oauth2.AuthStyleAutoDetect,
	} {
		t.Run(name, func(t *testing.T) {
			ep := endpoint(s, "")
			ep.ClientID, ep.ClientSecret, ep.AuthStyle = id, clientSecret, style
			if got := refresh(t, p, ep, "rt", 5*time.Second); !got.OK {
				t.Errorf("right secret: got cause %q (rule %q), want OK", got.Cause, got.Rule)
			}
			ep.ClientSecret = "wrong-secret"
			got := refresh(t, p, ep, "rt", 5*time.Second)
			if got.Cause != probes.CauseInvalidClient || got.Status != http.StatusUnauthorized {
				t.Errorf("wrong secret: got cause %q status %d, want invalid_client 401", got.Cause, got.Status)
			}
		})
	}
}

// TestRefreshAutoDetectRemembered: against a provider that only takes
// client credentials as parameters, auto-detection costs a second request
// on the first probe only.
func TestRefreshAutoDetectRemembered(t *testing.T) {
	sb := sandbox.New()
	sb.Add("rt", sandbox.Healthy)
	var requests int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		if r.Header.Get("Authorization") != "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
			return
		}
		sb.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()

	p := newProber(2)
	ep := probes.Endpoint{TokenURL: srv.URL + sandbox.TokenPath, ClientID: "id", ClientSecret: "secret"}
	for i, want := range []int{2, 3, 4} {
		if got := refresh(t, p, ep, "rt", 5*time.Second); !got.OK {
			t.Fatalf("probe %d: got cause %q, want OK", i, got.Cause)
		}
		mu.Lock()
		got := requests
		mu.Unlock()
		if got != want {
			t.Errorf("after probe %d: %d requests, want %d", i, got, want)
		}
	}
}

// TestRefreshAutoDetectVerdict: against a provider that only takes the
// Basic header, a revoked grant's invalid_grant shows the client was
// accepted. The probe reports that verdict (retrying with parameters would
// turn it into the provider's invalid_client) and remembers the header, so
// each later probe is one request.
func TestRefreshAutoDetectVerdict(t *testing.T) {
	sb := sandbox.New()
	sb.SetClient("id", "secret")
	sb.Add("rt", sandbox.Revoked)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		sb.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()

	p := newProber(2)
	ep := probes.Endpoint{TokenURL: srv.URL + sandbox.TokenPath, ClientID: "id", ClientSecret: "secret"}
	for i := range 3 {
		got := refresh(t, p, ep, "rt", 5*time.Second)
		if got.Action != probes.ActionReconnect {
			t.Fatalf("probe %d: got cause %q action %q, want the grant's own verdict (reconnect)", i, got.Cause, got.Action)
		}
		if n := requests.Load(); n != int64(i+1) {
			t.Errorf("after probe %d: %d requests, want %d", i, n, i+1)
		}
	}
}

// TestRefreshGatewayAnswerIsLost: a gateway's 502 or 504 may hide a request
// the token endpoint handled (and a token it rotated), so the answer counts
// as lost; a 503 or 408 is the server's own refusal.
func TestRefreshGatewayAnswerIsLost(t *testing.T) {
	for status, lost := range map[int]bool{502: true, 504: true, 503: false, 408: false, 500: false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(status)
			fmt.Fprint(w, "<html>gateway</html>")
		}))
		got := refresh(t, newProber(1), probes.Endpoint{TokenURL: srv.URL}, "rt", 5*time.Second)
		srv.Close()
		if got.OK || got.Action != probes.ActionRetry || got.Lost != lost {
			t.Errorf("HTTP %d: got OK %v action %q Lost %v, want a retry with Lost %v", status, got.OK, got.Action, got.Lost, lost)
		}
	}
}

// TestRefreshDoesNotFollowRedirects: following a 307 would send the refresh
// token and client secret to the redirect's target.
func TestRefreshDoesNotFollowRedirects(t *testing.T) {
	s := startSandbox(t)
	s.Add("rt", sandbox.Healthy)
	srv := httptest.NewServer(http.RedirectHandler(s.TokenURL(), http.StatusTemporaryRedirect))
	defer srv.Close()

	got := refresh(t, newProber(1), probes.Endpoint{TokenURL: srv.URL}, "rt", 5*time.Second)
	if got.OK || got.Action == probes.ActionReconnect || got.Status != http.StatusTemporaryRedirect {
		t.Errorf("got OK %v cause %q status %d, want a non-reconnect failure with status 307", got.OK, got.Cause, got.Status)
	}
	if n := s.Stats().Requests; n != 0 {
		t.Errorf("the redirect was followed: sandbox saw %d requests", n)
	}
}

// TestRefreshUnusable200: 2xx answers x/oauth2 rejects without a
// RetrieveError ("server response missing access_token", unparsable
// bodies) are classified from the body the probe kept.
func TestRefreshUnusable200(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, body string
		lost                    bool
	}{
		{"no access_token", "application/json", `{"token_type":"Bearer","expires_in":3600}`, false},
		{"not json", "application/json", `<html><body>Sign in</body></html>`, false},
		{"slack error", "application/json", `{"ok":false,"error":"invalid_refresh_token"}`, false},
		// A token x/oauth2 misreads (JSON as text/plain) is no failure: see
		// TestRefreshRotatedTokenOddContentType.
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				fmt.Fprint(w, tc.body)
			}))
			defer srv.Close()
			got := refresh(t, newProber(1), probes.Endpoint{TokenURL: srv.URL}, "rt", 5*time.Second)
			if got.OK || got.Cause == probes.CauseNone || got.Status != http.StatusOK || got.Date.IsZero() {
				t.Errorf("got OK %v cause %q status %d date %v, want a classified failure with status 200 and a Date",
					got.OK, got.Cause, got.Status, got.Date)
			}
			if got.Lost != tc.lost {
				t.Errorf("Lost: got %v, want %v", got.Lost, tc.lost)
			}
		})
	}
}

func TestRefreshDateSkew(t *testing.T) {
	s := startSandbox(t)
	s.Add("rt", sandbox.Healthy)
	s.SetDateSkew(10 * time.Minute)
	got := refresh(t, newProber(1), endpoint(s, ""), "rt", 5*time.Second)
	if d := got.Date.Sub(got.Started); !got.OK || d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("got OK %v, Date %v ahead of Started; want OK and about 10m", got.OK, d)
	}
}

func TestRefreshNow(t *testing.T) {
	s := startSandbox(t)
	s.Add("rt", sandbox.Healthy)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	p := &probes.Prober{Client: probes.NewHTTPClient(1, 5*time.Second), Now: func() time.Time { return now }}
	got := refresh(t, p, endpoint(s, ""), "rt", 5*time.Second)
	if !got.Started.Equal(now) || got.Latency <= 0 {
		t.Errorf("Started %v, Latency %v: want %v and a positive latency", got.Started, got.Latency, now)
	}
}

func TestRefreshNoToken(t *testing.T) {
	s := startSandbox(t)
	got := refresh(t, newProber(1), endpoint(s, ""), "", 5*time.Second)
	if got.OK || got.Action != probes.ActionReconnect || s.Stats().Requests != 0 {
		t.Errorf("got OK %v cause %q after %d requests, want reconnect without a request", got.OK, got.Cause, s.Stats().Requests)
	}
}

// TestRefreshLeaksNoSecret: whatever the answer, the presented token and the
// client secret appear in no field of the Result, even when the provider
// echoes them back in its error description.
func TestRefreshLeaksNoSecret(t *testing.T) {
	const token, clientSecret = "rt-TOPSECRET-7f3a9c", "cs-TOPSECRET-b41e0d"
	s := startSandbox(t)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":"invalid_grant %s","error_description":"refresh token %s is not valid for client secret %s"}`,
			r.PostForm.Get("refresh_token"), r.PostForm.Get("refresh_token"), r.PostForm.Get("client_secret"))
	}))
	defer echo.Close()

	p := newProber(4)
	check := func(name string, ep probes.Endpoint) {
		t.Helper()
		ep.ClientSecret = clientSecret
		ep.AuthStyle = oauth2.AuthStyleInParams
		got := refresh(t, p, ep, token, 100*time.Millisecond)
		js, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		var logged strings.Builder
		slog.New(slog.NewJSONHandler(&logged, nil)).Info("probe", "result", got, "access_token", got.AccessToken)
		for _, out := range []string{fmt.Sprintf("%+v", got), fmt.Sprintf("%#v", got), fmt.Sprint(got), string(js), logged.String()} {
			for _, secret := range []string{token, clientSecret, got.NewRefreshToken.Reveal(), got.AccessToken.Reveal()} {
				if secret != "" && strings.Contains(out, secret) {
					t.Errorf("%s: result leaks %q: %s", name, secret, out)
				}
			}
		}
	}
	for _, b := range sandbox.Behaviors() {
		s.Set(token, b)
		check(string(b), endpoint(s, ""))
	}
	check("echo", probes.Endpoint{TokenURL: echo.URL})
	// A refused connection: the error text names only the URL.
	check("refused", probes.Endpoint{TokenURL: "http://127.0.0.1:1/token"})
}

// TestRefreshAccessToken: a successful refresh carries the access token of
// the answer, its type, scope and lifetime (what the broker serves), in
// JSON with expires_in a number or a quoted number, and form-encoded.
func TestRefreshAccessToken(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		access, typ    string
		scope          string
		expires        time.Duration
		rotated        bool
	}{
		// Google: https://pastebin.com/sZd2ut8f (a refresh answer as captured).
		{"google", "application/json; charset=utf-8", `{
  "access_token" : "ya29.AHES6ZTjj9mAqPM5PKWuGcNgTLYrjx4h-yOj8Oo7MJlAcVY",
  "token_type" : "Bearer",
  "expires_in" : 3600,
  "refresh_token" : "1/etkFf20-kme5a1ubOttu7__yV68ndNTx_WDnJVFrxYk"
}`, "ya29.AHES6ZTjj9mAqPM5PKWuGcNgTLYrjx4h-yOj8Oo7MJlAcVY", "Bearer", "", time.Hour, true},
		// GitHub Enterprise 3.0, expires_in quoted:
		// https://docs.github.com/cn/enterprise-server@3.0/developers/apps/building-github-apps/refreshing-user-to-server-access-tokens
		{"github-quoted", "application/json", `{
"access_token": "e72e16c7e42f292c6912e7710c838347ae178b4a",
"expires_in": "28800",
"refresh_token": "r1.c1b4a2e77838347a7e420ce178f2e7c6912e169246c34e1ccbf66c46812d16d5b1a9dc86a149873c",
"refresh_token_expires_in": "15811200",
"scope": "",
"token_type": "bearer"
}`, "e72e16c7e42f292c6912e7710c838347ae178b4a", "bearer", "", 8 * time.Hour, true},
		// GitHub's default form encoding of the answer in omniauth/omniauth-github#99.
		{"github-form", "application/x-www-form-urlencoded",
			"access_token=ghu_16C7e42F292c6912E7710c838347Ae178B4a&expires_in=28800&refresh_token=ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498&refresh_token_expires_in=15811200&scope=repo+gist&token_type=bearer",
			"ghu_16C7e42F292c6912E7710c838347Ae178B4a", "bearer", "repo gist", 8 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ct)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			got := refresh(t, newProber(1), probes.Endpoint{TokenURL: srv.URL, AuthStyle: oauth2.AuthStyleInParams}, "rt-presented", time.Second)
			if !got.OK {
				t.Fatalf("not ok: %+v", got)
			}
			if got.AccessToken.Reveal() != tc.access || got.TokenType != tc.typ || got.Scope != tc.scope || got.ExpiresIn != tc.expires {
				t.Errorf("got %q %q %q %s, want %q %q %q %s", got.AccessToken.Reveal(), got.TokenType, got.Scope, got.ExpiresIn,
					tc.access, tc.typ, tc.scope, tc.expires)
			}
			if got.NewRefreshToken.IsZero() == tc.rotated {
				t.Errorf("rotated = %v, want %v", !got.NewRefreshToken.IsZero(), tc.rotated)
			}
		})
	}
	// explain's path never holds a token.
	if r := probes.Evaluate("", 200, http.Header{"Content-Type": {"application/json"}}, []byte(`{"access_token":"at_x","expires_in":60}`)); !r.OK || !r.AccessToken.IsZero() || r.ExpiresIn != 0 {
		t.Errorf("Evaluate kept the token: %+v", r)
	}
}

// TestRefreshConcurrent: 64 workers share one Prober and one client; the
// pool is sized for them, so the sandbox never sees more than 64 at once.
func TestRefreshConcurrent(t *testing.T) {
	const workers, each = 64, 20
	s := startSandbox(t)
	p := newProber(workers)
	ep := endpoint(s, "")
	var wg sync.WaitGroup
	errs := make(chan string, workers*each)
	for w := range workers {
		token := fmt.Sprintf("rt-%d", w)
		b := sandbox.Healthy
		if w%2 == 1 {
			b = sandbox.Rotate
		}
		s.Add(token, b)
		wg.Go(func() {
			for range each {
				got := refresh(t, p, ep, token, 10*time.Second)
				if !got.OK {
					errs <- fmt.Sprintf("%s: cause %q rule %q", token, got.Cause, got.Rule)
					return
				}
				if !got.NewRefreshToken.IsZero() {
					token = got.NewRefreshToken.Reveal()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	st := s.Stats()
	if st.MaxConcurrent > workers || st.Requests != workers*each {
		t.Errorf("sandbox saw %d requests, at most %d at once; want %d, at most %d", st.Requests, st.MaxConcurrent, workers*each, workers)
	}
}

// TestRefreshRotatedTokenOddContentType: a 2xx token answer whose
// Content-Type x/oauth2 misreads (JSON as text/plain, a form body as JSON, as
// PHP's default text/html, or untyped) still carries the rotated refresh
// token, and the probe must hand it on: it is in the body the probe kept.
func TestRefreshRotatedTokenOddContentType(t *testing.T) {
	for _, tc := range []struct{ name, contentType, body string }{
		{"json as text/plain", "text/plain; charset=utf-8", `{"access_token":"at","refresh_token":"rt-new","token_type":"Bearer","expires_in":3600}`},
		{"form as application/json", "application/json", `access_token=at&refresh_token=rt-new&token_type=bearer&expires_in=3600`},
		{"form as text/html", "text/html; charset=UTF-8", `access_token=at&refresh_token=rt-new&token_type=bearer`},
		{"form untyped", "", `access_token=at&refresh_token=rt-new&token_type=bearer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = nil // no sniffing: send exactly tc.contentType
				if tc.contentType != "" {
					w.Header().Set("Content-Type", tc.contentType)
				}
				fmt.Fprint(w, tc.body)
			}))
			defer srv.Close()
			got := refresh(t, newProber(1), probes.Endpoint{TokenURL: srv.URL}, "rt-old", 5*time.Second)
			if !got.OK || got.NewRefreshToken.Reveal() != "rt-new" {
				t.Errorf("got OK %v cause %q (rule %q) lost %v, rotated %v; want OK with NewRefreshToken rt-new",
					got.OK, got.Cause, got.Rule, got.Lost, !got.NewRefreshToken.IsZero())
			}
			if got.Status != http.StatusOK || got.Date.IsZero() {
				t.Errorf("Status %d Date %v, want 200 and a Date", got.Status, got.Date)
			}
		})
	}
}

// TestRefreshRedactsEncodedEcho: a token endpoint (or a gateway before it)
// that quotes the raw request in its error quotes the token and the client
// secret form-encoded, as x/oauth2 sent them (in the body, or in the Basic
// header, which x/oauth2 builds from the query-escaped id and secret). Those
// forms must not reach the Result either.
func TestRefreshRedactsEncodedEcho(t *testing.T) {
	const token, clientSecret = "1//0gTOPSECRET+rt/x=", "cs/TOPSECRET+b41e=0d"
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		_, basicSecret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		user, pass, _ := r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":"invalid_request","error_description":%q}`,
			"cannot parse request "+string(raw)+" (client "+user+":"+pass+", "+basicSecret+")")
	}))
	defer echo.Close()
	p := newProber(1)
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInParams, oauth2.AuthStyleInHeader} {
		ep := probes.Endpoint{TokenURL: echo.URL, ClientID: "id", ClientSecret: clientSecret, AuthStyle: style}
		got := refresh(t, p, ep, token, 5*time.Second)
		out := fmt.Sprintf("%+v", got)
		basic := base64.StdEncoding.EncodeToString([]byte("id:" + url.QueryEscape(clientSecret)))
		for _, s := range []string{token, clientSecret, url.QueryEscape(token), url.QueryEscape(clientSecret), basic} {
			if strings.Contains(out, s) {
				t.Errorf("auth style %v: result leaks %q: %s", style, s, out)
			}
		}
	}
}

// TestRefreshHostileEndpoints points the probe at token endpoints that
// answer with gigabytes, trickle a byte a second, or never finish: each
// probe must end within its deadline with a retry cause (a broken answer
// says nothing about the grant), read no more than the 1 MiB cap plus what
// the kernel buffers, allocate a bounded amount, and leave no goroutine
// behind.
func TestRefreshHostileEndpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for probe deadlines")
	}
	const (
		// deadline ends a probe the size cap cannot end (a trickle, a
		// stall); quickDeadline only stops a hung test: a probe the size
		// cap must end is given so long that a loaded machine's slow read
		// of 1 MiB cannot be mistaken for the deadline.
		deadline      = 1500 * time.Millisecond
		quickDeadline = 30 * time.Second
		// sentCap bounds what the server gets to write before the probe
		// stops reading and closes: the 1 MiB the probe reads, plus the
		// loopback socket buffers (a few MiB when autotuned).
		sentCap = 1<<20 + 12<<20
		// allocCap bounds the probe's allocations: the capped body, with
		// growth and parsing slack.
		allocCap = 16 << 20
	)
	chunk := []byte(strings.Repeat("A", 32<<10))
	spaces := []byte(strings.Repeat(" ", 32<<10))

	// begin sends header, the status and prefix, counting what was sent.
	begin := func(w http.ResponseWriter, status int, header map[string]string, prefix string, sent *atomic.Int64) error {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		n, err := w.Write([]byte(prefix))
		sent.Add(int64(n))
		return err
	}
	// endless writes prefix, then fill until the client goes away.
	endless := func(status int, header map[string]string, prefix string, fill []byte) func(http.ResponseWriter, *http.Request, *atomic.Int64) {
		return func(w http.ResponseWriter, r *http.Request, sent *atomic.Int64) {
			err := begin(w, status, header, prefix, sent)
			for err == nil {
				var n int
				n, err = w.Write(fill)
				sent.Add(int64(n))
			}
		}
	}
	// trickle writes prefix, then one byte of fill a second.
	trickle := func(status int, prefix string) func(http.ResponseWriter, *http.Request, *atomic.Int64) {
		return func(w http.ResponseWriter, r *http.Request, sent *atomic.Int64) {
			_ = begin(w, status, map[string]string{"Content-Type": "application/json"}, prefix, sent)
			w.(http.Flusher).Flush()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-r.Context().Done():
					return
				case <-tick.C:
				}
				n, err := w.Write([]byte(" "))
				sent.Add(int64(n))
				if err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	}
	// stall sends a complete-looking start, then holds the body open.
	stall := func(status int, header map[string]string, body string) func(http.ResponseWriter, *http.Request, *atomic.Int64) {
		return func(w http.ResponseWriter, r *http.Request, sent *atomic.Int64) {
			_ = begin(w, status, header, body, sent)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}
	const grantJSON = `{"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-new"`
	const invalidGrant = `{"error":"invalid_grant","error_description":"Token has been expired or revoked."`
	json := map[string]string{"Content-Type": "application/json"}

	tests := []struct {
		name    string
		handler func(http.ResponseWriter, *http.Request, *atomic.Int64)
		// quick: the size cap, not the deadline, must end the probe.
		quick bool
	}{
		// Gigabytes of text after a 200, chunked.
		{"endless 200 body", endless(http.StatusOK, json, "", chunk), true},
		// A token answer that never ends: spaces after the last field.
		{"endless 200 token", endless(http.StatusOK, json, grantJSON, spaces), true},
		// An error answer that would be a verdict if it were whole: an
		// invalid_grant cut off by the size cap is no verdict.
		{"endless 400 invalid_grant", endless(http.StatusBadRequest, json, invalidGrant, spaces), true},
		// A 10 GB Content-Length, then bytes as fast as they go.
		{"huge content-length", endless(http.StatusOK, map[string]string{
			"Content-Type": "application/json", "Content-Length": strconv.FormatInt(10<<30, 10)}, grantJSON, spaces), true},
		// Headers without end.
		{"endless headers", func(w http.ResponseWriter, r *http.Request, sent *atomic.Int64) {
			// Take over the connection to write a header block that never
			// ends, below net/http's own header handling.
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
			for i := 0; ; i++ {
				n, err := fmt.Fprintf(buf, "X-Filler-%d: %s\r\n", i, chunk[:1000])
				sent.Add(int64(n))
				if err != nil || buf.Flush() != nil {
					return
				}
			}
		}, true},
		// One byte a second after the start of a token answer.
		{"trickle 200", trickle(http.StatusOK, grantJSON), false},
		// One byte a second after the start of an invalid_grant.
		{"trickle 400", trickle(http.StatusBadRequest, invalidGrant), false},
		// A whole-looking token answer whose body never closes.
		{"never closes", stall(http.StatusOK, json, grantJSON+"}"), false},
		// An invalid_grant whose declared length is never reached.
		{"short of content-length", stall(http.StatusBadRequest, map[string]string{
			"Content-Type": "application/json", "Content-Length": "4096"}, invalidGrant+"}"), false},
		// Headers, then nothing at all.
		{"headers only", stall(http.StatusOK, json, ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent atomic.Int64
			handlerDone := make(chan struct{}, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer func() { handlerDone <- struct{}{} }()
				tt.handler(w, r, &sent)
			}))
			client := probes.NewHTTPClient(2, 10*time.Second)
			p := &probes.Prober{Client: client}
			ep := probes.Endpoint{
				TokenURL: srv.URL + "/token", ClientID: "c", ClientSecret: "s",
				AuthStyle: oauth2.AuthStyleInParams,
			}
			before := runtime.NumGoroutine()

			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			limit := deadline
			if tt.quick {
				limit = quickDeadline
			}
			ctx, cancel := context.WithTimeout(context.Background(), limit)
			start := time.Now()
			res := p.Refresh(ctx, ep, secret.Secret("rt-hostile"))
			took := time.Since(start)
			cancel()
			runtime.ReadMemStats(&ms1)

			if res.OK || !res.Cause.Retryable() {
				t.Errorf("result OK=%v cause %s (%s), want a retry cause", res.OK, res.Cause, res.Rule)
			}
			if !res.NewRefreshToken.IsZero() {
				t.Error("a token was taken from an answer that never completed")
			}
			// The rule says what ended the probe; the elapsed time only
			// checks that the deadline ended a slow one soon after it
			// passed, with room for a loaded machine (three times the
			// deadline, against an endpoint that would never finish).
			if tt.quick && res.Rule == "timeout" {
				t.Errorf("probe ended by its deadline after %s: the size cap should end it", took)
			}
			if !tt.quick && res.Rule != "timeout" {
				t.Errorf("rule %q after %s, want the deadline (timeout) to end it", res.Rule, took)
			}
			if took > 3*limit {
				t.Errorf("probe took %s, deadline %s", took, limit)
			}
			if a := ms1.TotalAlloc - ms0.TotalAlloc; a > allocCap {
				t.Errorf("probe allocated %d MiB, want < %d MiB", a>>20, allocCap>>20)
			}

			// The server's writer must stop: the probe closed the
			// connection instead of draining gigabytes.
			select {
			case <-handlerDone:
			case <-time.After(20 * time.Second):
				t.Fatalf("the endpoint is still sending (%d MiB so far): the probe did not close the connection", sent.Load()>>20)
			}
			if n := sent.Load(); n > sentCap {
				t.Errorf("the endpoint got to send %d MiB, want at most %d MiB", n>>20, sentCap>>20)
			}
			t.Logf("%s: cause %s (%s) after %s, %d KiB sent, %d KiB allocated", tt.name, res.Cause, res.Rule,
				took.Round(time.Millisecond), sent.Load()>>10, (ms1.TotalAlloc-ms0.TotalAlloc)>>10)

			srv.CloseClientConnections()
			srv.Close()
			client.CloseIdleConnections()
			// Goroutines of the probe (transport readers and writers)
			// must be gone once the server is.
			settle := time.Now().Add(20 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(settle) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines before the probe, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}

// TestRefreshRedactsCutToken: a token the provider echoes at the end of a
// description that the parser's cap (1024 bytes) cut in two is still
// redacted; a whole one is replaced; a prefix too short to tell from
// ordinary text is left alone.
func TestRefreshRedactsCutToken(t *testing.T) {
	const token = "1//0gABCDEFGHIJKLMNOP"
	pad := strings.Repeat("x", 1024-len("refresh token ")-10) // the cap falls 10 bytes into the token
	for _, tc := range []struct{ name, desc, want string }{
		{"cut by the cap", "refresh token " + pad + token, "refresh token " + pad + "<secret>"},
		{"whole", "token " + token + " is invalid", "token <secret> is invalid"},
		{"short prefix", "nothing here 1//", "nothing here 1//"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, `{"error":"invalid_grant","error_description":%q}`, tc.desc)
			}))
			defer srv.Close()
			got := refresh(t, newProber(1), probes.Endpoint{TokenURL: srv.URL}, token, 5*time.Second)
			if got.ErrorDescription != tc.want {
				t.Errorf("ErrorDescription = %q, want %q", got.ErrorDescription, tc.want)
			}
		})
	}
}

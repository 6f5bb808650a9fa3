package reconnect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/grantwatch/grantwatch/daemon"
	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

const (
	testClientID     = "test-client"
	testClientSecret = "test-client-secret-DO-NOT-LOG"
)

// reconnectSandbox is a sandbox that knows the test client.
func reconnectSandbox(t *testing.T) *sandbox.Server {
	t.Helper()
	sb, err := sandbox.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	sb.SetClient(testClientID, testClientSecret)
	return sb
}

// reconnectProvider is a provider entry with the sandbox's authorization
// endpoint; tokenURL "" means the sandbox's token endpoint.
func reconnectProvider(name, preset, authURL, tokenURL string) string {
	s := fmt.Sprintf(`
[[providers]]
name = %q
preset = %q
token_url = %q
client_id = %q
client_secret = %q
auth_style = "params"
scopes = ["openid", "email"]
`, name, preset, tokenURL, testClientID, testClientSecret)
	if authURL != "" {
		s += fmt.Sprintf("auth_url = %q\n", authURL)
	}
	return s
}

type reconnectResult struct {
	tok secret.Secret
	err error
}

// startReconnect runs Reconnect in the background and returns the URL it
// showed and its outcome, to be read with wait.
func startReconnect(t *testing.T, cfg *config.Config, provider string, mod func(*Options)) (string, <-chan reconnectResult) {
	t.Helper()
	urls := make(chan string, 1)
	res := make(chan reconnectResult, 1)
	opts := Options{ShowURL: func(u string) { urls <- u }, Timeout: 10 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	go func() {
		tok, err := Run(context.Background(), cfg, provider, opts)
		res <- reconnectResult{tok, err}
	}()
	select {
	case u := <-urls:
		return u, res
	case r := <-res:
		t.Fatalf("Reconnect returned before showing a URL: %v", r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("Reconnect showed no URL within 10s")
	}
	return "", nil
}

func wait(t *testing.T, res <-chan reconnectResult) reconnectResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("Reconnect did not return within 15s")
		return reconnectResult{}
	}
}

// noFollow is a browser that stops at each redirect, so that the test can
// look at (and tamper with) the way back.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// visit GETs u with c and returns the status and body.
func visit(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// callbackURL runs the authorization request without following its
// redirect and returns the redirect back to Reconnect's listener.
func callbackURL(t *testing.T, authURL string) *url.URL {
	t.Helper()
	resp, body := visit(t, noFollow, authURL)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: got %d %q, want 302", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Hostname() != "127.0.0.1" || loc.Path != callbackPath {
		t.Fatalf("authorize redirected to %q, want the loopback callback", resp.Header.Get("Location"))
	}
	return loc
}

func TestReconnectCompletesAgainstSandbox(t *testing.T) {
	sb := reconnectSandbox(t)
	tests := []struct {
		preset string
		// wantParams must be in the authorization URL.
		wantParams url.Values
	}{
		{"", url.Values{"scope": {"openid email"}}},
		{"google", url.Values{"access_type": {"offline"}, "prompt": {"consent"}, "login_hint": {"ann@example.com"}}},
		{"microsoft", url.Values{"scope": {"openid email offline_access"}}},
		// The userinfo endpoint's scope is asked for too (the sandbox's
		// id_token means it is not called).
		{"atlassian", url.Values{"scope": {"openid email offline_access read:me"}, "audience": {"api.atlassian.com"}}},
	}
	for _, tt := range tests {
		t.Run("preset="+tt.preset, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir(), reconnectProvider("p", tt.preset, sb.AuthURL(), sb.TokenURL()))
			authURL, res := startReconnect(t, cfg, "p", func(o *Options) { o.LoginHint = "ann@example.com" })

			u, err := url.Parse(authURL)
			if err != nil || !strings.HasPrefix(authURL, sb.AuthURL()+"?") {
				t.Fatalf("shown URL %q is not the sandbox's authorization endpoint", authURL)
			}
			q := u.Query()
			redirect, _ := url.Parse(q.Get("redirect_uri"))
			if q.Get("response_type") != "code" || q.Get("client_id") != testClientID ||
				q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 ||
				len(q.Get("state")) < 16 || redirect == nil || redirect.Hostname() != "127.0.0.1" ||
				redirect.Port() == "" || redirect.Path != callbackPath {
				t.Errorf("authorization URL %s lacks code+PKCE S256, state or a loopback redirect", authURL)
			}
			for k, v := range tt.wantParams {
				if got := q.Get(k); got != v[0] {
					t.Errorf("authorization URL %s=%q, want %q", k, got, v[0])
				}
			}

			// Play the browser: follow the sandbox's redirect to the callback.
			resp, page := visit(t, http.DefaultClient, authURL)
			if resp.StatusCode != http.StatusOK || !strings.Contains(page, "close this window") {
				t.Errorf("callback page: got %d %q, want 200 saying the window can be closed", resp.StatusCode, page)
			}
			r := wait(t, res)
			if r.err != nil || r.tok.IsZero() {
				t.Fatalf("Reconnect = %v, %v; want a refresh token", r.tok, r.err)
			}
			if strings.Contains(page, r.tok.Reveal()) || strings.Contains(authURL, r.tok.Reveal()) {
				t.Error("the refresh token was shown to the browser")
			}

			// The new token refreshes through the probe the daemon uses.
			p, _ := cfg.Provider("p")
			ep, err := p.Endpoint()
			if err != nil {
				t.Fatal(err)
			}
			if got := (&probes.Prober{}).Refresh(context.Background(), ep, r.tok); !got.OK {
				t.Errorf("refresh of the new token: %s (%s)", got.Cause, got.ErrorDescription)
			}
		})
	}
}

func TestReconnectRefusesWrongState(t *testing.T) {
	sb := reconnectSandbox(t)
	cfg := testConfig(t, t.TempDir(), reconnectProvider("p", "", sb.AuthURL(), sb.TokenURL()))
	authURL, res := startReconnect(t, cfg, "p", nil)

	back := callbackURL(t, authURL)
	q := back.Query()
	q.Set("state", q.Get("state")+"x") // a forged redirect, as in a CSRF
	back.RawQuery = q.Encode()
	resp, page := visit(t, http.DefaultClient, back.String())
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "state mismatch") {
		t.Errorf("tampered callback: got %d %q, want 400 naming the state mismatch", resp.StatusCode, page)
	}
	r := wait(t, res)
	if !errors.Is(r.err, ErrStateMismatch) || !strings.Contains(r.err.Error(), "state mismatch: possible CSRF, start again") {
		t.Errorf("Reconnect error = %v, want ErrStateMismatch", r.err)
	}
	if !r.tok.IsZero() {
		t.Error("a token came back from a refused flow")
	}
}

// TestSandboxRefusesWrongVerifier redeems the flow's code at the token
// endpoint directly with another verifier: refused, and the spent code then
// fails Reconnect's own exchange too.
func TestSandboxRefusesWrongVerifier(t *testing.T) {
	sb := reconnectSandbox(t)
	cfg := testConfig(t, t.TempDir(), reconnectProvider("p", "", sb.AuthURL(), sb.TokenURL()))
	authURL, res := startReconnect(t, cfg, "p", nil)
	back := callbackURL(t, authURL)
	redirect, _ := url.Parse(authURL)

	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {back.Query().Get("code")},
		"redirect_uri":  {redirect.Query().Get("redirect_uri")},
		"code_verifier": {oauth2.GenerateVerifier()},
		"client_id":     {testClientID},
		"client_secret": {testClientSecret},
	}
	resp, err := http.PostForm(sb.TokenURL(), form)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		Error        string `json:"error"`
		RefreshToken string `json:"refresh_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusBadRequest || answer.Error != "invalid_grant" || answer.RefreshToken != "" {
		t.Errorf("wrong verifier: got %d %+v (%v), want 400 invalid_grant", resp.StatusCode, answer, err)
	}

	visit(t, http.DefaultClient, back.String())
	r := wait(t, res)
	var re *Error
	if !errors.As(r.err, &re) || re.Stage != "token" || re.Code != "invalid_grant" || re.Status != http.StatusBadRequest {
		t.Errorf("Reconnect with a spent code: error %v, want a token-stage invalid_grant ReconnectError", r.err)
	}
	var rerr *oauth2.RetrieveError
	if !errors.As(r.err, &rerr) {
		t.Error("ReconnectError does not unwrap to the oauth2.RetrieveError")
	}
}

func TestReconnectProviderRefusal(t *testing.T) {
	sb := reconnectSandbox(t)
	cfg := testConfig(t, t.TempDir(), reconnectProvider("p", "", sb.AuthURL(), sb.TokenURL()))
	authURL, res := startReconnect(t, cfg, "p", nil)

	// The user clicked "Cancel": the provider redirects with an error.
	u, _ := url.Parse(authURL)
	back, _ := url.Parse(u.Query().Get("redirect_uri"))
	back.RawQuery = url.Values{"error": {"access_denied"}, "error_description": {"<b>The user denied</b>"},
		"state": {u.Query().Get("state")}}.Encode()
	resp, page := visit(t, http.DefaultClient, back.String())
	if resp.StatusCode != http.StatusOK || strings.Contains(page, "<b>") {
		t.Errorf("refusal page: got %d %q, want 200 without the provider's markup", resp.StatusCode, page)
	}
	r := wait(t, res)
	var re *Error
	if !errors.As(r.err, &re) || re.Stage != "authorization" || re.Code != "access_denied" ||
		!strings.Contains(r.err.Error(), "declined") {
		t.Errorf("Reconnect error = %v, want an access_denied ReconnectError saying the user declined", r.err)
	}
}

func TestReconnectNeedsRefreshToken(t *testing.T) {
	sb := reconnectSandbox(t)
	// A token endpoint that grants access but no refresh token, as Google
	// does without offline access.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"at_online","token_type":"Bearer","expires_in":3599}`)
	}))
	defer ts.Close()
	cfg := testConfig(t, t.TempDir(), reconnectProvider("p", "", sb.AuthURL(), ts.URL))
	authURL, res := startReconnect(t, cfg, "p", nil)
	resp, _ := visit(t, http.DefaultClient, authURL)
	resp.Body.Close()
	r := wait(t, res)
	if !errors.Is(r.err, ErrNoRefreshToken) || !strings.Contains(r.err.Error(), "offline_access") {
		t.Errorf("Reconnect error = %v, want ErrNoRefreshToken explaining offline access", r.err)
	}
}

func TestReconnectConfigErrorsAndTimeout(t *testing.T) {
	sb := reconnectSandbox(t)
	cfg := testConfig(t, t.TempDir(),
		reconnectProvider("noauth", "", "", sb.TokenURL())+reconnectProvider("p", "", sb.AuthURL(), sb.TokenURL()))
	show := func(string) {}

	_, err := Run(context.Background(), cfg, "noauth", Options{ShowURL: show})
	if err == nil || !strings.Contains(err.Error(), "providers.noauth.auth_url") {
		t.Errorf("no auth_url: error %v, want one naming providers.noauth.auth_url", err)
	}
	_, err = Run(context.Background(), cfg, "nope", Options{ShowURL: show})
	if err == nil || !strings.Contains(err.Error(), `"nope" is not configured`) {
		t.Errorf("unknown provider: error %v", err)
	}

	start := time.Now()
	_, err = Run(context.Background(), cfg, "p", Options{ShowURL: show, Timeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrReconnectTimeout) || !strings.Contains(err.Error(), "within 50ms") {
		t.Errorf("timeout: error %v, want ErrReconnectTimeout naming the timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %s", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err = Run(ctx, cfg, "p", Options{ShowURL: show}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: error %v, want context.Canceled", err)
	}
}

func TestBrowserCommand(t *testing.T) {
	found := func(string) (string, error) { return "/usr/bin/xdg-open", nil }
	missing := func(string) (string, error) { return "", errors.New("not found") }
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	tests := []struct {
		name     string
		goos     string
		getenv   func(string) string
		lookPath func(string) (string, error)
		want     string // "" = no browser
	}{
		{"macOS", "darwin", env(), missing, "open"},
		{"X11 desktop", "linux", env("DISPLAY", ":0"), found, "/usr/bin/xdg-open"},
		{"Wayland desktop", "freebsd", env("WAYLAND_DISPLAY", "wayland-0"), found, "/usr/bin/xdg-open"},
		// A server over SSH: xdg-open may be installed, but no display.
		{"headless with xdg-open", "linux", env(), found, ""},
		{"display without xdg-open", "linux", env("DISPLAY", ":0"), missing, ""},
		{"windows", "windows", env(), found, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(browserCommand(tt.goos, tt.getenv, tt.lookPath), " ")
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestReconnectEndToEnd fixes a dead grant the way `grantwatch reconnect`
// does: through the control API of a daemon opened on a temp database.
func TestReconnectEndToEnd(t *testing.T) {
	sb := reconnectSandbox(t)
	cfg := testConfig(t, t.TempDir(), reconnectProvider("google", "google", sb.AuthURL(), sb.TokenURL()))
	logs := &testutil.LogBuffer{}
	d, err := daemon.Open(daemon.Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c := daemon.InProcess(d, false)
	defer c.Close()
	ctx := context.Background()

	dead := sb.Issue(sandbox.Revoked)
	line := fmt.Sprintf(`{"id":"u1-gmail","provider":"google","refresh_token":%q,"subject":"ann@example.com"}`, dead)
	if _, err := c.Import(ctx, strings.NewReader(line), api.ImportOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Probe(ctx, "u1-gmail")
	if err != nil || rep.Grant.State != store.StateReconnectRequired {
		t.Fatalf("probe of a revoked grant: state %s, err %v; want reconnect_required", rep.Grant.State, err)
	}

	g, err := c.Show(ctx, "u1-gmail")
	if err != nil {
		t.Fatal(err)
	}
	authURL, res := startReconnect(t, cfg, g.Provider, func(o *Options) { o.LoginHint = g.Subject })
	visit(t, http.DefaultClient, authURL)
	r := wait(t, res)
	if r.err != nil {
		t.Fatalf("Reconnect: %v", r.err)
	}
	rep, err = c.SetToken(ctx, "u1-gmail", r.tok)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Result.OK || rep.Grant.State != store.StateHealthy {
		t.Errorf("after reconnect: probe ok %v, state %s; want ok and healthy", rep.Result.OK, rep.Grant.State)
	}
	if g, err := c.Show(ctx, "u1-gmail"); err != nil || g.State != store.StateHealthy {
		t.Errorf("stored grant: state %s, err %v; want healthy", g.State, err)
	}
	if strings.Contains(logs.String(), r.tok.Reveal()) || strings.Contains(logs.String(), testClientSecret) {
		t.Error("a token or the client secret reached the log")
	}
}

// testConfig is a config for these tests: a temporary database, no NTP, the
// given providers' TOML appended.
func testConfig(t *testing.T, dir, extra string) *config.Config {
	t.Helper()
	toml := fmt.Sprintf(`
[daemon]
db = %q
socket = %q
listen = ""
probe_timeout = "2s"
[clock]
servers = []
`, filepath.Join(dir, "gw.db"), filepath.Join(dir, "gw.sock")) + extra
	cfg, err := config.Parse(filepath.Join(dir, "grantwatch.toml"), []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestForgedRedirectDoesNotDropIssuedToken: once the redirect with
// this flow's state is being exchanged (the code is spent), a stray request
// with a wrong state must not end the flow and throw the new refresh token
// away.
func TestForgedRedirectDoesNotDropIssuedToken(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	cb := &callback{
		flow: &Flow{state: "good-state", provider: config.ProviderConfig{Name: "p"}}, done: make(chan struct{}),
		exchange: func(code string) (Result, error) {
			close(entered)
			<-release
			return Result{RefreshToken: "rt-NEW-SECRET"}, nil
		},
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		cb.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/callback?state=good-state&code=c1", nil))
	}()
	<-entered
	rec := httptest.NewRecorder()
	cb.ServeHTTP(rec, httptest.NewRequest("GET", "/callback?state=forged&code=c2", nil))
	close(release)
	<-served
	<-cb.done
	if cb.err != nil || cb.token.Reveal() != "rt-NEW-SECRET" {
		t.Errorf("flow ended with %v (token set: %v), want the issued token", cb.err, !cb.token.IsZero())
	}
	if rec.Code == http.StatusOK {
		t.Errorf("forged redirect answered %d", rec.Code)
	}
}

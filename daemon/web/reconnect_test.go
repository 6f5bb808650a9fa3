package web_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// checkHygiene: the headers every page carries.
func checkHygiene(t *testing.T, what string, r response) {
	t.Helper()
	h := r.Header
	if h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") != "no-referrer" ||
		!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") ||
		strings.Contains(h.Get("Content-Security-Policy"), "script-src") {
		t.Errorf("%s: headers Cache-Control %q, Referrer-Policy %q, CSP %q; want no-store, no-referrer and a CSP without scripts",
			what, h.Get("Cache-Control"), h.Get("Referrer-Policy"), h.Get("Content-Security-Policy"))
	}
}

// TestLinkReconnectsGrant: the link from the grant.reconnect_required
// notification opens a page naming the service and the account; Reconnect
// runs the sign-in at the provider, the callback stores the new token, the
// grant is healthy and grant.recovered reaches the webhook. No token or
// secret reaches a page, a URL after the callback, or the log.
func TestLinkReconnectsGrant(t *testing.T) {
	e := newEnv(t, envOptions{}, "ann@example.com")
	ev := e.waitEvent(notify.TypeReconnectRequired, "g1")
	link := ev.Grant.ReconnectURL
	if !strings.HasPrefix(link, e.base+"/reconnect/") {
		t.Fatalf("reconnect_required carries reconnect_url %q, want a link under %s", link, e.base)
	}
	b := browser(t)
	page := get(t, b, link)
	if page.StatusCode != http.StatusOK || !strings.Contains(page.body, "Google") || !strings.Contains(page.body, "ann@example.com") ||
		!strings.Contains(page.body, `id="reconnect"`) {
		t.Fatalf("link page: %d %s; want the provider, the account and a Reconnect button", page.StatusCode, page.body)
	}
	checkHygiene(t, "link page", page)
	if !strings.Contains(page.Header.Get("Content-Security-Policy"), "form-action 'self' "+e.sb.URL()) {
		t.Errorf("link page CSP %q: form-action must allow the provider's origin", page.Header.Get("Content-Security-Policy"))
	}

	var authURL *url.URL
	b.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), e.sb.AuthURL()) {
			authURL = req.URL
		}
		return nil
	}
	done := press(t, b, link)
	if done.StatusCode != http.StatusOK || !strings.Contains(done.body, "Reconnected") {
		t.Fatalf("after consent: %d %s; want the success page", done.StatusCode, done.body)
	}
	checkHygiene(t, "success page", done)
	q := authURL.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("state") == "" || q.Get("access_type") != "offline" ||
		q.Get("prompt") != "consent" || q.Get("login_hint") != "ann@example.com" || q.Get("redirect_uri") != e.base+"/reconnect/callback" {
		t.Errorf("authorization request %s: want PKCE S256, state, Google's offline parameters, the login hint and the callback", authURL)
	}

	g := e.grant("g1")
	if g.State != store.StateHealthy {
		t.Errorf("grant after reconnect: %s, want healthy", g.State)
	}
	rec := e.waitEvent(notify.TypeRecovered, "g1")
	if rec.PreviousState != string(store.StateReconnectRequired) {
		t.Errorf("grant.recovered previous_state %q", rec.PreviousState)
	}

	// Nothing secret anywhere: the link's secret, the code, the tokens.
	secretRe := regexp.MustCompile(`rt_[A-Z2-7]{10,}|ac_[A-Z2-7]{10,}|` + regexp.QuoteMeta(clientSecret))
	sec := link[strings.LastIndex(link, "/")+1:]
	if secretRe.MatchString(done.body) || strings.Contains(done.body, sec) || strings.Contains(done.Request.URL.RawQuery, "rt_") {
		t.Error("the success page or its URL holds a token, the code or the link")
	}
	if logs := e.logs.String(); secretRe.MatchString(logs) || strings.Contains(logs, sec) {
		t.Errorf("the log holds a token, a code, the client secret or the link's secret")
	}
}

// startHeld presses Reconnect in a new browser and stops at the provider's
// redirect back: it returns the browser and the callback URL it has not
// followed yet.
func startHeld(t *testing.T, link string) (*http.Client, string) {
	t.Helper()
	b := browser(t)
	var held string
	b.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == "/reconnect/callback" {
			held = req.URL.String()
			return http.ErrUseLastResponse
		}
		return nil
	}
	press(t, b, link)
	b.CheckRedirect = nil
	if held == "" {
		t.Fatal("the provider did not send the browser back to the callback")
	}
	return b, held
}

// TestLinkCannotBeUsedTwice: a used link shows "already used"; of two
// sign-ins started from one link, only the first attaches its token.
func TestLinkCannotBeUsedTwice(t *testing.T) {
	e := newEnv(t, envOptions{}, "ann@example.com")
	link := e.link("g1", 0)

	// Two browsers start from the same link before either finishes.
	slow, held := startHeld(t, link)
	if r := press(t, browser(t), link); !strings.Contains(r.body, "Reconnected") {
		t.Fatalf("first sign-in: %d %s", r.StatusCode, r.body)
	}
	gen := e.grant("g1").TokenGen

	r := get(t, slow, held)
	if r.StatusCode != http.StatusGone || !strings.Contains(r.body, "already used") {
		t.Errorf("second sign-in on a used link: %d %s; want 410 already used", r.StatusCode, r.body)
	}
	if got := e.grant("g1").TokenGen; got != gen {
		t.Errorf("the second sign-in stored its token (token_gen %d → %d)", gen, got)
	}
	for _, open := range []func() response{func() response { return get(t, browser(t), link) }, func() response { return press(t, browser(t), link) }} {
		if r := open(); r.StatusCode != http.StatusGone || !strings.Contains(r.body, "already used") {
			t.Errorf("used link opened again: %d %s; want 410 already used", r.StatusCode, r.body)
		}
	}
}

// TestLinkExpires: after its TTL a link shows "expired", and a sign-in
// started before completes nothing.
func TestLinkExpires(t *testing.T) {
	e := newEnv(t, envOptions{}, "ann@example.com")
	link := e.link("g1", time.Minute)

	b, held := startHeld(t, link)
	e.clock.advance(time.Minute + time.Second)
	if r := get(t, b, held); r.StatusCode != http.StatusGone || !strings.Contains(r.body, "expired") {
		t.Errorf("sign-in finished after the TTL: %d %s; want 410 expired", r.StatusCode, r.body)
	}
	if r := get(t, browser(t), link); r.StatusCode != http.StatusGone || !strings.Contains(r.body, "expired") {
		t.Errorf("link after its TTL: %d %s; want 410 expired", r.StatusCode, r.body)
	}
	if g := e.grant("g1"); g.State != store.StateReconnectRequired {
		t.Errorf("grant %s after an expired link, want still reconnect_required", g.State)
	}
}

// TestLinkRefusesAnotherAccount: signed in as someone else, the user sees
// who the link is for; the token is not attached, and the link still works
// for the right account.
func TestLinkRefusesAnotherAccount(t *testing.T) {
	e := newEnv(t, envOptions{}, "ann@example.com")
	link := e.link("g1", 0)
	gen := e.grant("g1").TokenGen

	e.sb.SetAccount("mallory@example.com")
	r := press(t, browser(t), link)
	if r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "different account") ||
		!strings.Contains(r.body, "mallory@example.com") || !strings.Contains(r.body, "ann@example.com") {
		t.Errorf("another account: %d %s; want 403 naming both accounts", r.StatusCode, r.body)
	}
	if g := e.grant("g1"); g.TokenGen != gen || g.State != store.StateReconnectRequired {
		t.Errorf("grant after a sign-in as another account: token_gen %d → %d, state %s; want unchanged", gen, g.TokenGen, g.State)
	}

	e.sb.SetAccount("ANN@example.com") // the same address, in other letters
	if r := press(t, browser(t), link); !strings.Contains(r.body, "Reconnected") {
		t.Errorf("right account after a wrong one: %d %s", r.StatusCode, r.body)
	}
}

// TestLinkRefusesUnnamedAccount: a provider that does not say who signed
// in (no openid scope, no id_token) cannot reconnect a grant with a
// subject.
func TestLinkRefusesUnnamedAccount(t *testing.T) {
	e := newEnv(t, envOptions{scopes: `["mail.read"]`}, "ann@example.com")
	r := press(t, browser(t), e.link("g1", 0))
	if r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "did not say which account") {
		t.Errorf("no id_token: %d %s; want 403 saying the account could not be checked", r.StatusCode, r.body)
	}
	if !strings.Contains(e.logs.String(), `add \"openid\" and \"email\" to the provider's scopes`) {
		t.Error("the log does not tell the operator to add openid and email")
	}
}

// TestLinkErrorPages: every way a link can fail has its own page and
// status, and none spends the link.
func TestLinkErrorPages(t *testing.T) {
	e := newEnv(t, envOptions{}, "ann@example.com")
	link := e.link("g1", 0)
	tests := []struct {
		name   string
		setup  func()
		open   func(b *http.Client) response
		status int
		want   string
	}{
		{"consent denied", func() { e.sb.SetAuthorizeError("access_denied") }, func(b *http.Client) response { return press(t, b, link) },
			http.StatusOK, "did not allow access"},
		{"provider error at the redirect", func() { e.sb.SetAuthorizeError("temporarily_unavailable") }, func(b *http.Client) response { return press(t, b, link) },
			http.StatusBadGateway, "temporarily_unavailable"},
		{"provider error at the token endpoint", func() { e.sb.SetAll(sandbox.ServerError) }, func(b *http.Client) response { return press(t, b, link) },
			http.StatusBadGateway, "did not finish the sign-in"},
		{"unknown link", nil, func(b *http.Client) response { return get(t, b, e.base+"/reconnect/AAAAAAAAAAAAAAAAAAAAAAAAAA") },
			http.StatusNotFound, "not valid"},
		{"callback without a sign-in", nil, func(b *http.Client) response { return get(t, b, e.base+"/reconnect/callback?state=x&code=y") },
			http.StatusBadRequest, "start again"},
		{"callback in another browser", nil, func(*http.Client) response {
			_, held := startHeld(t, link)
			return get(t, browser(t), held) // no flow cookie
		}, http.StatusBadRequest, "not started in this browser"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.sb.SetAuthorizeError("")
			e.sb.SetAll("")
			if tt.setup != nil {
				tt.setup()
			}
			r := tt.open(browser(t))
			if r.StatusCode != tt.status || !strings.Contains(r.body, tt.want) || !strings.Contains(r.body, "What to do") {
				t.Errorf("got %d %s; want %d saying %q and what to do", r.StatusCode, r.body, tt.status, tt.want)
			}
			checkHygiene(t, tt.name, r)
		})
	}
	e.sb.SetAuthorizeError("")
	e.sb.SetAll("")
	if r := press(t, browser(t), link); !strings.Contains(r.body, "Reconnected") {
		t.Errorf("the link after every failure: %d %s; want it to still work", r.StatusCode, r.body)
	}
}

// TestLinkRouteForApps: apps make links on daemon.listen with an app key of
// scope link, within the key's labels; the link works.
func TestLinkRouteForApps(t *testing.T) {
	e := newEnv(t, envOptions{keys: []api.Key{
		{Name: "mailapp", Scopes: []api.Scope{api.ScopeLink}, Labels: map[string]string{"team": "mail"}},
		{Name: "other", Scopes: []api.Scope{api.ScopeLink}, Labels: map[string]string{"team": "crm"}},
		{Name: "oncall", Scopes: []api.Scope{api.ScopeRead}},
	}}, "ann@example.com")
	post := func(key, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, e.base+"/v1/grants/g1/reconnect_link", strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r := read(t, resp)
		return r.StatusCode, r.body
	}
	for _, tt := range []struct {
		name, key string
		status    int
	}{
		{"no key", "", http.StatusUnauthorized},
		{"read key", e.keys["oncall"], http.StatusForbidden},
		{"outside the key's labels", e.keys["other"], http.StatusNotFound},
	} {
		if code, body := post(tt.key, ""); code != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, code, body, tt.status)
		}
	}
	code, body := post(e.keys["mailapp"], `{"ttl":"2h"}`)
	var l api.ReconnectLink
	if code != http.StatusOK || json.Unmarshal([]byte(body), &l) != nil || !strings.HasPrefix(l.URL, e.base+"/reconnect/") ||
		l.GrantID != "g1" || l.ExpiresAt.Sub(e.clock.now()) > 2*time.Hour {
		t.Fatalf("link for the mail app: %d %s", code, body)
	}
	if !strings.Contains(e.logs.String(), `"by":"app:mailapp"`) {
		t.Error("the log does not say which app key made the link")
	}
	if r := press(t, browser(t), l.URL); !strings.Contains(r.body, "Reconnected") {
		t.Errorf("the app's link: %d %s", r.StatusCode, r.body)
	}
}

// TestLinkUserInfoFails: a userinfo endpoint that refuses the new access
// token (GitHub's 401 body, as captured in github.com/hisxo/gitGraber/issues/32)
// ends on the provider-error page naming the provider and the status; the
// grant keeps its token, and no access token reaches the page or the log.
func TestLinkUserInfoFails(t *testing.T) {
	ui := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}`)
	}))
	t.Cleanup(ui.Close)
	e := newEnv(t, envOptions{preset: "github", scopes: `["read:user"]`, provider: fmt.Sprintf("userinfo_url = %q", ui.URL+"/user")}, "ann")
	gen := e.grant("g1").TokenGen
	r := press(t, browser(t), e.link("g1", 0))
	if r.StatusCode != http.StatusBadGateway || !strings.Contains(r.body, "GitHub") || !strings.Contains(r.body, "HTTP 401") ||
		!strings.Contains(r.body, "Bad credentials") {
		t.Errorf("userinfo refused: %d %s; want 502 naming GitHub, HTTP 401 and its message", r.StatusCode, r.body)
	}
	accessToken := regexp.MustCompile(`at_\d+\.\d+\.[0-9a-f]{16}`)
	if accessToken.MatchString(r.body) || accessToken.MatchString(e.logs.String()) {
		t.Error("an access token reached the page or the log")
	}
	if !strings.Contains(e.logs.String(), "userinfo") {
		t.Error("the log does not say the userinfo call failed")
	}
	if g := e.grant("g1"); g.TokenGen != gen || g.State != store.StateReconnectRequired {
		t.Errorf("grant after the failed userinfo call: token_gen %d → %d, %s; want unchanged", gen, g.TokenGen, g.State)
	}
}

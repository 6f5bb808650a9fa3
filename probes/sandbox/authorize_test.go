package sandbox

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

const testRedirect = "http://127.0.0.1:41234/callback"

// testVerifier is a valid RFC 7636 verifier; testChallenge its S256.
var (
	testVerifier  = strings.Repeat("v", 43)
	testChallenge = s256(testVerifier)
)

// authParams is a valid authorization request; mod changes it.
func authParams(mod func(url.Values)) url.Values {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {"cli"},
		"redirect_uri":          {testRedirect},
		"state":                 {"st-123"},
		"scope":                 {"openid offline_access"},
		"code_challenge":        {testChallenge},
		"code_challenge_method": {"S256"},
	}
	if mod != nil {
		mod(q)
	}
	return q
}

func getAuthorize(t *testing.T, h http.Handler, q url.Values) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, AuthorizePath+"?"+q.Encode(), nil))
	return w
}

// redirected returns the query of a 302's Location to testRedirect.
func redirected(t *testing.T, w *httptest.ResponseRecorder) url.Values {
	t.Helper()
	if w.Code != http.StatusFound {
		t.Fatalf("got %d %q, want 302", w.Code, w.Body)
	}
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirect {
		t.Fatalf("redirected to %s, want %s", got, testRedirect)
	}
	return loc.Query()
}

// authorizeCode runs the authorization request and returns the code.
func authorizeCode(t *testing.T, h http.Handler) string {
	t.Helper()
	back := redirected(t, getAuthorize(t, h, authParams(nil)))
	if back.Get("state") != "st-123" || !strings.HasPrefix(back.Get("code"), "ac_") {
		t.Fatalf("redirect query %v, want state st-123 and a code", back)
	}
	return back.Get("code")
}

// exchange posts an authorization-code grant; mod changes the form.
func exchange(t *testing.T, h http.Handler, code string, mod func(url.Values)) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect},
		"code_verifier": {testVerifier}, "client_id": {"cli"},
	}
	if mod != nil {
		mod(form)
	}
	req := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestAuthorizationCodeFlow(t *testing.T) {
	s := New()
	h := s.Handler()
	w := exchange(t, h, authorizeCode(t, h), nil)
	a := decode(t, w)
	if w.Code != http.StatusOK || a.AccessToken == "" || a.RefreshToken == "" {
		t.Fatalf("exchange: got %d %s, want 200 with access and refresh tokens", w.Code, w.Body)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	// The issued refresh token is registered Healthy: it refreshes.
	if w := post(t, h, a.RefreshToken, nil); w.Code != http.StatusOK {
		t.Errorf("refresh of the issued token: got %d %s, want 200", w.Code, w.Body)
	}
}

func TestAuthorizeRefusesBadRequests(t *testing.T) {
	tests := []struct {
		name string
		mod  func(url.Values)
		// status 400: shown to the user, not redirected (RFC 6749
		// §4.1.2.1); else the error redirected back.
		status  int
		wantErr string
	}{
		{"no client_id", func(q url.Values) { q.Del("client_id") }, 400, "client_id"},
		{"unknown client_id", func(q url.Values) { q.Set("client_id", "other") }, 400, "unknown client_id"},
		{"no redirect_uri", func(q url.Values) { q.Del("redirect_uri") }, 400, "redirect_uri is missing"},
		{"redirect not loopback", func(q url.Values) { q.Set("redirect_uri", "http://evil.example:8080/cb") }, 400, "loopback"},
		{"redirect https", func(q url.Values) { q.Set("redirect_uri", "https://127.0.0.1:8080/cb") }, 400, "loopback"},
		{"redirect without port", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1/cb") }, 400, "loopback"},
		{"no response_type", func(q url.Values) { q.Del("response_type") }, 302, "invalid_request"},
		{"implicit grant", func(q url.Values) { q.Set("response_type", "token") }, 302, "unsupported_response_type"},
		{"no PKCE", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, 302, "invalid_request"},
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge_method", "plain") }, 302, "invalid_request"},
		{"method omitted means plain", func(q url.Values) { q.Del("code_challenge_method") }, 302, "invalid_request"},
		{"challenge not a SHA-256", func(q url.Values) { q.Set("code_challenge", "short") }, 302, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			s.SetClient("cli", "sec")
			w := getAuthorize(t, s.Handler(), authParams(tt.mod))
			if tt.status == 400 {
				if w.Code != 400 || w.Header().Get("Location") != "" || !strings.Contains(w.Body.String(), tt.wantErr) {
					t.Errorf("got %d %q (Location %q), want 400 naming %q without a redirect", w.Code, w.Body, w.Header().Get("Location"), tt.wantErr)
				}
				return
			}
			back := redirected(t, w)
			if back.Get("error") != tt.wantErr || back.Get("state") != "st-123" || back.Get("code") != "" {
				t.Errorf("redirect query %v, want error %s, state st-123 and no code", back, tt.wantErr)
			}
		})
	}
	w := httptest.NewRecorder()
	New().Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, AuthorizePath, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /authorize: got %d, want 405", w.Code)
	}
}

func TestExchangeRefusesBadRequests(t *testing.T) {
	tests := []struct {
		name      string
		mod       func(url.Values)
		wantError string
		wantDesc  string
	}{
		{"wrong verifier", func(f url.Values) { f.Set("code_verifier", strings.Repeat("w", 43)) }, "invalid_grant", "code_verifier"},
		{"challenge as verifier", func(f url.Values) { f.Set("code_verifier", testChallenge) }, "invalid_grant", "code_verifier"},
		{"other redirect_uri", func(f url.Values) { f.Set("redirect_uri", "http://127.0.0.1:41234/other") }, "invalid_grant", "redirect_uri"},
		{"other client", func(f url.Values) { f.Set("client_id", "other") }, "invalid_grant", "another client"},
		{"unknown code", func(f url.Values) { f.Set("code", "ac_nope") }, "invalid_grant", "invalid or has expired"},
		{"no code", func(f url.Values) { f.Del("code") }, "invalid_request", "code"},
		{"no verifier", func(f url.Values) { f.Del("code_verifier") }, "invalid_request", "code_verifier"},
		{"no redirect_uri", func(f url.Values) { f.Del("redirect_uri") }, "invalid_request", "redirect_uri"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			h := s.Handler()
			w := exchange(t, h, authorizeCode(t, h), tt.mod)
			a := decode(t, w)
			if w.Code != 400 || a.Error != tt.wantError || !strings.Contains(a.Description, tt.wantDesc) || a.RefreshToken != "" {
				t.Errorf("got %d %s, want 400 %s naming %q", w.Code, w.Body, tt.wantError, tt.wantDesc)
			}
		})
	}
}

func TestCodeIsSingleUseAndShortLived(t *testing.T) {
	s := New()
	h := s.Handler()

	// Wrong verifier first: the code is spent, the right one cannot follow.
	code := authorizeCode(t, h)
	exchange(t, h, code, func(f url.Values) { f.Set("code_verifier", strings.Repeat("w", 43)) })
	if a := decode(t, exchange(t, h, code, nil)); a.Error != "invalid_grant" {
		t.Errorf("right verifier after a wrong one: got %+v, want invalid_grant", a)
	}

	// Reuse revokes the refresh token the code gave.
	code = authorizeCode(t, h)
	first := decode(t, exchange(t, h, code, nil))
	second := decode(t, exchange(t, h, code, nil))
	if second.Error != "invalid_grant" || !strings.Contains(second.Description, "already redeemed") {
		t.Errorf("second redemption: got %+v, want invalid_grant already redeemed", second)
	}
	if w := post(t, h, first.RefreshToken, nil); w.Code != 400 {
		t.Errorf("refresh token of a reused code: got %d, want 400 (revoked)", w.Code)
	}

	// Past CodeLifetime the code is dead.
	now := time.Now()
	s.auth().now = func() time.Time { return now }
	code = authorizeCode(t, h)
	now = now.Add(CodeLifetime + time.Second)
	if a := decode(t, exchange(t, h, code, nil)); a.Error != "invalid_grant" || !strings.Contains(a.Description, "expired") {
		t.Errorf("expired code: got %+v, want invalid_grant expired", a)
	}
}

func TestExchangeClientAuthAndConsentBehavior(t *testing.T) {
	s := New()
	h := s.Handler()
	s.SetClient("cli", "sec")
	s.SetConsentBehavior(Rotate)

	if w := exchange(t, h, authorizeCode(t, h), nil); w.Code != http.StatusUnauthorized || decode(t, w).Error != "invalid_client" {
		t.Errorf("no client secret: got %d %s, want 401 invalid_client", w.Code, w.Body)
	}
	// Basic authentication names the client (RFC 6749 §2.3.1).
	form := url.Values{
		"grant_type": {"authorization_code"}, "code": {authorizeCode(t, h)},
		"redirect_uri": {testRedirect}, "code_verifier": {testVerifier},
	}
	req := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("cli", "sec")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	a := decode(t, w)
	if w.Code != http.StatusOK || a.RefreshToken == "" {
		t.Fatalf("Basic client auth: got %d %s, want 200", w.Code, w.Body)
	}
	// The consent behaviour applies to the issued token: it rotates.
	r := decode(t, post(t, h, a.RefreshToken, url.Values{"client_id": {"cli"}, "client_secret": {"sec"}}))
	if r.RefreshToken == "" || r.RefreshToken == a.RefreshToken {
		t.Errorf("refresh of a Rotate consent token: got %+v, want a new refresh token", r)
	}
}

func TestLoopbackRedirect(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:5000/callback":  true,
		"http://[::1]:5000/callback":      true,
		"http://127.0.0.1:5000/cb?x=1":    true,
		"http://localhost:5000/callback":  false, // RFC 8252 §8.3: not a literal
		"http://127.0.0.1:5000/cb#frag":   false,
		"http://u:p@127.0.0.1:5000/cb":    false,
		"https://127.0.0.1:5000/callback": false,
		"":                                false,
	} {
		if _, err := loopbackRedirect(raw); (err == nil) != ok {
			t.Errorf("loopbackRedirect(%q) error %v, want ok %v", raw, err, ok)
		}
	}
}

// idClaims returns the header and claims of the id_token in w's answer,
// and checks its signature: HS256 under secret, or none without one.
func idClaims(t *testing.T, w *httptest.ResponseRecorder, secret string) (alg string, claims map[string]any) {
	t.Helper()
	var a struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || a.IDToken == "" {
		t.Fatalf("answer %s: no id_token (%v)", w.Body, err)
	}
	parts := strings.Split(a.IDToken, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q is not a JWT", a.IDToken)
	}
	var header map[string]string
	for i, dst := range []any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, dst) != nil {
			t.Fatalf("id_token part %d unreadable: %v", i, err)
		}
	}
	want := ""
	if secret != "" {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(parts[0] + "." + parts[1]))
		want = base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	if parts[2] != want {
		t.Errorf("id_token signature %q, want %q", parts[2], want)
	}
	return header["alg"], claims
}

func TestIDTokenNamesTheAccount(t *testing.T) {
	tests := []struct {
		name    string
		secret  string // SetClient's; "" accepts any client
		account string // SetAccount
		hint    string // login_hint
		scope   string
		// want is the id_token's email, "" for no id_token; alg its alg.
		want, alg string
	}{
		{"default account, unsigned", "", "", "", "openid email", DefaultAccount, "none"},
		{"login_hint, HS256 under the client secret", "sec", "", "ann@example.com", "openid", "ann@example.com", "HS256"},
		// A test signs in as someone else than the grant's user.
		{"SetAccount beats login_hint", "", "mallory@example.com", "ann@example.com", "openid", "mallory@example.com", "none"},
		{"no openid scope, no id_token", "", "", "", "offline_access", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			h := s.Handler()
			s.SetAccount(tt.account)
			auth := func(f url.Values) {}
			if tt.secret != "" {
				s.SetClient("cli", tt.secret)
				auth = func(f url.Values) { f.Set("client_secret", tt.secret) }
			}
			back := redirected(t, getAuthorize(t, h, authParams(func(q url.Values) {
				q.Set("scope", tt.scope)
				q.Set("nonce", "n-1")
				if tt.hint != "" {
					q.Set("login_hint", tt.hint)
				}
			})))
			w := exchange(t, h, back.Get("code"), auth)
			if w.Code != http.StatusOK || decode(t, w).RefreshToken == "" {
				t.Fatalf("exchange: got %d %s", w.Code, w.Body)
			}
			if tt.want == "" {
				if strings.Contains(w.Body.String(), "id_token") {
					t.Errorf("answer %s has an id_token without the openid scope", w.Body)
				}
				return
			}
			alg, c := idClaims(t, w, tt.secret)
			if alg != tt.alg || c["email"] != tt.want || c["email_verified"] != true || c["aud"] != "cli" ||
				c["nonce"] != "n-1" || !strings.HasPrefix(fmt.Sprint(c["sub"]), "sb-") {
				t.Errorf("id_token alg %s, claims %v; want alg %s, email %s, verified, aud cli, nonce n-1, an sb- sub", alg, c, tt.alg, tt.want)
			}
		})
	}
}

func TestConsentPage(t *testing.T) {
	s := New()
	h := s.Handler()
	s.SetConsentPage(true)
	q := authParams(func(q url.Values) { q.Set("login_hint", "ann@example.com") })
	w := getAuthorize(t, h, q)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `value="ann@example.com"`) ||
		!strings.Contains(w.Body.String(), `id="allow"`) || !strings.Contains(w.Body.String(), `id="deny"`) {
		t.Fatalf("consent page: got %d %s, want 200 with the account, Allow and Deny", w.Code, w.Body)
	}
	decide := func(decision, account string) url.Values {
		f := authParams(nil)
		f.Set("decision", decision)
		f.Set("account", account)
		req := httptest.NewRequest(http.MethodPost, AuthorizePath, strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return redirected(t, w)
	}
	if back := decide("deny", ""); back.Get("error") != "access_denied" || back.Get("state") != "st-123" || back.Get("code") != "" {
		t.Errorf("Deny: redirect query %v, want access_denied with the state", back)
	}
	back := decide("allow", "bob@example.com")
	if _, c := idClaims(t, exchange(t, h, back.Get("code"), nil), ""); c["email"] != "bob@example.com" {
		t.Errorf("Allow as bob: id_token email %v", c["email"])
	}

	s.SetAuthorizeError("temporarily_unavailable")
	if back := redirected(t, getAuthorize(t, h, authParams(nil))); back.Get("error") != "temporarily_unavailable" || back.Get("code") != "" {
		t.Errorf("SetAuthorizeError: redirect query %v, want temporarily_unavailable", back)
	}
}

// TestUserInfoNamesTheAccount: the access token of a code exchange without
// openid is the signed-in account's at the userinfo endpoint, in GitHub's
// shape (docs.github.com/en/rest/users/users); a token of a refresh, or
// none, is answered with GitHub's 401 (github.com/hisxo/gitGraber/issues/32).
func TestUserInfoNamesTheAccount(t *testing.T) {
	s := New()
	h := s.Handler()
	s.SetAccount("mallory@example.com")
	back := redirected(t, getAuthorize(t, h, authParams(func(q url.Values) { q.Set("scope", "read:user") })))
	w := exchange(t, h, back.Get("code"), nil)
	a := decode(t, w)
	if w.Code != http.StatusOK || strings.Contains(w.Body.String(), "id_token") {
		t.Fatalf("exchange: got %d %s, want 200 without an id_token", w.Code, w.Body)
	}
	get := func(auth string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, UserInfoPath, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	w = get("Bearer " + a.AccessToken)
	var u struct {
		Login, Email string
		ID           json.Number
	}
	if err := json.Unmarshal(w.Body.Bytes(), &u); w.Code != http.StatusOK || err != nil ||
		u.Login != "mallory" || u.Email != "mallory@example.com" || u.ID == "" {
		t.Errorf("userinfo: got %d %s, want 200 with login mallory, the email and a numeric id", w.Code, w.Body)
	}

	refreshed := decode(t, post(t, h, a.RefreshToken, nil)).AccessToken
	for _, auth := range []string{"", "Bearer at_1.2.3", "Bearer " + refreshed, "Basic " + a.AccessToken} {
		if w := get(auth); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `"message":"Bad credentials"`) {
			t.Errorf("userinfo with %q: got %d %s, want GitHub's 401", auth, w.Code, w.Body)
		}
	}
}

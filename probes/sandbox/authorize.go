package sandbox

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// The authorization endpoint (RFC 6749 §4.1.1) and the authorization-code
// grant of the token endpoint (§4.1.3), with PKCE (RFC 7636), as much as
// `grantwatch reconnect` and the hosted reconnect links need to be tested
// end to end: the user consents at once (or, after SetConsentPage, on a
// page with Allow and Deny), and the browser is sent back to the client's
// loopback redirect URI (RFC 8252 §7.3). S256 is the only challenge method:
// a client that would send its verifier in the clear is a bug worth
// failing on.
//
// With the openid scope the token answer carries an id_token (OpenID
// Connect Core §2) naming the signed-in account (SetAccount, else the
// login_hint, else DefaultAccount): sub, email, email_verified, aud, iss,
// iat, exp and nonce. It is an HS256 JWT under the client secret of
// SetClient (Core §10.1), or unsigned (alg "none") when no secret is set:
// a sandbox's signature proves nothing, and grantwatch reads the claims of
// a token it received from the token endpoint itself without checking one.

// Without openid no id_token comes: UserInfoPath then says whose an access
// token of a code exchange is, in the shape of GitHub's GET /user
// (docs.github.com/en/rest/users/users, "Get the authenticated user"):
// {"login", "id", "email"}, the login being the account's part before the
// "@" and the id a number derived from the account. Any other token is
// answered as GitHub answers a bad one: 401 {"message": "Bad credentials",
// "documentation_url": "https://docs.github.com/rest"} (as captured in
// github.com/hisxo/gitGraber/issues/32).

// UserInfoPath is the userinfo endpoint's path under URL().
const UserInfoPath = "/user"

// CodeLifetime is how long an authorization code can be redeemed; RFC 6749
// §4.1.2 recommends at most ten minutes.
const CodeLifetime = time.Minute

// DefaultAccount is the account that signs in when neither SetAccount nor
// the request's login_hint names one.
const DefaultAccount = "user@sandbox.test"

// authState is the authorization side of a Server: its codes and consent
// behaviour. It is kept apart from the refresh path's map and lock, which
// are benchmarked.
type authState struct {
	mu      sync.Mutex
	codes   map[string]*authCode
	consent Behavior         // of the refresh tokens issued for codes; "" is Healthy
	now     func() time.Time // tests move the clock
	account string           // SetAccount; "" is the login_hint or DefaultAccount
	page    bool             // SetConsentPage: ask before redirecting
	denyErr string           // SetAuthorizeError: answer every request with this error
	// users maps the access token of each code exchange to the account
	// that signed in, for the userinfo endpoint. Tests make few.
	users map[string]string
}

// authCode is one issued authorization code and what its redemption must
// match.
type authCode struct {
	clientID, redirectURI, challenge string
	expires                          time.Time
	used                             bool
	issued                           string // the refresh token issued for it
	// account signed in; an id_token names it when scope has openid.
	account, scope, nonce string
}

func (s *Server) auth() *authState {
	s.authOnce.Do(func() {
		s.authSt = &authState{codes: map[string]*authCode{}, users: map[string]string{}, now: time.Now}
	})
	return s.authSt
}

// setAuth changes the authorization side's settings under its lock.
func (s *Server) setAuth(set func(a *authState)) {
	a := s.auth()
	a.mu.Lock()
	set(a)
	a.mu.Unlock()
}

// SetConsentBehavior sets the behaviour of the refresh tokens the
// authorization-code grant issues from now on. The default is Healthy, so
// that the token of a completed reconnect refreshes.
func (s *Server) SetConsentBehavior(b Behavior) {
	s.setAuth(func(a *authState) { a.consent = b })
}

// SetAccount makes account (an email address) the one that signs in at the
// authorization endpoint, whatever login_hint asks for; "" restores the
// default (login_hint, else DefaultAccount). A test signs in as another
// account than a grant's this way.
func (s *Server) SetAccount(account string) {
	s.setAuth(func(a *authState) { a.account = account })
}

// SetConsentPage makes the authorization endpoint show a consent page
// (the account, Allow and Deny) instead of consenting at once, for tests
// in a browser. Deny redirects with error=access_denied.
func (s *Server) SetConsentPage(on bool) {
	s.setAuth(func(a *authState) { a.page = on })
}

// SetAuthorizeError makes the authorization endpoint redirect every valid
// request back with error=code (RFC 6749 §4.1.2.1), such as
// temporarily_unavailable; "" restores consent.
func (s *Server) SetAuthorizeError(code string) {
	s.setAuth(func(a *authState) { a.denyErr = code })
}

// authorize serves the authorization endpoint: it checks the request and
// redirects with a fresh code, as if the user had signed in and consented;
// with the consent page, GET shows the page and its POST decides.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	a := s.auth()
	a.mu.Lock()
	page, denyErr, account := a.page, a.denyErr, a.account
	a.mu.Unlock()
	// The consent page's form posts back; without it only GET.
	if r.Method != http.MethodGet && (r.Method != http.MethodPost || !page) {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "sandbox: invalid_request: unreadable form", http.StatusBadRequest)
			return
		}
		q = r.PostForm
	}
	// A bad client or redirect URI is shown to the user, never redirected
	// to (RFC 6749 §4.1.2.1): the redirect would go to an attacker.
	clientID := q.Get("client_id")
	if clientID == "" {
		http.Error(w, "sandbox: invalid_request: client_id is missing", http.StatusBadRequest)
		return
	}
	if want := s.clientID.Load(); want != nil && clientID != *want {
		http.Error(w, "sandbox: invalid_client: unknown client_id", http.StatusBadRequest)
		return
	}
	redirect, err := loopbackRedirect(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "sandbox: invalid_request: redirect_uri "+err.Error(), http.StatusBadRequest)
		return
	}

	// From here on errors go back to the client (§4.1.2.1), with the state.
	back := url.Values{}
	if st := q.Get("state"); st != "" {
		back.Set("state", st)
	}
	fail := func(code, desc string) {
		back.Set("error", code)
		back.Set("error_description", desc)
		redirectTo(w, r, redirect, back)
	}
	challenge := q.Get("code_challenge")
	switch rt := q.Get("response_type"); {
	case rt == "":
		fail("invalid_request", "response_type is missing")
		return
	case rt != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case challenge == "":
		fail("invalid_request", "code_challenge is required (PKCE, RFC 7636)")
		return
	case q.Get("code_challenge_method") != "S256":
		// An absent method means plain (RFC 7636 §4.3).
		fail("invalid_request", "code_challenge_method must be S256; plain is not supported")
		return
	case !validChallenge(challenge):
		fail("invalid_request", "code_challenge must be the base64url SHA-256 of the verifier (43 characters)")
		return
	}

	if account == "" {
		account = q.Get("login_hint")
	}
	if account == "" {
		account = DefaultAccount
	}
	switch {
	case denyErr != "":
		fail(denyErr, "The sandbox was told to refuse (SetAuthorizeError).")
		return
	case page && r.Method == http.MethodGet:
		consentPage(w, q, account)
		return
	case page && q.Get("decision") != "allow":
		fail("access_denied", "The user denied the request.")
		return
	case page && q.Get("account") != "":
		account = q.Get("account")
	}

	code := "ac_" + rand.Text()
	a.mu.Lock()
	now := a.now()
	for c, ac := range a.codes { // few codes live at once: sweep as we go
		if now.After(ac.expires) {
			delete(a.codes, c)
		}
	}
	a.codes[code] = &authCode{
		clientID: clientID, redirectURI: redirect.String(), challenge: challenge,
		expires: now.Add(CodeLifetime),
		account: account, scope: q.Get("scope"), nonce: q.Get("nonce"),
	}
	a.mu.Unlock()
	back.Set("code", code)
	redirectTo(w, r, redirect, back)
}

// loopbackRedirect accepts only http://127.0.0.1:PORT/… or
// http://[::1]:PORT/… (RFC 8252 §7.3), the redirect a CLI can receive.
func loopbackRedirect(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("is missing")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("is not a URL")
	}
	if u.Scheme != "http" || (u.Hostname() != "127.0.0.1" && u.Hostname() != "::1") ||
		u.Port() == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("must be http://127.0.0.1:PORT/... (a loopback redirect), not %q", raw)
	}
	return u, nil
}

// redirectTo sends the browser to u with params added to its query.
func redirectTo(w http.ResponseWriter, r *http.Request, u *url.URL, params url.Values) {
	dst := *u
	q := dst.Query()
	for k, v := range params {
		q[k] = v
	}
	dst.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, dst.String(), http.StatusFound)
}

func validChallenge(c string) bool {
	b, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil && len(b) == sha256.Size
}

// exchangeCode serves grant_type=authorization_code (RFC 6749 §4.1.3): the
// code must be live and unused, and issued to this client for this
// redirect_uri, and the verifier must hash to its challenge (RFC 7636 §4.6).
func (s *Server) exchangeCode(w http.ResponseWriter, r *http.Request, req *tokenRequest) {
	for _, p := range [...]struct{ name, v string }{
		{"code", req.code}, {"redirect_uri", req.redirectURI}, {"code_verifier", req.codeVerifier},
	} {
		if p.v == "" {
			s.oauthError(w, http.StatusBadRequest, "invalid_request", "The request is missing a required parameter: "+p.name+".")
			return
		}
	}
	if !s.clientOK(r, req) {
		s.badClient.Add(1)
		if r.Header.Get("Authorization") != "" {
			w.Header()["Www-Authenticate"] = hBasic
		}
		s.write(w, http.StatusUnauthorized, hJSON, bodyHydraInvalidClient)
		return
	}
	clientID := req.clientID
	if id, _, ok := basicAuth(r.Header.Get("Authorization")); ok {
		clientID = id
	}

	a := s.auth()
	a.mu.Lock()
	c, ok := a.codes[req.code]
	var desc, revoke string
	switch {
	case !ok || a.now().After(c.expires):
		desc = "The authorization code is invalid or has expired."
	case c.used:
		// A code presented twice may have been stolen: revoke what it
		// gave (RFC 6749 §4.1.2).
		desc, revoke = "The authorization code was already redeemed.", c.issued
	case clientID != c.clientID:
		desc = "The authorization code was issued to another client."
	case req.redirectURI != c.redirectURI:
		desc = "The redirect_uri does not match the one of the authorization request."
	case subtle.ConstantTimeCompare([]byte(s256(req.codeVerifier)), []byte(c.challenge)) != 1:
		desc = "The code_verifier does not match the code_challenge."
	}
	if ok {
		c.used = true // one try per code, right or wrong
	}
	if desc != "" {
		a.mu.Unlock()
		if revoke != "" {
			s.Set(revoke, Revoked)
		}
		s.oauthError(w, http.StatusBadRequest, "invalid_grant", desc)
		return
	}
	b := a.consent
	if b == "" {
		b = Healthy
	}
	c.issued = s.Issue(b)
	refresh := c.issued
	var idToken string
	if slices.Contains(strings.Fields(c.scope), "openid") {
		idToken = s.idToken(c, clientID, a.now())
	}
	account := c.account
	a.mu.Unlock()
	// The answer success writes, with the id_token added; its access
	// token is the account's at the userinfo endpoint.
	rec := httptest.NewRecorder()
	s.success(rec, refresh)
	var answer map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
		s.oauthError(w, http.StatusInternalServerError, "server_error", "sandbox: "+err.Error())
		return
	}
	if at, _ := answer["access_token"].(string); at != "" {
		s.setAuth(func(a *authState) { a.users[at] = account })
	}
	if idToken != "" {
		answer["id_token"] = idToken
	}
	body, _ := json.Marshal(answer)
	s.write(w, http.StatusOK, hJSON, body)
}

// UserInfoURL is the userinfo endpoint, GitHub's GET /user in shape (see
// the top of this file).
func (s *Server) UserInfoURL() string { return s.endpoint(UserInfoPath) }

// userInfo serves UserInfoPath: the account of a live access token of a
// code exchange, or GitHub's 401.
func (s *Server) userInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	var account string
	if ok && s.AccessTokenLive(tok) {
		a := s.auth()
		a.mu.Lock()
		account = a.users[tok]
		a.mu.Unlock()
	}
	if account == "" {
		s.write(w, http.StatusUnauthorized, hJSON, []byte(`{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}`))
		return
	}
	login, _, _ := strings.Cut(account, "@")
	sum := sha256.Sum256([]byte(strings.ToLower(account)))
	body, _ := json.Marshal(map[string]any{
		"login": login, "id": binary.BigEndian.Uint32(sum[:4]), "email": account,
	})
	s.write(w, http.StatusOK, hJSON, body)
}

// idToken is the id_token of code c: HS256 under the client secret of
// SetClient, or unsigned without one (see the top of this file).
func (s *Server) idToken(c *authCode, clientID string, now time.Time) string {
	sum := sha256.Sum256([]byte(strings.ToLower(c.account)))
	claims := map[string]any{
		"iss": s.url, "aud": clientID, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"sub": "sb-" + hex.EncodeToString(sum[:8]), "email": c.account, "email_verified": true,
	}
	if c.nonce != "" {
		claims["nonce"] = c.nonce
	}
	key := ""
	if sec := s.clientSecret.Load(); sec != nil {
		key = *sec
	}
	alg := "HS256"
	if key == "" {
		alg = "none"
	}
	header, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	payload, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	sig := ""
	if key != "" {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(signed))
		sig = enc.EncodeToString(mac.Sum(nil))
	}
	return signed + "." + sig
}

// consentPage asks the user to allow or deny; the form posts the request's
// parameters back with the decision and the account.
func consentPage(w http.ResponseWriter, q url.Values, account string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var hidden []hiddenField
	for k, vs := range q {
		if k == "decision" || k == "account" {
			continue
		}
		for _, v := range vs {
			hidden = append(hidden, hiddenField{k, v})
		}
	}
	slices.SortFunc(hidden, func(a, b hiddenField) int { return strings.Compare(a.Name, b.Name) })
	_ = consentTmpl.Execute(w, struct {
		Client, Scope, Account string
		Hidden                 []hiddenField
	}{q.Get("client_id"), q.Get("scope"), account, hidden})
}

type hiddenField struct{ Name, Value string }

var consentTmpl = template.Must(template.New("consent").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sandbox sign-in</title></head>
<body style="font-family:sans-serif;max-width:30em;margin:1em auto;padding:0 1em">
<h1>Sandbox provider</h1>
<p><b>{{.Client}}</b> asks for access: <code>{{.Scope}}</code>.</p>
<form method="post">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<p><label>Signed in as <input id="account" name="account" value="{{.Account}}"></label></p>
<p><button id="allow" name="decision" value="allow">Allow</button>
<button id="deny" name="decision" value="deny">Deny</button></p>
</form></body></html>
`))

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// oauthError writes an RFC 6749 §5.2 error answer.
func (s *Server) oauthError(w http.ResponseWriter, status int, code, desc string) {
	body, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, desc})
	s.write(w, status, hJSON, body)
}

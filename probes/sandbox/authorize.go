package sandbox

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// The authorization endpoint (RFC 6749 §4.1.1) and the authorization-code
// grant of the token endpoint (§4.1.3), with PKCE (RFC 7636), as much as
// `grantwatch reconnect` needs to be tested end to end: the user consents at
// once, and the browser is sent straight back to the client's loopback
// redirect URI (RFC 8252 §7.3). S256 is the only challenge method: a client
// that would send its verifier in the clear is a bug worth failing on.

// CodeLifetime is how long an authorization code can be redeemed; RFC 6749
// §4.1.2 recommends at most ten minutes.
const CodeLifetime = time.Minute

// authState is the authorization side of a Server: its codes and consent
// behaviour. It is kept apart from the refresh path's map and lock, which
// are benchmarked.
type authState struct {
	mu      sync.Mutex
	codes   map[string]*authCode
	consent Behavior         // of the refresh tokens issued for codes; "" is Healthy
	now     func() time.Time // tests move the clock
}

// authCode is one issued authorization code and what its redemption must
// match.
type authCode struct {
	clientID, redirectURI, challenge string
	expires                          time.Time
	used                             bool
	issued                           string // the refresh token issued for it
}

func (s *Server) auth() *authState {
	s.authOnce.Do(func() { s.authSt = &authState{codes: map[string]*authCode{}, now: time.Now} })
	return s.authSt
}

// SetConsentBehavior sets the behaviour of the refresh tokens the
// authorization-code grant issues from now on. The default is Healthy, so
// that the token of a completed reconnect refreshes.
func (s *Server) SetConsentBehavior(b Behavior) {
	a := s.auth()
	a.mu.Lock()
	a.consent = b
	a.mu.Unlock()
}

// authorize serves the authorization endpoint: it checks the request and
// redirects with a fresh code, as if the user had signed in and consented.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
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

	code := "ac_" + rand.Text()
	a := s.auth()
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
	a.mu.Unlock()
	s.success(w, refresh)
}

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

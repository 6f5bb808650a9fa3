package reconnect

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
)

// Flow is one authorization-code flow with PKCE (RFC 7636, S256) and state
// for one provider: the URL the browser is sent to, and the exchange of the
// code it comes back with. Both front ends use it: Run on a loopback
// redirect (grantwatch reconnect) and the hosted reconnect link of
// daemon/web, with its callback at reconnect.public_url. A Flow is used
// once; it holds the PKCE verifier, so it never leaves the process.
type Flow struct {
	provider config.ProviderConfig
	conf     *oauth2.Config
	authOpts []oauth2.AuthCodeOption
	state    string
	verifier string
	hc       *http.Client
}

// FlowOptions tune NewFlow.
type FlowOptions struct {
	// LoginHint is sent as login_hint, so that the provider preselects the
	// grant's account (Google and Microsoft honour it). Optional.
	LoginHint string
	// HTTPClient exchanges the code; nil means a client like the probes'
	// (no redirects followed).
	HTTPClient *http.Client
}

// NewFlow prepares a flow for provider p whose redirect comes back to
// redirectURL. It reads p's client secret file. The request carries the
// preset's parameters for a refresh token (probes.Preset AuthParams and
// OfflineScope: Google access_type=offline and prompt=consent, Microsoft
// offline_access, ...).
func NewFlow(p config.ProviderConfig, redirectURL string, opts FlowOptions) (*Flow, error) {
	if p.AuthURL == "" {
		return nil, fmt.Errorf("providers.%s.auth_url: is required for reconnect (the provider's authorization endpoint); set it in the config", p.Name)
	}
	ep, err := p.Endpoint()
	if err != nil {
		return nil, err
	}
	conf := &oauth2.Config{
		ClientID:     ep.ClientID,
		ClientSecret: ep.ClientSecret.Reveal(),
		Endpoint:     oauth2.Endpoint{AuthURL: p.AuthURL, TokenURL: ep.TokenURL, AuthStyle: ep.AuthStyle},
		RedirectURL:  redirectURL,
		Scopes:       slices.Clone(ep.Scopes),
	}
	f := &Flow{provider: p, conf: conf, state: rand.Text(), verifier: oauth2.GenerateVerifier(), hc: opts.HTTPClient}
	if pr, ok := probes.LookupPreset(p.Preset); ok {
		for _, sc := range [...]string{pr.OfflineScope, p.UserInfo().Scope} {
			if sc != "" && !slices.Contains(conf.Scopes, sc) {
				conf.Scopes = append(conf.Scopes, sc)
			}
		}
		keys := make([]string, 0, len(pr.AuthParams))
		for k := range pr.AuthParams {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			f.authOpts = append(f.authOpts, oauth2.SetAuthURLParam(k, pr.AuthParams[k]))
		}
	}
	if opts.LoginHint != "" {
		f.authOpts = append(f.authOpts, oauth2.SetAuthURLParam("login_hint", opts.LoginHint))
	}
	if f.hc == nil {
		f.hc = probes.NewHTTPClient(1, 30*time.Second)
	}
	return f, nil
}

// AuthCodeURL is the authorization request to send the browser to.
func (f *Flow) AuthCodeURL() string {
	return f.conf.AuthCodeURL(f.state, append(slices.Clone(f.authOpts), oauth2.S256ChallengeOption(f.verifier))...)
}

// State is the flow's state parameter (RFC 6749 §10.12).
func (f *Flow) State() string { return f.state }

// StateMatches reports, in constant time, whether s is the flow's state.
func (f *Flow) StateMatches(s string) bool {
	return subtle.ConstantTimeCompare([]byte(s), []byte(f.state)) == 1
}

// Provider is the flow's provider entry.
func (f *Flow) Provider() config.ProviderConfig { return f.provider }

// Redirect reads the redirect's query (state already checked): the code to
// exchange, or the provider's refusal as an *Error (RFC 6749 §4.1.2.1,
// access_denied when the user declined).
func (f *Flow) Redirect(q url.Values) (code string, err error) {
	if c := q.Get("error"); c != "" {
		e := &Error{Stage: "authorization", Code: c, Description: q.Get("error_description"), Provider: f.provider.Name}
		switch c {
		case "access_denied":
			e.hint = "the user declined access; start again and approve every requested permission"
		case "invalid_scope":
			e.hint = fmt.Sprintf("check providers.%s.scopes", f.provider.Name)
		case "unauthorized_client", "invalid_client", "invalid_request":
			e.hint = fmt.Sprintf("check providers.%s (client_id, and that the app registration allows the redirect URI %s)", f.provider.Name, f.redirectHint())
		}
		return "", e
	}
	if code = q.Get("code"); code == "" {
		return "", errors.New("the redirect carried neither a code nor an error: start again")
	}
	return code, nil
}

// redirectHint names the redirect URI the app registration must allow.
func (f *Flow) redirectHint() string {
	if u, err := url.Parse(f.conf.RedirectURL); err == nil && config.IsLoopback(u.Hostname()) {
		return "http://127.0.0.1" + u.Path + " with any port"
	}
	return f.conf.RedirectURL
}

// Result is what a completed flow gives: the new refresh token and the
// account that signed in, as far as the provider told.
type Result struct {
	RefreshToken secret.Secret
	Account      Account
}

// Exchange redeems code with the verifier and returns the new refresh
// token and the account: from the answer's id_token, else from the
// provider's userinfo endpoint (config.ProviderConfig.UserInfo) asked with
// the new access token. A refusal, of the exchange or of the userinfo
// call, is an *Error; an answer without a refresh token is
// ErrNoRefreshToken.
func (f *Flow) Exchange(ctx context.Context, code string) (Result, error) {
	tok, err := f.conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, f.hc), code, oauth2.VerifierOption(f.verifier))
	if err != nil {
		return Result{}, f.exchangeError(err)
	}
	if tok.RefreshToken == "" {
		return Result{}, fmt.Errorf("%w: %s", ErrNoRefreshToken, noRefreshHint(f.provider))
	}
	res := Result{RefreshToken: secret.Secret(tok.RefreshToken)}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		if res.Account, err = parseIDToken(raw, f.conf.ClientID); err != nil {
			return Result{}, fmt.Errorf("provider %s: %w", f.provider.Name, err)
		}
	} else if ui := f.provider.UserInfo(); ui.URL != "" {
		if res.Account, err = f.userInfo(ctx, ui, tok.AccessToken); err != nil {
			return Result{}, err
		}
	}
	return res, nil
}

// userInfoTimeout bounds the userinfo call; maxUserInfo its answer.
const (
	userInfoTimeout = 10 * time.Second
	maxUserInfo     = 64 << 10
)

// userInfo asks ui.URL, with the access token, which account it belongs
// to. Every failure is an *Error of stage "userinfo" naming the status;
// the token is in no error, even where the provider's answer quotes it.
func (f *Flow) userInfo(ctx context.Context, ui probes.UserInfo, accessToken string) (Account, error) {
	fail := func(code, desc string, status int) error {
		if accessToken != "" {
			desc = strings.ReplaceAll(desc, accessToken, "<access token>")
		}
		if len(desc) > 200 {
			desc = desc[:200] + "…"
		}
		return &Error{Provider: f.provider.Name, Stage: "userinfo", Status: status, Code: code, Description: desc,
			hint: fmt.Sprintf("check providers.%s.userinfo_url (%s) and that the client may read the user's profile", f.provider.Name, ui.URL)}
	}
	ctx, cancel := context.WithTimeout(ctx, userInfoTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ui.URL, nil)
	if err != nil {
		return Account{}, fail("bad request", err.Error(), 0)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := f.hc.Do(req)
	if err != nil {
		return Account{}, fail("no answer", err.Error(), 0)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUserInfo+1))
	switch {
	case err != nil:
		return Account{}, fail("answer cut off", err.Error(), resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		// No RFC 6749 code here: the status is the code, so that the
		// link's error page shows it.
		return Account{}, fail(fmt.Sprintf("HTTP %d", resp.StatusCode), errorMessage(body), resp.StatusCode)
	case len(body) > maxUserInfo:
		return Account{}, fail("unreadable answer", fmt.Sprintf("more than %d bytes", maxUserInfo), resp.StatusCode)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return Account{}, fail("unreadable answer", "not a JSON object", resp.StatusCode)
	}
	a := Account{Subject: member(m, ui.ID), Email: member(m, ui.Email), Username: member(m, ui.Username)}
	if unverified(m["email_verified"]) {
		a.Email = ""
	}
	if !a.Known() {
		return Account{}, fail("no account", fmt.Sprintf("the answer has none of %s", strings.Join(slices.Concat(ui.ID, ui.Email, ui.Username), ", ")), resp.StatusCode)
	}
	return a, nil
}

// member is the first of names that m holds as a non-empty string or a
// number (GitHub's id is one), as a string.
func member(m map[string]json.RawMessage, names []string) string {
	for _, n := range names {
		var s string
		var num json.Number
		switch raw := m[n]; {
		case json.Unmarshal(raw, &s) == nil && s != "":
			return s
		case json.Unmarshal(raw, &num) == nil && num != "":
			return num.String()
		}
	}
	return ""
}

// errorMessage is what an error answer says: its error_description,
// message or error member (GitHub: {"message": "Bad credentials"}), else
// nothing; a body that is no JSON (an HTML page) is not quoted.
func errorMessage(body []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	for _, k := range [...]string{"error_description", "message", "error"} {
		var s string
		if json.Unmarshal(m[k], &s) == nil && s != "" {
			return s
		}
	}
	return ""
}

// exchangeError keeps the parsed fields of a token-endpoint refusal: a
// RetrieveError's own message quotes the whole body.
func (f *Flow) exchangeError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("exchange authorization code: %w", err)
	}
	e := &Error{Stage: "token", Code: re.ErrorCode, Description: re.ErrorDescription, err: re, Provider: f.provider.Name}
	if re.Response != nil {
		e.Status = re.Response.StatusCode
	}
	if e.Code == "" {
		e.Code = "no error code"
	}
	switch e.Code {
	case "invalid_client", "unauthorized_client":
		e.hint = fmt.Sprintf("check providers.%s.client_id and its client secret", f.provider.Name)
	case "invalid_grant":
		e.hint = "the code was refused (expired, used twice, or the PKCE verifier did not match); start again"
	}
	return e
}

// noRefreshHint says how to get a refresh token from this provider.
func noRefreshHint(p config.ProviderConfig) string {
	switch p.Preset {
	case "google":
		return "Google issues one only for offline access with consent (grantwatch sent access_type=offline and prompt=consent); check that the OAuth client is a Web or Desktop client and try again"
	case "microsoft":
		return "Microsoft issues one only with the offline_access scope (grantwatch requested it); check that the app registration's API permissions include offline_access"
	}
	return fmt.Sprintf("enable offline access (refresh tokens) for this client at the provider; many providers need the offline_access scope in providers.%s.scopes", p.Name)
}

// Account is who signed in, from the claims of the token answer's id_token
// (OpenID Connect Core §2) or the provider's userinfo answer. The zero
// Account is unknown: the provider sent no id_token (the entry's scopes
// lack openid, or it is no OpenID provider) and has no userinfo endpoint.
type Account struct {
	Subject string // sub (or the userinfo answer's id): the provider's stable id of the account
	Email   string // email, unless email_verified is false
	// Username is preferred_username (Microsoft puts the sign-in name there).
	Username string
}

// Known reports whether the provider named the account.
func (a Account) Known() bool { return a.Subject != "" || a.Email != "" || a.Username != "" }

// Is reports whether the account is the one a grant's subject names: its
// sub exactly, or its email or user name in any letter case.
func (a Account) Is(subject string) bool {
	if subject == "" {
		return false
	}
	return a.Subject == subject || a.Email != "" && strings.EqualFold(a.Email, subject) ||
		a.Username != "" && strings.EqualFold(a.Username, subject)
}

// String names the account for a person: the email or user name, else the
// sub.
func (a Account) String() string {
	switch {
	case a.Email != "":
		return a.Email
	case a.Username != "":
		return a.Username
	}
	return a.Subject
}

// parseIDToken reads the claims of an id_token. The token came straight
// from the token endpoint over TLS, which OpenID Connect Core §3.1.3.7
// (6.) lets stand for the issuer's signature: it is not verified. An
// audience that is not this client is refused: the token is someone
// else's.
func parseIDToken(raw, clientID string) (Account, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return Account{}, errors.New("the id_token is not a JWT (want three dot-separated parts)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return Account{}, fmt.Errorf("the id_token's claims are not base64url: %w", err)
	}
	var c struct {
		Sub           string          `json:"sub"`
		Email         string          `json:"email"`
		EmailVerified json.RawMessage `json:"email_verified"`
		Username      string          `json:"preferred_username"`
		Aud           json.RawMessage `json:"aud"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return Account{}, fmt.Errorf("the id_token's claims are not JSON: %w", err)
	}
	if len(c.Aud) > 0 {
		var one string
		var many []string
		if json.Unmarshal(c.Aud, &one) == nil {
			many = []string{one}
		} else if json.Unmarshal(c.Aud, &many) != nil {
			return Account{}, errors.New("the id_token's aud is neither a string nor a list")
		}
		if !slices.Contains(many, clientID) {
			return Account{}, errors.New("the id_token was issued to another client (aud)")
		}
	}
	a := Account{Subject: c.Sub, Email: c.Email, Username: c.Username}
	if unverified(c.EmailVerified) {
		a.Email = ""
	}
	return a, nil
}

// unverified reports whether an email_verified claim or member says
// false; some providers send it as the string "false".
func unverified(emailVerified json.RawMessage) bool {
	return strings.Trim(string(emailVerified), `"`) == "false"
}

// ErrAccountMismatch: the user signed in as another account than the
// grant's subject, or the provider did not say which account it was.
var ErrAccountMismatch = errors.New("not the grant's account")

// CheckAccount refuses a sign-in as another account than subject, the
// grant's, wrapping ErrAccountMismatch: another account's token must never
// be attached to the grant. A grant without a subject takes any account.
// An account the provider did not name is refused only with strict (the
// hosted link, where nobody watches); the operator running grantwatch
// reconnect is trusted to have signed in right.
func CheckAccount(a Account, subject string, strict bool) error {
	switch {
	case subject == "" || a.Is(subject):
		return nil
	case !a.Known() && !strict:
		return nil
	case !a.Known():
		return fmt.Errorf("%w: the provider did not say which account signed in (no id_token, no userinfo_url); add \"openid\" and \"email\" to the provider's scopes, or set its userinfo_url", ErrAccountMismatch)
	}
	return fmt.Errorf("%w: signed in as %s, the grant is %s's", ErrAccountMismatch, a, subject)
}

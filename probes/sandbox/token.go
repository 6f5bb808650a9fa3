package sandbox

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The bodies, as the providers send them. Sources:
//   - Google revoked/expired: the body quoted in hardwario/gupload#5 and
//     GeneralTask/task-manager#2169 (Google does not tell the two apart).
//   - Google time window: the body quoted in fastlane/fastlane#14972.
//   - Microsoft Entra: the error code reference
//     https://learn.microsoft.com/entra/identity-platform/reference-error-codes
//     (AADSTS50173, AADSTS700082, AADSTS50076), with the full-length
//     descriptions as users quote them (abraunegg/onedrive docs for 50173,
//     Azure CLI output for 700082, Microsoft's MFA baseline docs for 50076).
//     Trace and correlation ids are made up.
//   - Ory Hydra: fosite's ErrInvalidGrant description followed by the hint
//     "The refresh token was already used." that fosite's refresh handler
//     (handler/oauth2/flow_refresh.go) adds when a deactivated, rotated-away
//     token comes back (ory/fosite#567, ory/hydra#2383); invalid_client is
//     fosite's ErrInvalidClient.
//   - GitHub: error bad_refresh_token sent with HTTP 200
//     (docs.github.com "Refreshing user access tokens"; the community thread
//     https://github.com/orgs/community/discussions/24745).
//   - Okta rate limit: error code E0000047,
//     https://developer.okta.com/docs/reference/error-codes/
//   - Reddit's 400 to a refresh, quoted in
//     https://github.com/not-an-aardvark/snoowrap/issues/284
//     ("StatusCodeError: 400 - {...}").
var (
	bodyGoogleRevoked = []byte(`{
  "error": "invalid_grant",
  "error_description": "Token has been expired or revoked."
}`)
	bodyGoogleTimeWindow = []byte(`{
  "error": "invalid_grant",
  "error_description": "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values and use a clock with skew to account for clock differences between systems."
}`)
	bodyEntraExpired         = []byte(`{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity. The token was issued on 2025-01-06T09:12:43.1830000Z and was inactive for 90.00:00:00. Trace ID: 0f5bd7a5-4c1e-4c0b-9d3e-2b8a2f1e7c00 Correlation ID: 3c1d5e7a-9b2f-4e6d-8a1c-5f7e9d3b2a10 Timestamp: 2025-04-07 10:20:31Z","error_codes":[700082],"timestamp":"2025-04-07 10:20:31Z","trace_id":"0f5bd7a5-4c1e-4c0b-9d3e-2b8a2f1e7c00","correlation_id":"3c1d5e7a-9b2f-4e6d-8a1c-5f7e9d3b2a10","error_uri":"https://login.microsoftonline.com/error?code=700082"}`)
	bodyEntraPasswordChanged = []byte(`{"error":"invalid_grant","error_description":"AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '2025-03-01T08:00:00.0000000Z' and the TokensValidFrom date (before which tokens are not valid) for this user is '2025-04-02T14:03:11.0000000Z'. Trace ID: 6a2c4e8f-1b3d-4f5a-9c7e-0d2b4f6a8c10 Correlation ID: 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b Timestamp: 2025-04-07 10:20:31Z","error_codes":[50173],"timestamp":"2025-04-07 10:20:31Z","trace_id":"6a2c4e8f-1b3d-4f5a-9c7e-0d2b4f6a8c10","correlation_id":"9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b","error_uri":"https://login.microsoftonline.com/error?code=50173"}`)
	bodyEntraMFA             = []byte(`{"error":"invalid_grant","error_description":"AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'. Trace ID: 2b4d6f8a-0c1e-4a3b-9d5f-7e9a1c3e5b70 Correlation ID: 4d6f8a0c-2e4a-4b6d-8f0a-2c4e6a8c0e20 Timestamp: 2025-04-07 10:20:31Z","error_codes":[50076],"timestamp":"2025-04-07 10:20:31Z","trace_id":"2b4d6f8a-0c1e-4a3b-9d5f-7e9a1c3e5b70","correlation_id":"4d6f8a0c-2e4a-4b6d-8f0a-2c4e6a8c0e20","error_uri":"https://login.microsoftonline.com/error?code=50076","suberror":"basic_action"}`)
	bodyHydraReused          = []byte(`{"error":"invalid_grant","error_description":"The provided authorization grant (e.g., authorization code, resource owner credentials) or refresh token is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client. The refresh token was already used."}`)
	bodyHydraInvalidClient   = []byte(`{"error":"invalid_client","error_description":"Client authentication failed (e.g., unknown client, no client authentication included, or unsupported authentication method)."}`)
	bodyServerError          = []byte(`{"error":"server_error","error_description":"The authorization server encountered an unexpected condition that prevented it from fulfilling the request."}`)
	bodyUnsupportedGrant     = []byte(`{"error":"unsupported_grant_type","error_description":"The authorization grant type is not supported by the authorization server."}`)
	bodyInvalidRequest       = []byte(`{"error":"invalid_request","error_description":"The request is missing a required parameter: refresh_token."}`)
	bodyFormError            = []byte(`error=invalid_grant&error_description=Invalid+refresh+token`)
	bodyGitHub200            = []byte(`{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired.","error_uri":"https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"}`)
	bodyOktaRateLimit        = []byte(`{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit due to too many requests.","errorLink":"E0000047","errorId":"oaeTfVx7yyQTbmzNm4XB0vQMA","errorCauses":[]}`)
	bodyNginx502             = []byte("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
	bodyReddit400            = []byte(`{"message":"Bad Request","error":400}`)
	body503                  = []byte("<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1><p>The server is temporarily unable to service your request due to maintenance downtime or capacity problems. Please try again later.</p></body></html>\n")
)

// Header values, shared (net/http does not modify them).
var (
	hJSON      = []string{"application/json; charset=utf-8"}
	hForm      = []string{"application/x-www-form-urlencoded"}
	hHTML      = []string{"text/html; charset=utf-8"}
	hNoStore   = []string{"no-store"}
	hNoCache   = []string{"no-cache"}
	hRetry1    = []string{"1"}
	hRetry2    = []string{"2"}
	hBasic     = []string{`Basic realm="sandbox"`}
	hNoSniff   = []string{"nosniff"}
	hAllowPost = []string{"POST"}
)

// maxForm bounds a token request's body; real ones are a few hundred bytes.
const maxForm = 64 << 10

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Handler returns the server's HTTP handler: TokenPath is the token
// endpoint, AuthorizePath the authorization endpoint and UserInfoPath the
// userinfo endpoint (authorize.go).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	n := s.concurrent.Add(1)
	defer s.concurrent.Add(-1)
	for m := s.maxConcurrent.Load(); n > m && !s.maxConcurrent.CompareAndSwap(m, n); m = s.maxConcurrent.Load() {
	}

	switch r.URL.Path {
	case TokenPath:
		s.token(w, r)
	case AuthorizePath:
		s.authorize(w, r)
	case UserInfoPath:
		s.userInfo(w, r)
	default:
		http.NotFound(w, r)
	}
}

// tokenRequest holds the parameters the token endpoint reads; code,
// redirectURI and codeVerifier only for the authorization-code grant.
type tokenRequest struct {
	grantType, refreshToken, clientID, clientSecret string
	code, redirectURI, codeVerifier                 string
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header()["Allow"] = hAllowPost
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxForm))
	var req tokenRequest
	if err == nil {
		err = parseForm(buf.Bytes(), &req)
	}
	bufPool.Put(buf)
	if err != nil {
		s.write(w, http.StatusBadRequest, hJSON, bodyInvalidRequest)
		return
	}

	if o := s.override.Load(); o != nil {
		s.answer(w, r, *o)
		return
	}
	if req.grantType != "refresh_token" {
		if req.grantType == "authorization_code" {
			s.exchangeCode(w, r, &req)
			return
		}
		s.write(w, http.StatusBadRequest, hJSON, bodyUnsupportedGrant)
		return
	}
	if req.refreshToken == "" {
		s.write(w, http.StatusBadRequest, hJSON, bodyInvalidRequest)
		return
	}
	if !s.clientOK(r, &req) {
		s.badClient.Add(1)
		if r.Header.Get("Authorization") != "" {
			w.Header()["Www-Authenticate"] = hBasic
		}
		s.write(w, http.StatusUnauthorized, hJSON, bodyHydraInvalidClient)
		return
	}

	s.mu.RLock()
	c, ok := s.tokens[req.refreshToken]
	var b Behavior
	if ok {
		b = c.behavior
	}
	s.mu.RUnlock()
	if !ok {
		s.unknown.Add(1)
		s.write(w, http.StatusBadRequest, hJSON, bodyGoogleRevoked)
		return
	}
	if b == Rotate {
		s.rotate(w, r, c, req.refreshToken)
		return
	}
	if b == Healthy {
		c.exchanges.Add(1)
	}
	s.answer(w, r, b)
}

// rotate answers for a token of a rotate chain: a new refresh token for the
// current one, reuse detection for any other.
func (s *Server) rotate(w http.ResponseWriter, r *http.Request, c *chain, presented string) {
	s.mu.Lock()
	if c.behavior != Rotate { // changed since the read lock was dropped
		b := c.behavior
		s.mu.Unlock()
		s.answer(w, r, b)
		return
	}
	if c.revoked || presented != c.current && !s.inGrace(c, presented) {
		if !c.revoked {
			s.reused.Add(1)
		}
		c.revoked = true
		s.mu.Unlock()
		s.count(Rotate)
		s.write(w, http.StatusBadRequest, hJSON, bodyHydraReused)
		return
	}
	next := newRefreshToken()
	s.advance(c, presented, next)
	c.exchanges.Add(1)
	s.tokens[next] = c
	s.mu.Unlock()
	s.count(Rotate)
	s.success(w, next)
}

// answer writes behaviour b's answer; Slow and Hang wait on r's context.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, b Behavior) {
	s.count(b)
	switch b {
	case Healthy, Rotate:
		s.success(w, "")
	case Revoked:
		s.write(w, http.StatusBadRequest, hJSON, bodyGoogleRevoked)
	case Expired:
		s.write(w, http.StatusBadRequest, hJSON, bodyEntraExpired)
	case PasswordChanged:
		s.write(w, http.StatusBadRequest, hJSON, bodyEntraPasswordChanged)
	case InteractionRequired:
		s.write(w, http.StatusBadRequest, hJSON, bodyEntraMFA)
	case ClockWindow:
		if win := time.Duration(s.clockWindow.Load()); win > 0 {
			if skew := time.Duration(s.dateSkew.Load()); skew <= win && skew >= -win {
				s.success(w, "")
				return
			}
		}
		s.write(w, http.StatusBadRequest, hJSON, bodyGoogleTimeWindow)
	case ServerError:
		s.write(w, http.StatusInternalServerError, hJSON, bodyServerError)
	case BadGateway:
		s.write(w, http.StatusBadGateway, hHTML, bodyNginx502)
	case Unavailable:
		w.Header()["Retry-After"] = hRetry2
		s.write(w, http.StatusServiceUnavailable, hHTML, body503)
	case RateLimited:
		w.Header()["Retry-After"] = hRetry1
		s.write(w, http.StatusTooManyRequests, hJSON, bodyOktaRateLimit)
	case FormError:
		s.write(w, http.StatusBadRequest, hForm, bodyFormError)
	case Error200:
		s.write(w, http.StatusOK, hJSON, bodyGitHub200)
	case Empty:
		s.write(w, http.StatusOK, hJSON, nil)
	case Unreadable:
		s.write(w, http.StatusBadRequest, hJSON, bodyReddit400)
	case Slow:
		t := time.NewTimer(time.Duration(s.slowDelay.Load()))
		defer t.Stop()
		select {
		case <-t.C:
			s.success(w, "")
		case <-r.Context().Done():
		case <-s.done:
		}
	case Hang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
	default:
		s.write(w, http.StatusInternalServerError, hJSON, bodyServerError)
	}
}

func (s *Server) count(b Behavior) {
	if i, ok := behaviorIndex[b]; ok {
		s.answers[i].Add(1)
	}
}

// success writes a token response (RFC 6749 §5.1): a new access token for
// the access-token lifetime (access.go), and refresh as the new refresh
// token when it is not "".
func (s *Server) success(w http.ResponseWriter, refresh string) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	buf.WriteString(`{"access_token":"`)
	s.appendAccessToken(buf)
	buf.WriteString(`","token_type":"Bearer","expires_in":`)
	var num [20]byte
	buf.Write(strconv.AppendInt(num[:0], int64(s.accessTokenLifetime()/time.Second), 10))
	buf.WriteString(`,"scope":"openid offline_access"`)
	if refresh != "" {
		buf.WriteString(`,"refresh_token":"`)
		buf.WriteString(refresh) // base32 and a prefix: no escaping needed
		buf.WriteByte('"')
	}
	buf.WriteByte('}')
	s.write(w, http.StatusOK, hJSON, buf.Bytes())
	bufPool.Put(buf)
}

// write sends one complete answer with the headers every token endpoint
// answer carries (RFC 6749 §5.1: no caching) and a Date with the skew.
func (s *Server) write(w http.ResponseWriter, status int, contentType []string, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentType
	h["Cache-Control"] = hNoStore
	h["Pragma"] = hNoCache
	h["X-Content-Type-Options"] = hNoSniff
	h["Date"] = s.date()
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// dateHeader caches the Date header value for one second and one skew.
type dateHeader struct {
	sec, skew int64
	v         []string
}

func (s *Server) date() []string {
	skew := s.dateSkew.Load()
	now := time.Now().Add(time.Duration(skew))
	sec := now.Unix()
	if d := s.dateCache.Load(); d != nil && d.sec == sec && d.skew == skew {
		return d.v
	}
	d := &dateHeader{sec: sec, skew: skew, v: []string{now.UTC().Format(http.TimeFormat)}}
	s.dateCache.Store(d)
	return d.v
}

// clientOK checks the client credentials against SetClient's, from the Basic
// header (whose parts x/oauth2 and RFC 6749 §2.3.1 form-encode) or from the
// parameters.
func (s *Server) clientOK(r *http.Request, req *tokenRequest) bool {
	wantID, wantSecret := s.clientID.Load(), s.clientSecret.Load()
	if wantID == nil || wantSecret == nil {
		return true
	}
	id, secret := req.clientID, req.clientSecret
	if a := r.Header.Get("Authorization"); a != "" {
		var ok bool
		if id, secret, ok = basicAuth(a); !ok {
			return false
		}
	}
	return id == *wantID && secret == *wantSecret
}

func basicAuth(h string) (id, secret string, ok bool) {
	const prefix = "Basic "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(h[len(prefix):])
	if err != nil {
		return "", "", false
	}
	rawID, rawSecret, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", false
	}
	if id, err = url.QueryUnescape(rawID); err != nil {
		return "", "", false
	}
	if secret, err = url.QueryUnescape(rawSecret); err != nil {
		return "", "", false
	}
	return id, secret, true
}

// parseForm reads the parameters the endpoint uses from a form-encoded body
// without building a url.Values.
func parseForm(body []byte, req *tokenRequest) error {
	for len(body) > 0 {
		var pair []byte
		pair, body, _ = bytes.Cut(body, []byte{'&'})
		k, v, _ := bytes.Cut(pair, []byte{'='})
		var dst *string
		switch string(k) {
		case "grant_type":
			dst = &req.grantType
		case "refresh_token":
			dst = &req.refreshToken
		case "client_id":
			dst = &req.clientID
		case "client_secret":
			dst = &req.clientSecret
		case "code":
			dst = &req.code
		case "redirect_uri":
			dst = &req.redirectURI
		case "code_verifier":
			dst = &req.codeVerifier
		default:
			continue
		}
		if bytes.IndexByte(v, '%') < 0 && bytes.IndexByte(v, '+') < 0 {
			*dst = string(v)
			continue
		}
		u, err := url.QueryUnescape(string(v))
		if err != nil {
			return err
		}
		*dst = u
	}
	return nil
}

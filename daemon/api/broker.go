package api

// The broker's routes: apps fetch a grant's access token from grantwatch,
// the one holder of its refresh token, instead of refreshing it themselves.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

// Broker serves access tokens; *daemon.Daemon implements it. When the
// Service given to Handler or TCPHandler is also a Broker, the token routes
// are served.
type Broker interface {
	// Token returns an access token of the grant with at least
	// req.MinTTL left, refreshing first when the one held has less (or
	// always, with req.Force, unless one was obtained just now). Errors:
	// wrapping store.ErrNotFound for an unknown grant or one req.Reaches
	// refuses, a *TokenError for a refusal with a state and cause.
	Token(ctx context.Context, req TokenRequest) (Token, error)
}

// TokenRequest is one request for an access token.
type TokenRequest struct {
	ID string
	// MinTTL is how long the token must still be valid; 0 is
	// DefaultMinTTL.
	MinTTL time.Duration
	// Force refreshes even when the token held is fresh enough (paced per
	// grant: within a short window the token just obtained is returned).
	Force bool
	// Reaches is the caller's label selector: a grant it refuses is
	// answered as absent. nil reaches every grant.
	Reaches func(labels map[string]string) bool
}

// DefaultMinTTL is the min_ttl of a token request that names none.
const DefaultMinTTL = 60 * time.Second

// maxMinTTL bounds min_ttl: asking for more than any provider's tokens
// live would refresh on every request.
const maxMinTTL = 24 * time.Hour

// Token is an access token as the broker serves it. AccessToken is the
// only field that is secret; it leaves the process only in the token
// route's answer.
type Token struct {
	AccessToken secret.Secret
	TokenType   string
	ExpiresAt   time.Time
	Scope       string
	GrantID     string
}

// The codes of a TokenError ("error" of the answer). They are part of
// grantwatch's interface.
const (
	CodeReconnectRequired     = "reconnect_required"     // 409: only the user can fix it
	CodeProviderOutage        = "provider_outage"        // 503
	CodeProviderMisconfigured = "provider_misconfigured" // 503
	CodeOnHold                = "on_hold"                // 503: the clock, or the provider
	CodeRateLimited           = "rate_limited"           // 503
	CodeBusy                  = "busy"                   // 503: a refresh is still running
	CodeRefreshFailed         = "refresh_failed"         // 503: a transient failure (outage, bad answer)
	CodeObserveMode           = "observe_mode"           // 409: the provider is in observe mode: its app keeps the tokens
)

// TokenError is the broker's refusal to serve a token, with what the grant
// is doing and what fixes it.
type TokenError struct {
	Code   string
	State  store.State
	Cause  string
	Action string
	Fix    string
	// RetryAfter is when asking again makes sense (503 answers).
	RetryAfter time.Duration
	// Message says it in a sentence.
	Message string
}

func (e *TokenError) Error() string { return e.Message }

// Status is the HTTP status of the refusal: 409 for a grant that needs its
// user or that grantwatch holds no token of (observe mode), 503 for
// everything that passes by itself.
func (e *TokenError) Status() int {
	if e.Code == CodeReconnectRequired || e.Code == CodeObserveMode {
		return http.StatusConflict
	}
	return http.StatusServiceUnavailable
}

// TokenErrorBody is the body of every error answer of the token routes.
// The JSON names are part of grantwatch's interface.
type TokenErrorBody struct {
	Error   string `json:"error"`
	State   string `json:"state"`
	Cause   string `json:"cause"`
	Action  string `json:"action"`
	Fix     string `json:"fix"`
	Message string `json:"message,omitempty"`
}

// brokerRoutes registers the token routes on mux. authorize, when set,
// checks the request's app key (the TCP listener); the control socket
// passes nil.
func brokerRoutes(mux *http.ServeMux, b Broker, authorize func(*http.Request) (func(map[string]string) bool, error)) {
	serve := func(force bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			req := TokenRequest{ID: r.PathValue("id"), Force: force}
			if authorize != nil {
				reaches, err := authorize(r)
				if err != nil {
					writeTokenErr(w, req.ID, err)
					return
				}
				req.Reaches = reaches
			}
			var err error
			if req.MinTTL, err = parseMinTTL(queryValue(r.URL.RawQuery, "min_ttl")); err != nil {
				writeTokenErr(w, req.ID, Invalid(err))
				return
			}
			tok, err := b.Token(r.Context(), req)
			if err != nil {
				writeTokenErr(w, req.ID, err)
				return
			}
			writeToken(w, tok)
		}
	}
	mux.Handle("GET /v1/grants/{id}/token", limitBody(maxBody, serve(false)))
	mux.Handle("POST /v1/grants/{id}/token/refresh", limitBody(maxBody, serve(true)))
}

// tcpAuthorize is the TCP listener's check of a token request: TLS (or
// loopback), an app key with the token scope, and its label selector,
// whose refusal is logged once here and answered 404 by the broker.
func tcpAuthorize(r *http.Request) (func(map[string]string) bool, error) {
	if err := RequireSecure(r); err != nil {
		return nil, err
	}
	k, err := Authorize(r, ScopeToken)
	if err != nil {
		return nil, err
	}
	if len(k.Labels) == 0 {
		return nil, nil
	}
	return func(labels map[string]string) bool {
		if k.Reaches(labels) {
			return true
		}
		DenyGrant(r, k, r.PathValue("id"))
		return false
	}, nil
}

// queryValue is the first value of key in a raw query, unescaped (""
// when absent or not unescapable), without building url.Values.
func queryValue(raw, key string) string {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != key {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return v // parseMinTTL names it
			}
			return u
		}
		return v
	}
	return ""
}

// parseMinTTL reads min_ttl: a Go duration ("60s", "5m") or seconds.
func parseMinTTL(v string) (time.Duration, error) {
	if v == "" {
		return DefaultMinTTL, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseUint(v, 10, 32)
		if nerr != nil {
			return 0, fmt.Errorf("min_ttl %q: want a duration such as 60s or 5m", v)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 || d > maxMinTTL {
		return 0, fmt.Errorf("min_ttl %s: want between 0s and %s", d, maxMinTTL)
	}
	return d, nil
}

// writeToken writes {"access_token","token_type","expires_at","scope",
// "grant_id"}. It is the broker's hot path (tens of thousands a second):
// the body is appended by hand, with encoding/json only for a string that
// needs escaping.
func writeToken(w http.ResponseWriter, t Token) {
	bp := tokenBufs.Get().(*[]byte)
	buf := append((*bp)[:0], `{"access_token":`...)
	buf = appendJSONString(buf, t.AccessToken.Reveal())
	buf = append(buf, `,"token_type":`...)
	buf = appendJSONString(buf, t.TokenType)
	buf = append(buf, `,"expires_at":"`...)
	buf = t.ExpiresAt.UTC().AppendFormat(buf, time.RFC3339)
	buf = append(buf, `","scope":`...)
	buf = appendJSONString(buf, t.Scope)
	buf = append(buf, `,"grant_id":`...)
	buf = appendJSONString(buf, t.GrantID)
	buf = append(buf, "}\n"...)
	h := w.Header()
	h["Content-Type"] = jsonType
	// RFC 6749 §5.1: a token answer is not cached. (net/http sets
	// Content-Length: the body is written whole before the handler returns.)
	h["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
	w.Write(buf)
	// The buffer held a token: wipe it before it is used again.
	clear(buf)
	*bp = buf[:0]
	if cap(buf) <= 4<<10 {
		tokenBufs.Put(bp)
	}
}

// tokenBufs holds the buffers token answers are built in.
var tokenBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

var (
	jsonType = []string{"application/json"}
	noStore  = []string{"no-store"}
)

// appendJSONString appends s as a JSON string.
func appendJSONString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// writeTokenErr answers a token route's error: TokenErrorBody, with the
// status and Retry-After the refusal calls for.
// WriteTokenError answers a token route's request with err as the broker
// does: {"error", "state", "cause", "action", "fix"}, the status of the
// refusal, and Retry-After with a 503 (for a wrapper of the routes, such
// as a standby's refusal).
func WriteTokenError(w http.ResponseWriter, err error) { writeTokenErr(w, "", err) }

func writeTokenErr(w http.ResponseWriter, id string, err error) {
	body := TokenErrorBody{Error: "internal", Message: err.Error()}
	code := http.StatusInternalServerError
	var te *TokenError
	var ce clientError
	switch d, denied := asDenied(err); {
	case errors.As(err, &te):
		code = te.Status()
		body = TokenErrorBody{Error: te.Code, State: string(te.State), Cause: te.Cause, Action: te.Action,
			Fix: te.Fix, Message: te.Message}
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(te.RetryAfter)))
		}
	case denied:
		code, body.Error = d.Status, d.Code
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="grantwatch"`)
			w.Header().Set("Connection", "close")
			defer cutBody(w)
		}
	case errors.Is(err, store.ErrNotFound):
		// An unknown grant and one outside the key's labels look alike.
		code, body.Error = http.StatusNotFound, "not_found"
		body.Message = fmt.Sprintf("no grant %q", id)
	case errors.As(err, &ce):
		code, body.Error = http.StatusBadRequest, "invalid_request"
	}
	writeJSON(w, code, body)
}

// retryAfterSeconds is a Retry-After value: whole seconds, rounded up, at
// least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// TokenAnswer is the body of a token route's answer. The JSON names are
// part of grantwatch's interface; AccessToken is a secret the caller asked
// for (grantwatch token prints it).
type TokenAnswer struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at"`
	Scope       string    `json:"scope"`
	GrantID     string    `json:"grant_id"`
}

// Token fetches an access token of grant id with at least minTTL left (0:
// DefaultMinTTL); force refreshes it first. A refusal is a *TokenError.
func (c *Client) Token(ctx context.Context, id string, minTTL time.Duration, force bool) (TokenAnswer, error) {
	method, path := http.MethodGet, "/v1/grants/"+url.PathEscape(id)+"/token"
	if force {
		method, path = http.MethodPost, path+"/refresh"
	}
	if minTTL > 0 {
		path += "?min_ttl=" + url.QueryEscape(minTTL.String())
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://grantwatch"+path, nil)
	if err != nil {
		return TokenAnswer{}, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return TokenAnswer{}, fmt.Errorf("talk to grantwatch: %w", err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK {
		var a TokenAnswer
		if err := dec.Decode(&a); err != nil {
			return TokenAnswer{}, fmt.Errorf("read token answer: %w", err)
		}
		return a, nil
	}
	var b TokenErrorBody
	if dec.Decode(&b) != nil || b.Error == "" {
		return TokenAnswer{}, fmt.Errorf("token of %s: %s", id, resp.Status)
	}
	msg := b.Message
	if msg == "" {
		msg = b.Error
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return TokenAnswer{}, remoteError{msg: msg, is: store.ErrNotFound}
	case http.StatusConflict, http.StatusServiceUnavailable:
		ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return TokenAnswer{}, &TokenError{Code: b.Error, State: store.State(b.State), Cause: b.Cause, Action: b.Action,
			Fix: b.Fix, Message: msg, RetryAfter: time.Duration(ra) * time.Second}
	}
	return TokenAnswer{}, errors.New(msg)
}

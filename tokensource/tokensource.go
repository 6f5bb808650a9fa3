// Package tokensource is an oauth2.TokenSource backed by grantwatch's
// broker: a Go app gets its users' access tokens from grantwatch, the one
// holder of their refresh tokens, instead of refreshing them itself.
//
//	client := oauth2.NewClient(ctx, tokensource.New("https://grantwatch.internal:9464", "u1-gmail", os.Getenv("GRANTWATCH_KEY")))
//
// A token is reused until it expires less Margin; then the next call asks
// the broker (GET /v1/grants/{id}/token?min_ttl=…), which refreshes only
// when its own token is too old. A refusal is an *Error with the grant's
// state, cause and action: a grant that needs its user to reconnect (409)
// is errors.Is(err, ErrReconnectRequired); trouble that passes by itself
// (503: an outage, a rate limit, a refresh still running) carries
// RetryAfter.
//
// The package imports only the standard library and golang.org/x/oauth2.
package tokensource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// DefaultMargin is how long before its expiry a token is fetched anew.
const DefaultMargin = time.Minute

// Config is a broker token source's settings.
type Config struct {
	// URL is grantwatch's daemon.listen, such as
	// "https://grantwatch.internal:9464".
	URL string
	// GrantID is the grant whose tokens the app uses.
	GrantID string
	// Key is the app's key (grantwatch keys create NAME --scope token).
	Key string
	// Margin: a token is reused until it expires less Margin. Zero is
	// DefaultMargin. The broker is asked for tokens with twice as much
	// left, so that a fresh token is not due again at once.
	Margin time.Duration
	// HTTPClient sends the requests (for a private CA or a client
	// certificate); nil is http.DefaultClient. It is used as given: no
	// oauth2 transport is put around it. A standby's redirect to the
	// leader (307) is followed with the key, to https only (or http on
	// loopback), whatever its CheckRedirect says.
	HTTPClient *http.Client
}

// New is Config{URL: url, GrantID: grantID, Key: key}.TokenSource(context.Background()).
func New(url, grantID, key string) oauth2.TokenSource {
	return Config{URL: url, GrantID: grantID, Key: key}.TokenSource(context.Background())
}

// TokenSource returns a token source that caches the broker's token until
// it expires less c.Margin. ctx bounds every request it sends. Like
// oauth2.ReuseTokenSource, it is safe for concurrent use: concurrent calls
// while no token is held wait for one request.
func (c Config) TokenSource(ctx context.Context) oauth2.TokenSource {
	if c.Margin <= 0 {
		c.Margin = DefaultMargin
	}
	return oauth2.ReuseTokenSourceWithExpiry(nil, &broker{ctx: ctx, c: c}, c.Margin)
}

// ErrReconnectRequired is what an *Error of a grant that needs its user
// to connect again (409) is, for errors.Is.
var ErrReconnectRequired = errors.New("grant needs its user to reconnect")

// Error is the broker's refusal: its HTTP status and the body's fields
// ({"error", "state", "cause", "action", "fix"}).
type Error struct {
	Status int
	// Code is the body's "error": reconnect_required, provider_outage,
	// provider_misconfigured, on_hold, rate_limited, busy, refresh_failed,
	// not_found, unauthorized, forbidden, tls_required.
	Code   string
	State  string
	Cause  string
	Action string
	Fix    string
	// Message says it in a sentence.
	Message string
	// RetryAfter is the broker's Retry-After (503), 0 if none.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Code
	}
	s := fmt.Sprintf("grantwatch broker: %d %s", e.Status, msg)
	if e.Cause != "" {
		s += " (cause " + e.Cause + ", action " + e.Action + ")"
	}
	return s
}

// Is makes a 409 errors.Is(err, ErrReconnectRequired).
func (e *Error) Is(target error) bool {
	return target == ErrReconnectRequired && e.Code == "reconnect_required"
}

// broker fetches one grant's token.
type broker struct {
	ctx context.Context
	c   Config
}

// answer is the broker's token answer.
type answer struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at"`
	Scope       string    `json:"scope"`
}

func (b *broker) Token() (*oauth2.Token, error) {
	u := strings.TrimSuffix(b.c.URL, "/") + "/v1/grants/" + url.PathEscape(b.c.GrantID) +
		"/token?min_ttl=" + url.QueryEscape((2 * b.c.Margin).String())
	resp, err := b.get(u)
	if err != nil {
		return nil, fmt.Errorf("grantwatch broker: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("grantwatch broker: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, refusal(resp, body)
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil || a.AccessToken == "" {
		return nil, fmt.Errorf("grantwatch broker: answer is not a token (%d bytes)", len(body))
	}
	t := &oauth2.Token{AccessToken: a.AccessToken, TokenType: a.TokenType, Expiry: a.ExpiresAt}
	return t.WithExtra(map[string]any{"scope": a.Scope}), nil
}

// maxRedirects bounds the standbys' redirects a request follows.
const maxRedirects = 3

// get sends the token request to u. A standby of a fleet that shares an
// etcd store answers 307 with the leader's URL; net/http would follow it
// without the Authorization header (it drops it for another host), so get
// follows it itself with the key, and only to https (or http on loopback,
// as grantwatch itself allows): the key never crosses the network in clear.
func (b *broker) get(u string) (*http.Response, error) {
	hc := http.DefaultClient
	if b.c.HTTPClient != nil {
		hc = b.c.HTTPClient
	}
	nc := *hc
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for hops := 0; ; hops++ {
		req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+b.c.Key)
		resp, err := nc.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect {
			return resp, nil
		}
		loc, err := resp.Location()
		if err != nil || hops == maxRedirects || !(loc.Scheme == "https" || loc.Scheme == "http" && loopback(loc.Hostname())) {
			return resp, nil // a refusal (refusal names the status)
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		u = loc.String()
	}
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func refusal(resp *http.Response, body []byte) *Error {
	var b struct {
		Error, State, Cause, Action, Fix, Message string
	}
	e := &Error{Status: resp.StatusCode}
	if json.Unmarshal(body, &b) == nil {
		e.Code, e.State, e.Cause, e.Action, e.Fix, e.Message = b.Error, b.State, b.Cause, b.Action, b.Fix, b.Message
	}
	if e.Code == "" {
		e.Code = strings.ToLower(strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "_"))
	}
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
		e.RetryAfter = time.Duration(n) * time.Second
	}
	return e
}

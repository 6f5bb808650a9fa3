// Package sandbox is a scriptable OAuth 2.0 token endpoint on loopback, for
// grantwatch's tests, its demo and its benchmarks. Each refresh token is
// registered with a Behavior (healthy, rotating, revoked, a provider outage,
// …) that can be changed while the server runs, and the answers use the
// wording real providers use, so that the classifier sees what it would see
// in production.
//
// The server is built to be benchmarked against (tens of thousands of
// requests per second): no logging, no per-request goroutines, one
// read-mostly map.
package sandbox

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Behavior is how the token endpoint answers a refresh token.
type Behavior string

// The behaviours. Each answer's wording is a real provider's; see the body
// constants in token.go for the sources.
const (
	// Healthy issues a new access token and keeps the refresh token.
	Healthy Behavior = "healthy"
	// Rotate issues a new refresh token on every use, as strict providers
	// (Ory Hydra, Okta, Auth0 with rotation) do. Presenting a rotated-away
	// token is reuse: the whole chain is revoked and every token of it,
	// the current one included, is answered with Hydra's "already used",
	// unless SetRotationGrace allows the previous token a grace period.
	Rotate Behavior = "rotate"
	// Revoked answers Google's invalid_grant "Token has been expired or
	// revoked.".
	Revoked Behavior = "revoked"
	// Expired answers Microsoft Entra's AADSTS700082 (expired from
	// inactivity).
	Expired Behavior = "expired"
	// PasswordChanged answers Microsoft Entra's AADSTS50173.
	PasswordChanged Behavior = "password_changed"
	// ServerError answers 500 with a JSON server_error body.
	ServerError Behavior = "server_error"
	// BadGateway answers 502 with an nginx HTML page.
	BadGateway Behavior = "bad_gateway"
	// Unavailable answers 503 with an HTML page and Retry-After: 2.
	Unavailable Behavior = "unavailable"
	// RateLimited answers 429 with Okta's rate-limit body and Retry-After: 1.
	RateLimited Behavior = "rate_limited"
	// Slow answers as Healthy after the delay set with SetSlowDelay
	// (default 2s), or not at all if the client gives up first.
	Slow Behavior = "slow"
	// Hang never answers: the request is held until the client gives up or
	// the server is closed.
	Hang Behavior = "hang"
	// FormError answers 400 invalid_grant form-encoded, as older providers
	// do.
	FormError Behavior = "form_error"
	// Error200 answers HTTP 200 carrying GitHub's bad_refresh_token error.
	Error200 Behavior = "error_200"
	// InteractionRequired answers Microsoft Entra's AADSTS50076 (MFA
	// required).
	InteractionRequired Behavior = "interaction_required"
	// ClockWindow answers Google's invalid_grant time-window wording ("in a
	// reasonable timeframe"). By default it always does; after
	// SetClockWindow(d) with d > 0 it does only while the date skew exceeds
	// ±d and answers as Healthy otherwise, so a clock test can "fix the
	// clock" with SetDateSkew(0).
	ClockWindow Behavior = "clock_window"
	// Empty answers HTTP 200 with an empty body.
	Empty Behavior = "empty"
	// Unreadable answers HTTP 400 with Reddit's {"message":"Bad
	// Request","error":400}: a client error whose words no rule reads as a
	// verdict (probes.Result.Unreadable).
	Unreadable Behavior = "unreadable"
)

// Behaviors lists every behaviour.
func Behaviors() []Behavior { return append([]Behavior(nil), allBehaviors[:]...) }

var allBehaviors = [...]Behavior{Healthy, Rotate, Revoked, Expired, PasswordChanged,
	ServerError, BadGateway, Unavailable, RateLimited, Slow, Hang, FormError,
	Error200, InteractionRequired, ClockWindow, Empty, Unreadable}

// behaviorIndex maps a behaviour to its slot in the answer counters.
var behaviorIndex = func() map[Behavior]int {
	m := make(map[Behavior]int, len(allBehaviors))
	for i, b := range allBehaviors {
		m[b] = i
	}
	return m
}()

// Valid reports whether b is one of the behaviours.
func (b Behavior) Valid() bool {
	_, ok := behaviorIndex[b]
	return ok
}

// Paths served under URL().
const (
	TokenPath     = "/token"
	AuthorizePath = "/authorize"
)

// DefaultSlowDelay is how long Slow waits before answering, unless
// SetSlowDelay says otherwise.
const DefaultSlowDelay = 2 * time.Second

// Server is the sandbox token endpoint. All its methods are safe for
// concurrent use, also while requests are being served.
type Server struct {
	srv *http.Server
	url string // "" when not listening (New)

	done      chan struct{} // closed by Close: releases Hang and Slow
	closeOnce sync.Once

	mu     sync.RWMutex
	tokens map[string]*chain // every token ever registered or issued

	// The authorization-code side (authorize.go), apart from the refresh
	// path's map and lock, which are benchmarked.
	authOnce sync.Once
	authSt   *authState

	clientID, clientSecret atomic.Pointer[string] // nil: any client accepted
	override               atomic.Pointer[Behavior]
	slowDelay              atomic.Int64 // time.Duration
	dateSkew               atomic.Int64 // time.Duration
	clockWindow            atomic.Int64 // time.Duration
	dateCache              atomic.Pointer[dateHeader]
	accessSeq              atomic.Uint64
	accessLifetime         atomic.Int64 // time.Duration; 0: the default (access.go)
	macOnce                sync.Once
	macPool                sync.Pool // hash.Hash: HMAC-SHA256 under this server's key

	requests, concurrent, maxConcurrent atomic.Int64
	reused, unknown, badClient          atomic.Int64
	rotationGrace, graceReused          atomic.Int64 // grace.go
	answers                             [len(allBehaviors)]atomic.Int64
}

// chain is the state shared by one registered token and, for Rotate, all
// the tokens issued from it. Its fields are guarded by Server.mu.
type chain struct {
	behavior Behavior
	current  string // the token that is valid now (Rotate)
	revoked  bool   // reuse was detected (Rotate)
	// previous is the token last exchanged for a new one, at rotatedAt:
	// within the rotation grace it may be exchanged again (grace.go).
	previous  string
	rotatedAt time.Time
	// exchanges counts the chain's successful refreshes (access.go).
	exchanges atomic.Int64
}

// New returns a server that does not listen: use its Handler in process.
// Its URL methods return "" until it is started.
func New() *Server {
	s := &Server{
		done:   make(chan struct{}),
		tokens: make(map[string]*chain),
	}
	s.slowDelay.Store(int64(DefaultSlowDelay))
	return s
}

// Start returns a server listening on 127.0.0.1 on a free port. Close it
// when done.
func Start() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen: %w", err)
	}
	s := New()
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10, // a token request's headers are small
	}
	// Serve returns when Close closes the listener; an earlier failure
	// shows to clients as refused connections, which is all a sandbox can do.
	go s.srv.Serve(ln) //nolint:errcheck
	return s, nil
}

// Close stops the server, releasing any held (Hang, Slow) requests. It is
// safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.srv != nil {
			_ = s.srv.Close()
		}
	})
}

// URL is the server's base URL, such as "http://127.0.0.1:38211".
func (s *Server) URL() string { return s.url }

// TokenURL is the token endpoint (RFC 6749 §3.2).
func (s *Server) TokenURL() string { return s.endpoint(TokenPath) }

// AuthURL is the authorization endpoint (RFC 6749 §3.1): it consents at
// once and requires PKCE (S256), for `grantwatch reconnect` and its tests.
func (s *Server) AuthURL() string { return s.endpoint(AuthorizePath) }

func (s *Server) endpoint(path string) string {
	if s.url == "" {
		return ""
	}
	return s.url + path
}

// Add registers refresh token with behaviour b, replacing any earlier
// registration of token (and detaching it from its rotate chain).
func (s *Server) Add(token string, b Behavior) {
	s.mu.Lock()
	s.tokens[token] = &chain{behavior: b, current: token}
	s.mu.Unlock()
}

// Issue registers a new random refresh token with behaviour b and returns it.
func (s *Server) Issue(b Behavior) string {
	t := newRefreshToken()
	s.Add(t, b)
	return t
}

// Set changes the behaviour of token at run time. For a rotate chain it
// changes the whole chain, whichever of its tokens is named. Setting Rotate
// on a token makes it the chain's current token and clears a detected reuse,
// so a test can revive a chain. An unknown token is registered.
func (s *Server) Set(token string, b Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.tokens[token]
	if !ok {
		s.tokens[token] = &chain{behavior: b, current: token}
		return
	}
	c.behavior = b
	if b == Rotate {
		c.current, c.revoked, c.previous = token, false, ""
	}
}

// SetAll makes every request answer with behaviour b, whatever the token
// and before the client is authenticated, as an outage in front of the
// endpoint would. "" restores each token's own behaviour. Rotate and
// Healthy as overrides answer as Healthy.
func (s *Server) SetAll(b Behavior) {
	if b == "" {
		s.override.Store(nil)
		return
	}
	s.override.Store(&b)
}

// SetClient requires these client credentials, sent either in a Basic
// Authorization header or as client_id / client_secret parameters. Wrong or
// missing credentials get 401 invalid_client. SetClient("", "") accepts any
// client again (the default).
func (s *Server) SetClient(id, secret string) {
	if id == "" && secret == "" {
		s.clientID.Store(nil)
		s.clientSecret.Store(nil)
		return
	}
	s.clientSecret.Store(&secret)
	s.clientID.Store(&id)
}

// SetDateSkew offsets the Date header of every answer by d: a positive d
// makes the provider's clock ahead of this host's, as when this host's clock
// is behind.
func (s *Server) SetDateSkew(d time.Duration) { s.dateSkew.Store(int64(d)) }

// SetSlowDelay sets how long Slow waits before answering.
func (s *Server) SetSlowDelay(d time.Duration) { s.slowDelay.Store(int64(d)) }

// SetClockWindow sets the validity window ClockWindow enforces: with d > 0
// it answers the time-window error only while |date skew| > d; with d <= 0
// (the default) it always does.
func (s *Server) SetClockWindow(d time.Duration) { s.clockWindow.Store(int64(d)) }

// Current returns the token of token's chain that is valid now: for a rotate
// chain the most recently issued one, for other tokens token itself. It
// returns "" for an unknown token.
func (s *Server) Current(token string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.tokens[token]
	if !ok {
		return ""
	}
	return c.current
}

// Stats counts what the server has seen since it started.
type Stats struct {
	// Requests counts every request, on every path.
	Requests int64
	// Concurrent is how many requests are being served now; MaxConcurrent
	// the most there ever were at once.
	Concurrent, MaxConcurrent int64
	// Answers counts answers by the behaviour that produced them (the
	// override's during SetAll). Behaviours never used are absent.
	Answers map[Behavior]int64
	// Reused counts rotated-away tokens presented again (each revokes its
	// chain).
	Reused int64
	// GraceReused counts previous tokens exchanged within the rotation
	// grace (SetRotationGrace).
	GraceReused int64
	// Unknown counts unregistered refresh tokens presented.
	Unknown int64
	// BadClient counts requests refused with invalid_client.
	BadClient int64
}

// Stats returns the counters. Each is read atomically, not all at once.
func (s *Server) Stats() Stats {
	st := Stats{
		Requests:      s.requests.Load(),
		Concurrent:    s.concurrent.Load(),
		MaxConcurrent: s.maxConcurrent.Load(),
		Answers:       make(map[Behavior]int64),
		Reused:        s.reused.Load(),
		GraceReused:   s.graceReused.Load(),
		Unknown:       s.unknown.Load(),
		BadClient:     s.badClient.Load(),
	}
	for i, b := range allBehaviors {
		if n := s.answers[i].Load(); n > 0 {
			st.Answers[b] = n
		}
	}
	return st
}

// newRefreshToken returns a fresh unguessable refresh token.
func newRefreshToken() string { return "rt_" + rand.Text() }

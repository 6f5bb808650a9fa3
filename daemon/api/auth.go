package api

// App keys on the TCP listener: which key a request presents, what it may
// do (scopes) and which grants it reaches (a label selector). The routes
// ask Authorize; the keys themselves are the daemon's (Keys).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Scope is one thing an app key may do on the TCP listener. The names are
// part of grantwatch's interface (keys create --scope).
type Scope string

// The scopes.
const (
	// ScopeToken fetches access tokens (GET /v1/grants/{id}/token, POST
	// /v1/grants/{id}/token/refresh).
	ScopeToken Scope = "token"
	// ScopeSetToken stores a new refresh token (PUT
	// /v1/grants/{id}/refresh_token).
	ScopeSetToken Scope = "set-token"
	// ScopeObserve reports an app's own refresh outcome (POST
	// /v1/grants/{id}/observations, observe mode).
	ScopeObserve Scope = "observe"
	// ScopeRead reads a grant (GET /v1/grants/{id}) and the status page.
	ScopeRead Scope = "read"
	// ScopeLink makes reconnect links (POST /v1/grants/{id}/reconnect_link).
	ScopeLink Scope = "link"
)

// Scopes lists every scope.
func Scopes() []Scope { return []Scope{ScopeToken, ScopeSetToken, ScopeObserve, ScopeRead, ScopeLink} }

// Valid reports whether s is one of the scopes.
func (s Scope) Valid() bool { return slices.Contains(Scopes(), s) }

// ParseScopes checks scope names (keys create --scope); an empty list is
// ScopeToken, the common case of an app that fetches tokens.
func ParseScopes(names []string) ([]Scope, error) {
	if len(names) == 0 {
		return []Scope{ScopeToken}, nil
	}
	var out []Scope
	for _, n := range names {
		s := Scope(strings.TrimSpace(n))
		if !s.Valid() {
			return nil, fmt.Errorf("unknown scope %q (scopes: %s)", n, scopeList())
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func scopeList() string {
	var s []string
	for _, sc := range Scopes() {
		s = append(s, string(sc))
	}
	return strings.Join(s, ", ")
}

// Key is an app key as the API knows it: its name, scopes and label
// selector, never the key itself. The JSON names are part of grantwatch's
// interface (keys list --json).
type Key struct {
	Name string `json:"name"`
	// Labels is the selector: the key reaches a grant only when the grant
	// carries each of these labels with the same value. Empty reaches
	// every grant.
	Labels    map[string]string `json:"labels,omitempty"`
	Scopes    []Scope           `json:"scopes"`
	CreatedAt time.Time         `json:"created_at,omitzero"`
}

// Has reports whether k was given scope s.
func (k Key) Has(s Scope) bool { return slices.Contains(k.Scopes, s) }

// Reaches reports whether k's selector matches a grant with these labels.
func (k Key) Reaches(labels map[string]string) bool {
	for name, want := range k.Labels {
		if got, ok := labels[name]; !ok || got != want {
			return false
		}
	}
	return true
}

// Equal reports whether k and o are the same key record.
func (k Key) Equal(o Key) bool {
	return k.Name == o.Name && maps.Equal(k.Labels, o.Labels) && slices.Equal(k.Scopes, o.Scopes) &&
		k.CreatedAt.Equal(o.CreatedAt)
}

// Keys finds the app key a request presents; *daemon.Daemon implements it.
// LookupKey is called on every request and must be fast.
type Keys interface {
	LookupKey(presented string) (Key, bool)
}

// KeyAdmin manages app keys (the control socket's /v1/keys routes).
type KeyAdmin interface {
	// CreateKey makes a new key for k (its name, labels, scopes) and
	// returns it: the only time it exists outside the app.
	CreateKey(k Key) (Key, string, error)
	// ListKeys returns the keys, by name.
	ListKeys() ([]Key, error)
	// RevokeKey deletes the named key; store.ErrNotFound when there is none.
	RevokeKey(name string) error
}

// DeniedError is a request Authorize refused: 401 without a valid key, 403
// for a key without the scope, or a route refused over plain HTTP.
type DeniedError struct {
	Status int
	// Code is the answer's "error": "unauthorized", "forbidden" or
	// "tls_required".
	Code   string
	Reason string
}

func (e *DeniedError) Error() string { return e.Reason }

// authKey carries the request's auth state in its context (TCPHandler).
type authKey struct{}

type authState struct {
	keys Keys
	log  *slog.Logger
}

// withAuth makes Authorize work on the requests h serves.
func withAuth(keys Keys, log *slog.Logger, h http.Handler) http.Handler {
	st := &authState{keys: keys, log: log}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), authKey{}, st)))
	})
}

// Authorize returns the app key r presents (Authorization: Bearer KEY) if
// it has scope, and otherwise a *DeniedError; each refusal is one WARN
// line naming the key's name (never the key) and the route. It serves the
// TCP listener's routes; on a handler without keys (the control socket,
// whose callers the socket's permissions vouch for) it refuses everything.
func Authorize(r *http.Request, scope Scope) (Key, error) {
	st, _ := r.Context().Value(authKey{}).(*authState)
	if st == nil || st.keys == nil {
		return Key{}, &DeniedError{http.StatusUnauthorized, "unauthorized", "this listener takes no app keys"}
	}
	presented, ok := bearer(r)
	if !ok {
		return Key{}, st.deny(r, "", &DeniedError{http.StatusUnauthorized, "unauthorized",
			"no app key: send Authorization: Bearer KEY (grantwatch keys create makes one)"})
	}
	k, ok := st.keys.LookupKey(presented)
	if !ok {
		return Key{}, st.deny(r, "", &DeniedError{http.StatusUnauthorized, "unauthorized",
			"unknown or revoked app key (grantwatch keys list shows the keys there are)"})
	}
	if !k.Has(scope) {
		return k, st.deny(r, k.Name, &DeniedError{http.StatusForbidden, "forbidden",
			fmt.Sprintf("app key %q lacks scope %q", k.Name, scope)})
	}
	return k, nil
}

// DenyGrant logs the one WARN line of a request whose key does not reach
// the grant it names; the route answers 404, as for a grant that does not
// exist.
func DenyGrant(r *http.Request, k Key, id string) {
	if st, _ := r.Context().Value(authKey{}).(*authState); st != nil {
		st.deny(r, k.Name, &DeniedError{http.StatusNotFound, "not_found",
			fmt.Sprintf("grant %q is outside the labels of app key %q", id, k.Name)})
	}
}

func (st *authState) deny(r *http.Request, name string, e *DeniedError) error {
	args := []any{"route", r.Pattern, "remote", r.RemoteAddr, "reason", e.Reason}
	if name != "" {
		args = append(args, "key", name)
	}
	st.log.Warn("request denied", args...)
	return e
}

// bearer returns the credential of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

// RequireSecure refuses a request that came over plain HTTP to an address
// that is not loopback: a token or a refresh token must not cross a
// network in clear. The daemon turns TLS on with daemon.tls_cert_file and
// daemon.tls_key_file.
func RequireSecure(r *http.Request) error {
	if r.TLS != nil {
		return nil
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if host, _, err := net.SplitHostPort(a.String()); err == nil {
			if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
				return nil
			}
		}
	}
	return &DeniedError{http.StatusForbidden, "tls_required",
		"this route is not served over plain HTTP on a network address: set daemon.tls_cert_file and daemon.tls_key_file, or listen on 127.0.0.1"}
}

// asDenied unwraps a *DeniedError.
func asDenied(err error) (*DeniedError, bool) {
	var d *DeniedError
	return d, errors.As(err, &d)
}

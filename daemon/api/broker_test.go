package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

// brokerService is a Service and a Broker whose Token is tokenFn.
type brokerService struct {
	*fakeService
	tokenFn func(TokenRequest) (Token, error)
}

func (b *brokerService) Token(_ context.Context, req TokenRequest) (Token, error) {
	return b.tokenFn(req)
}

// TestTokenRoute: the answer is exactly {"access_token", "token_type",
// "expires_at" (RFC 3339), "scope", "grant_id"}, not cached; min_ttl is
// read as a duration (default 60s) and the refresh route forces.
func TestTokenRoute(t *testing.T) {
	exp := time.Date(2026, 3, 1, 12, 30, 0, 0, time.FixedZone("CET", 3600))
	var got TokenRequest
	svc := &brokerService{fakeService: &fakeService{t: t}, tokenFn: func(req TokenRequest) (Token, error) {
		got = req
		return Token{AccessToken: "ya29.a0\"Af<H>", TokenType: "Bearer", ExpiresAt: exp, Scope: "openid email", GrantID: req.ID}, nil
	}}
	h := Handler(svc, nil)
	for _, tt := range []struct {
		method, path string
		want         TokenRequest
	}{
		{"GET", "/v1/grants/u%2F1/token", TokenRequest{ID: "u/1", MinTTL: DefaultMinTTL}},
		{"GET", "/v1/grants/g/token?min_ttl=5m", TokenRequest{ID: "g", MinTTL: 5 * time.Minute}},
		{"GET", "/v1/grants/g/token?min_ttl=90", TokenRequest{ID: "g", MinTTL: 90 * time.Second}},
		{"GET", "/v1/grants/g/token?x=1&min_ttl=2%6D&min_ttl=9s", TokenRequest{ID: "g", MinTTL: 2 * time.Minute}},
		{"GET", "/v1/grants/g/token?min_ttl=0s", TokenRequest{ID: "g"}},
		{"POST", "/v1/grants/g/token/refresh", TokenRequest{ID: "g", MinTTL: DefaultMinTTL, Force: true}},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != 200 {
			t.Fatalf("%s %s: %d %s", tt.method, tt.path, rec.Code, rec.Body)
		}
		if got.ID != tt.want.ID || got.MinTTL != tt.want.MinTTL || got.Force != tt.want.Force {
			t.Errorf("%s %s: broker asked %+v, want %+v", tt.method, tt.path, got, tt.want)
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("%s: not JSON: %v", rec.Body, err)
		}
		want := map[string]any{"access_token": "ya29.a0\"Af<H>", "token_type": "Bearer", "expires_at": "2026-03-01T11:30:00Z",
			"scope": "openid email", "grant_id": tt.want.ID}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("answer %v, want %v", m, want)
		}
		if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("headers %v", rec.Header())
		}
	}
	for _, bad := range []string{"soon", "-5s", "48h"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/grants/g/token?min_ttl="+bad, nil))
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "min_ttl") {
			t.Errorf("min_ttl=%s: %d %s, want 400 naming min_ttl", bad, rec.Code, rec.Body)
		}
	}
}

// TestTokenErrors: every refusal is {"error", "state", "cause", "action",
// "fix"}: 409 for a grant that needs its user, 503 with Retry-After (whole
// seconds, rounded up) for what passes by itself, 404 for an unknown grant;
// the client gets a *TokenError with the same fields.
func TestTokenErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		err   error
		code  int
		retry string
	}{
		{"reconnect", &TokenError{Code: CodeReconnectRequired, State: store.StateReconnectRequired, Cause: "revoked",
			Action: "reconnect", Fix: "Ask the user to connect again.", Message: "grant g needs its user"}, 409, ""},
		{"outage", &TokenError{Code: CodeProviderOutage, State: store.StateHealthy, Cause: "server_error", Action: "retry",
			RetryAfter: 2100 * time.Millisecond, Message: "provider google is failing"}, 503, "3"},
		{"busy", &TokenError{Code: CodeBusy, State: store.StateHealthy, Message: "a refresh of g is still running"}, 503, "1"},
		{"unknown", fmt.Errorf("grant %q: %w", "g", store.ErrNotFound), 404, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			svc := &brokerService{fakeService: &fakeService{t: t}, tokenFn: func(TokenRequest) (Token, error) { return Token{}, tt.err }}
			rec := httptest.NewRecorder()
			Handler(svc, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/grants/g/token", nil))
			if rec.Code != tt.code || rec.Header().Get("Retry-After") != tt.retry {
				t.Errorf("%d Retry-After %q, want %d %q", rec.Code, rec.Header().Get("Retry-After"), tt.code, tt.retry)
			}
			var m map[string]any
			json.Unmarshal(rec.Body.Bytes(), &m)
			var keys []string
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if want := "action cause error fix message state"; strings.Join(keys, " ") != want {
				t.Errorf("body keys %v, want %s", keys, want)
			}
			_, err := client(t, svc).Token(context.Background(), "g", 0, false)
			var te *TokenError
			switch {
			case tt.code == 404:
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("client: %v, want not found", err)
				}
			case !errors.As(err, &te):
				t.Errorf("client: %T %v, want a *TokenError", err, err)
			default:
				want := *tt.err.(*TokenError)
				want.RetryAfter = te.RetryAfter
				if *te != want || tt.retry != "" && te.RetryAfter < time.Second {
					t.Errorf("client: %+v, want %+v", *te, want)
				}
			}
		})
	}
}

// TestClientToken: the CLI's Client gets the token and asks for min_ttl and
// a forced refresh as given.
func TestClientToken(t *testing.T) {
	var got TokenRequest
	svc := &brokerService{fakeService: &fakeService{t: t}, tokenFn: func(req TokenRequest) (Token, error) {
		got = req
		return Token{AccessToken: secret.Secret("at-1"), TokenType: "Bearer", ExpiresAt: time.Unix(1e9, 0), GrantID: req.ID}, nil
	}}
	c := client(t, svc)
	a, err := c.Token(context.Background(), "g 1", 10*time.Minute, true)
	if err != nil || a.AccessToken != "at-1" || a.GrantID != "g 1" || !a.ExpiresAt.Equal(time.Unix(1e9, 0)) {
		t.Fatalf("%+v %v", a, err)
	}
	if got.MinTTL != 10*time.Minute || !got.Force {
		t.Errorf("asked %+v", got)
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain.token-_~", `q"uote`, `back\\slash`, "ctl\x01\n", "ünï", "<&>", "\xff"} {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil || back != strings.ToValidUTF8(s, "\uFFFD") {
			t.Errorf("%q → %s → %q %v", s, b, back, err)
		}
	}
}

// keyAdminService is a Service with the keys routes.
type keyAdminService struct {
	*fakeService
	keys []Key
}

func (k *keyAdminService) CreateKey(key Key) (Key, string, error) {
	key.CreatedAt = time.Unix(1e9, 0).UTC()
	k.keys = append(k.keys, key)
	return key, "gwk_THE-ONE-COPY", nil
}
func (k *keyAdminService) ListKeys() ([]Key, error) { return k.keys, nil }
func (k *keyAdminService) RevokeKey(name string) error {
	for i, key := range k.keys {
		if key.Name == name {
			k.keys = append(k.keys[:i], k.keys[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("app key %q: %w", name, store.ErrNotFound)
}

// TestKeyRoutes: keys are created (the key in the answer, once), listed
// without it, and revoked through the control socket's Client; an unknown
// scope is refused before anything is made.
func TestKeyRoutes(t *testing.T) {
	svc := &keyAdminService{fakeService: &fakeService{t: t}}
	c := client(t, svc)
	ctx := context.Background()
	ck, err := c.CreateKey(ctx, CreateKeyRequest{Name: "acme", Labels: map[string]string{"tenant": "acme"}, Scopes: []string{"token", "read"}})
	if err != nil || ck.Secret != "gwk_THE-ONE-COPY" || !ck.Key.Equal(Key{Name: "acme", Labels: map[string]string{"tenant": "acme"},
		Scopes: []Scope{ScopeToken, ScopeRead}, CreatedAt: time.Unix(1e9, 0)}) {
		t.Fatalf("CreateKey: %+v %v", ck, err)
	}
	if _, err := c.CreateKey(ctx, CreateKeyRequest{Name: "x", Scopes: []string{"admin"}}); err == nil || len(svc.keys) != 1 {
		t.Errorf("unknown scope: %v, %d keys", err, len(svc.keys))
	}
	rec := httptest.NewRecorder()
	Handler(svc, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/keys", nil))
	if strings.Contains(rec.Body.String(), "THE-ONE-COPY") || !strings.Contains(rec.Body.String(), `"acme"`) {
		t.Errorf("list: %s", rec.Body)
	}
	if err := c.RevokeKey(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeKey(ctx, "acme"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoke twice: %v", err)
	}
	if keys, err := c.ListKeys(ctx); err != nil || len(keys) != 0 {
		t.Errorf("after revoke: %v %v", keys, err)
	}
	if rec := httptest.NewRecorder(); true {
		Handler(&fakeService{t: t}, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/keys", nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("keys routes on a Service without them: %d", rec.Code)
		}
	}
}

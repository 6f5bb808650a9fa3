package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/store"
)

// keySet is a Keys of presented key → record.
type keySet map[string]Key

func (k keySet) LookupKey(p string) (Key, bool) { v, ok := k[p]; return v, ok }

// loopback marks r as arrived on 127.0.0.1, as net/http does for a
// connection to the loopback address.
func loopback(r *http.Request) *http.Request {
	return onAddr(r, "127.0.0.1")
}

func onAddr(r *http.Request, ip string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.ParseIP(ip), Port: 9464}))
}

// tenants is the fixture of the scoping tests: grants of two tenants and
// keys for one of them, for all, and for nothing.
var tenantGrants = map[string]store.Grant{
	"acme-1": {ID: "acme-1", Labels: map[string]string{"tenant": "acme", "env": "prod"}},
	"beta-1": {ID: "beta-1", Labels: map[string]string{"tenant": "beta"}},
}

const (
	acmeKey = "gwk_acme-secret-key-value"
	allKey  = "gwk_ops-secret-key-value"
)

var tenantKeys = keySet{
	acmeKey: {Name: "acme-app", Labels: map[string]string{"tenant": "acme"}, Scopes: []Scope{ScopeToken, ScopeRead, ScopeSetToken}},
	allKey:  {Name: "ops", Scopes: []Scope{ScopeToken, ScopeRead, ScopeSetToken}},
}

// tenantService serves tenantGrants, as a Service and a Broker.
type tenantService struct {
	*fakeService
	tokens int
}

func (s *tenantService) Token(_ context.Context, req TokenRequest) (Token, error) {
	g, ok := tenantGrants[req.ID]
	if !ok || req.Reaches != nil && !req.Reaches(g.Labels) {
		return Token{}, fmt.Errorf("grant %q: %w", req.ID, store.ErrNotFound)
	}
	s.tokens++
	return Token{AccessToken: "at-" + secret.Secret(g.ID), TokenType: "Bearer", GrantID: g.ID}, nil
}

func newTenantService(t *testing.T) *tenantService {
	return &tenantService{fakeService: &fakeService{t: t,
		grant: func(id string) (GrantDetail, error) {
			if g, ok := tenantGrants[id]; ok {
				return GrantDetail{Grant: g}, nil
			}
			return GrantDetail{}, fmt.Errorf("grant %q: %w", id, store.ErrNotFound)
		},
		setToken: func(_ context.Context, id string, _ secret.Secret) (ProbeReport, error) {
			return ProbeReport{Grant: tenantGrants[id]}, nil
		},
	}}
}

// TestKeyScopingAcrossTenants: a key reaches only the grants its labels
// select. Another tenant's grant answers exactly as a grant that does not
// exist (404, the same body), on every route, and the broker is never
// asked for its token; each refusal is one WARN naming the key, not the key.
func TestKeyScopingAcrossTenants(t *testing.T) {
	svc := newTenantService(t)
	var logs *testutil.LogBuffer
	var h http.Handler
	do := func(method, path, key string) *httptest.ResponseRecorder {
		var body *strings.Reader
		if method == "PUT" {
			body = strings.NewReader(`{"refresh_token":"rt-new"}`)
		} else {
			body = strings.NewReader("")
		}
		req := loopback(httptest.NewRequest(method, path, body))
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, route := range []struct{ method, suffix string }{
		{"GET", "/token"}, {"POST", "/token/refresh"}, {"GET", ""}, {"PUT", "/refresh_token"},
	} {
		t.Run(route.method+route.suffix, func(t *testing.T) {
			logs = &testutil.LogBuffer{}
			h = TCPHandler(svc, slog.New(slog.NewJSONHandler(logs, nil)), http.NotFoundHandler(), tenantKeys)
			path := func(id string) string { return "/v1/grants/" + id + route.suffix }
			if rec := do(route.method, path("acme-1"), acmeKey); rec.Code != 200 {
				t.Errorf("own grant: %d %s", rec.Code, rec.Body)
			}
			if rec := do(route.method, path("beta-1"), allKey); rec.Code != 200 {
				t.Errorf("a key without labels: %d %s", rec.Code, rec.Body)
			}
			before := svc.tokens
			other := do(route.method, path("beta-1"), acmeKey)
			absent := do(route.method, path("beta-2"), acmeKey)
			if other.Code != 404 || absent.Code != 404 {
				t.Fatalf("other tenant's grant %d, absent grant %d; want 404 for both", other.Code, absent.Code)
			}
			if o, a := strings.ReplaceAll(other.Body.String(), "beta-1", "ID"), strings.ReplaceAll(absent.Body.String(), "beta-2", "ID"); o != a {
				t.Errorf("the other tenant's grant is told from an absent one:\n%s\n%s", o, a)
			}
			if svc.tokens != before {
				t.Error("a token of another tenant's grant was served")
			}
			var warns []map[string]any
			for _, l := range logs.Lines(t) {
				if l["level"] == "WARN" {
					warns = append(warns, l)
				}
			}
			if len(warns) != 1 || warns[0]["key"] != "acme-app" || warns[0]["msg"] != "request denied" {
				t.Errorf("want one WARN naming the key for the refused request, got %v", warns)
			}
			if strings.Contains(logs.String(), acmeKey) {
				t.Error("the log holds the key")
			}
		})
	}
}

// TestAuthorize: no key and an unknown (or revoked) key are 401 with a
// WWW-Authenticate challenge and the connection closed; a key without the
// route's scope is 403; each is one WARN that never holds the presented key.
func TestAuthorize(t *testing.T) {
	svc := newTenantService(t)
	for _, tt := range []struct {
		name, auth string
		want       int
		code, key  string
	}{
		{"no key", "", 401, "unauthorized", ""},
		{"not bearer", "Basic b3BzOnNlY3JldA==", 401, "unauthorized", ""},
		{"unknown or revoked", "Bearer gwk_revoked-key-value", 401, "unauthorized", ""},
		{"without scope token", "Bearer gwk_reader-only-key", 403, "forbidden", "reader"},
		{"lower-case scheme", "bearer " + allKey, 200, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := &testutil.LogBuffer{}
			h := TCPHandler(svc, slog.New(slog.NewJSONHandler(logs, nil)), http.NotFoundHandler(), keySet{
				"gwk_reader-only-key": {Name: "reader", Scopes: []Scope{ScopeRead}},
				allKey:                tenantKeys[allKey],
			})
			req := loopback(httptest.NewRequest("GET", "/v1/grants/acme-1/token", nil))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want || tt.code != "" && !strings.Contains(rec.Body.String(), `"error": "`+tt.code+`"`) {
				t.Fatalf("%d %s, want %d %s", rec.Code, rec.Body, tt.want, tt.code)
			}
			if tt.want == 401 && (rec.Header().Get("WWW-Authenticate") == "" || rec.Header().Get("Connection") != "close") {
				t.Errorf("401 without a challenge or not closing: %v", rec.Header())
			}
			warns := strings.Count(logs.String(), `"level":"WARN"`)
			if tt.want != 200 && warns != 1 || tt.want == 200 && warns != 0 {
				t.Errorf("%d WARN lines: %s", warns, logs)
			}
			if tt.key != "" && !strings.Contains(logs.String(), `"key":"`+tt.key+`"`) {
				t.Errorf("the WARN does not name the key: %s", logs)
			}
			if strings.Contains(logs.String(), "gwk_") {
				t.Errorf("the log holds a key: %s", logs)
			}
		})
	}
	// The control socket has no keys: Authorize refuses there.
	if _, err := Authorize(httptest.NewRequest("GET", "/", nil), ScopeRead); err == nil {
		t.Error("Authorize without keys let a request through")
	}
}

// TestRequireSecure: the token and set-token routes are refused over
// plain HTTP that arrived on a network address, and served over TLS or
// loopback; reading a grant is not refused.
func TestRequireSecure(t *testing.T) {
	h := TCPHandler(newTenantService(t), nil, http.NotFoundHandler(), tenantKeys)
	for _, tt := range []struct {
		name, method, path string
		addr               string
		tls                bool
		want               int
	}{
		{"token, plain, network", "GET", "/v1/grants/acme-1/token", "192.0.2.10", false, 403},
		{"refresh, plain, network", "POST", "/v1/grants/acme-1/token/refresh", "10.1.2.3", false, 403},
		{"set-token, plain, network", "PUT", "/v1/grants/acme-1/refresh_token", "2001:db8::1", false, 403},
		{"token, TLS, network", "GET", "/v1/grants/acme-1/token", "192.0.2.10", true, 200},
		{"token, plain, loopback", "GET", "/v1/grants/acme-1/token", "127.0.0.1", false, 200},
		{"token, plain, ::1", "GET", "/v1/grants/acme-1/token", "::1", false, 200},
		{"read, plain, network", "GET", "/v1/grants/acme-1", "192.0.2.10", false, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := onAddr(httptest.NewRequest(tt.method, tt.path, strings.NewReader(`{"refresh_token":"rt"}`)), tt.addr)
			if tt.tls {
				req.TLS = &tls.ConnectionState{}
			}
			req.Header.Set("Authorization", "Bearer "+allKey)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tt.want)
			}
			if tt.want == 403 && !strings.Contains(rec.Body.String(), "tls_cert_file") {
				t.Errorf("the refusal does not say how to turn TLS on: %s", rec.Body)
			}
		})
	}
}

func TestParseScopes(t *testing.T) {
	if s, err := ParseScopes(nil); err != nil || len(s) != 1 || s[0] != ScopeToken {
		t.Errorf("no scopes: %v %v, want [token]", s, err)
	}
	if s, err := ParseScopes([]string{"read", "link", "read"}); err != nil || len(s) != 2 {
		t.Errorf("read link read: %v %v", s, err)
	}
	if _, err := ParseScopes([]string{"admin"}); err == nil || !strings.Contains(err.Error(), "set-token") {
		t.Errorf("unknown scope: %v, want an error listing the scopes", err)
	}
	var d *DeniedError
	if !errors.As(RequireSecure(onAddr(httptest.NewRequest("GET", "/", nil), "192.0.2.1")), &d) || d.Code != "tls_required" {
		t.Error("RequireSecure let plain HTTP on a network address through")
	}
}

package web_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/web"
)

// getAs GETs u with HTTP Basic user and key ("" user: no Authorization).
func getAs(t *testing.T, u, user, key string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return read(t, resp)
}

// TestStatusPageNeedsReadKey: never open without an app key of scope read
// and no labels, presented as Basic with the key's name.
func TestStatusPageNeedsReadKey(t *testing.T) {
	e := newEnv(t, envOptions{keys: []api.Key{
		{Name: "oncall", Scopes: []api.Scope{api.ScopeRead}},
		{Name: "app", Scopes: []api.Scope{api.ScopeToken, api.ScopeLink}},
		{Name: "acme", Scopes: []api.Scope{api.ScopeRead}, Labels: map[string]string{"tenant": "acme"}},
	}}, "ann@example.com")
	for _, tt := range []struct {
		name, user, key string
		status          int
	}{
		{"no credentials", "", "", http.StatusUnauthorized},
		{"unknown key", "oncall", "nope-0123456789abcdef", http.StatusUnauthorized},
		{"another key's name", "app", e.keys["oncall"], http.StatusUnauthorized},
		{"no read scope", "app", e.keys["app"], http.StatusForbidden},
		{"limited to labels", "acme", e.keys["acme"], http.StatusForbidden},
		{"read key", "oncall", e.keys["oncall"], http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/", "/grants/g1"} {
				r := getAs(t, e.base+path, tt.user, tt.key)
				if r.StatusCode != tt.status {
					t.Errorf("%s: got %d, want %d", path, r.StatusCode, tt.status)
				}
				if tt.status == http.StatusUnauthorized && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), `Basic realm="grantwatch"`) {
					t.Errorf("%s: WWW-Authenticate %q, want Basic", path, r.Header.Get("WWW-Authenticate"))
				}
				if tt.status != http.StatusOK && strings.Contains(r.body, "g1") {
					t.Errorf("%s: a refused answer shows the fleet: %s", path, r.body)
				}
			}
		})
	}
	// The API and metrics behind the pages are unchanged.
	if r := getAs(t, e.base+"/healthz", "", ""); r.StatusCode != http.StatusOK {
		t.Errorf("/healthz behind the pages: %d", r.StatusCode)
	}
}

// TestStatusPageShowsWhatStatusShows: counts by state and provider, the
// grants that need action with cause, fix and since when, the clock, the
// outbox and dead letters, filters, and each grant's history.
func TestStatusPageShowsWhatStatusShows(t *testing.T) {
	e := newEnv(t, envOptions{}, "ann@example.com", "bob@example.com")
	r := getAs(t, e.base+"/", "oncall", e.keys["oncall"])
	checkHygiene(t, "status page", r)
	for _, want := range []string{
		`<meta http-equiv="refresh" content="30">`,
		"Action needed: 2 to reconnect",
		`<a href="/grants/g1">g1</a>`, "ann@example.com", "<code>invalid_grant</code>", "Fix: ",
		`<a href="/?provider=google">google</a>`, `<a href="/?provider=google&amp;state=reconnect_required">2</a>`,
		`id="clock"`, "waiting to be sent", "0 dead letters",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}

	r = getAs(t, e.base+"/?state=reconnect_required&provider=google", "oncall", e.keys["oncall"])
	if !strings.Contains(r.body, `id="listed"`) || !strings.Contains(r.body, `<a href="/grants/g2">g2</a>`) {
		t.Errorf("filtered page lacks the listed grants:\n%s", r.body)
	}
	r = getAs(t, e.base+"/?state=healthy", "oncall", e.keys["oncall"])
	if strings.Contains(r.body, `id="listed"`) || !strings.Contains(r.body, "None.") {
		t.Errorf("filter healthy lists grants:\n%s", r.body)
	}

	r = getAs(t, e.base+"/grants/g1", "oncall", e.keys["oncall"])
	for _, want := range []string{"ann@example.com", "team", "mail", `id="history"`, "pending → ", "reconnect required", "Token has been expired or revoked."} {
		if !strings.Contains(r.body, want) {
			t.Errorf("grant page lacks %q:\n%s", want, r.body)
		}
	}
	if r := getAs(t, e.base+"/grants/nope", "oncall", e.keys["oncall"]); r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown grant: %d, want 404", r.StatusCode)
	}
}

// TestStatusPageShowsTheForecast: a grant whose refresh token will die
// within forecast.warn_before, whatever probing does, is listed with when
// and why, and its page shows the forecast.
func TestStatusPageShowsTheForecast(t *testing.T) {
	e := newEnv(t, envOptions{provider: `max_lifetime = "72h"`}, "ann@example.com", "bob@example.com")
	if r := press(t, browser(t), e.link("g1", 0)); !strings.Contains(r.body, "Reconnected") {
		t.Fatalf("reconnect: %d %s", r.StatusCode, r.body)
	}
	r := getAs(t, e.base+"/", "oncall", e.keys["oncall"])
	for _, want := range []string{"Expiring soon", "1 grant(s) forecast to die within 7d", `id="expiring"`,
		`<a href="/grants/g1">g1</a>`, "<code>configured</code>"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("status page lacks %q:\n%s", want, r.body)
		}
	}
	if strings.Contains(r.body[strings.Index(r.body, `id="expiring"`):], "/grants/g2") {
		t.Error("the dead grant g2 is listed as expiring")
	}
	if r := getAs(t, e.base+"/grants/g1", "oncall", e.keys["oncall"]); !strings.Contains(r.body, "Forecast") || !strings.Contains(r.body, "<code>configured</code>") {
		t.Errorf("grant page lacks the forecast:\n%s", r.body)
	}
}

// TestStatusPageNeedsTLSOnANetwork: over plain HTTP to an address that is
// not loopback the key would cross the network in clear: refused before it
// is even read.
func TestStatusPageNeedsTLSOnANetwork(t *testing.T) {
	h := web.Handler(web.Options{}, http.NotFoundHandler())
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth("oncall", "a-key-0123456789abcdef")
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 9464}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "TLS required") {
		t.Errorf("plain HTTP on 192.0.2.10: %d %s; want 403 TLS required", rec.Code, rec.Body)
	}
}

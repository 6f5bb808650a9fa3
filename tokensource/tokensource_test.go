package tokensource_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/tokensource"
)

// fakeBroker answers the token route with expires_at = now + life, or
// with the error body of status when it is not 200.
type fakeBroker struct {
	life     atomic.Int64 // time.Duration
	status   int
	requests atomic.Int64
	minTTL   atomic.Value // string
	auth     atomic.Value // string
}

func (f *fakeBroker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.requests.Add(1)
	f.minTTL.Store(r.URL.Query().Get("min_ttl"))
	f.auth.Store(r.Header.Get("Authorization"))
	if r.URL.Path != "/v1/grants/u1 gmail/token" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch f.status {
	case 409:
		w.WriteHeader(409)
		fmt.Fprint(w, `{"error":"reconnect_required","state":"reconnect_required","cause":"password_changed","action":"reconnect","fix":"Ask the user to sign in again.","message":"grant u1 gmail needs its user to reconnect"}`)
	case 503:
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(503)
		fmt.Fprint(w, `{"error":"provider_outage","state":"healthy","cause":"server_error","action":"retry","fix":"","message":"provider google is failing"}`)
	default:
		time.Sleep(20 * time.Millisecond) // concurrent callers arrive while it runs
		fmt.Fprintf(w, `{"access_token":"at-%d","token_type":"Bearer","expires_at":%q,"scope":"openid","grant_id":"u1 gmail"}`,
			n, time.Now().Add(time.Duration(f.life.Load())).UTC().Format(time.RFC3339))
	}
}

func start(t *testing.T, f *fakeBroker) string {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestTokenSourceCaches: a token is reused until it expires less the
// margin, one request serves concurrent callers, and the broker is asked
// for twice the margin with the app's key.
func TestTokenSourceCaches(t *testing.T) {
	f := &fakeBroker{}
	f.life.Store(int64(time.Hour))
	ts := tokensource.New(start(t, f), "u1 gmail", "gwk_app-key")
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if tok, err := ts.Token(); err != nil || tok.AccessToken != "at-1" || tok.Type() != "Bearer" || tok.Extra("scope") != "openid" {
				t.Errorf("%+v %v", tok, err)
			}
		})
	}
	wg.Wait()
	if n := f.requests.Load(); n != 1 {
		t.Errorf("%d requests for 50 concurrent calls with a token held an hour, want 1", n)
	}
	if f.minTTL.Load() != "2m0s" || f.auth.Load() != "Bearer gwk_app-key" {
		t.Errorf("asked min_ttl %v with %v", f.minTTL.Load(), f.auth.Load())
	}

	// A token with less than the margin (1m) left is fetched again.
	f.life.Store(int64(50 * time.Second))
	short := tokensource.Config{URL: start(t, f), GrantID: "u1 gmail", Key: "k"}.TokenSource(t.Context())
	a, _ := short.Token()
	b, _ := short.Token()
	if a == nil || b == nil || a.AccessToken == b.AccessToken {
		t.Errorf("a token within the margin was reused: %v %v", a, b)
	}
}

// TestTokenSourceErrors: a 409 is an *Error carrying cause and action that
// is errors.Is(ErrReconnectRequired); a 503 carries Retry-After and is not.
func TestTokenSourceErrors(t *testing.T) {
	f := &fakeBroker{status: 409}
	_, err := tokensource.New(start(t, f), "u1 gmail", "k").Token()
	var e *tokensource.Error
	if !errors.As(err, &e) || !errors.Is(err, tokensource.ErrReconnectRequired) || e.Status != 409 ||
		e.Cause != "password_changed" || e.Action != "reconnect" || e.Fix == "" || e.State != "reconnect_required" {
		t.Fatalf("409: %#v", err)
	}
	f = &fakeBroker{status: 503}
	_, err = tokensource.New(start(t, f), "u1 gmail", "k").Token()
	if !errors.As(err, &e) || errors.Is(err, tokensource.ErrReconnectRequired) || e.RetryAfter != 7*time.Second || e.Code != "provider_outage" {
		t.Fatalf("503: %#v", err)
	}
	_, err = tokensource.New(start(t, &fakeBroker{}), "other", "k").Token()
	if !errors.As(err, &e) || e.Status != 404 {
		t.Errorf("unknown grant: %v", err)
	}
}

// TestTokenSourceFollowsAStandbysRedirect: a standby of an etcd fleet
// redirects token requests to the leader (307); the source follows with
// the app's key (net/http alone would drop it for another host), to https
// or loopback only: a redirect to plain http elsewhere is not followed,
// and the key is not sent there.
func TestTokenSourceFollowsAStandbysRedirect(t *testing.T) {
	leader := &fakeBroker{}
	leader.life.Store(int64(time.Hour))
	ls := httptest.NewTLSServer(leader)
	t.Cleanup(ls.Close)
	redirectTo := func(base string) string {
		standby := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, base+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		}))
		t.Cleanup(standby.Close)
		// Another host name than the leader's (127.0.0.1).
		return strings.Replace(standby.URL, "127.0.0.1", "localhost", 1)
	}

	ts := tokensource.Config{URL: redirectTo(ls.URL), GrantID: "u1 gmail", Key: "k-secret", HTTPClient: ls.Client()}.TokenSource(t.Context())
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "at-1" || leader.auth.Load() != "Bearer k-secret" {
		t.Errorf("through the standby: token %q, the leader saw Authorization %q", tok.AccessToken, leader.auth.Load())
	}

	// To plain http on another host: refused, nothing sent there (and,
	// should that break, this client dials nothing beyond loopback).
	var dialed atomic.Int64
	loopbackOnly := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" && host != "localhost" {
			dialed.Add(1)
			return nil, fmt.Errorf("test dials loopback only, not %s", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	ts = tokensource.Config{URL: redirectTo("http://192.0.2.1:9464"), GrantID: "u1 gmail", Key: "k-secret", HTTPClient: loopbackOnly}.TokenSource(t.Context())
	var e *tokensource.Error
	if _, err := ts.Token(); !errors.As(err, &e) || e.Status != http.StatusTemporaryRedirect {
		t.Errorf("redirect to plain http elsewhere: %v, want the 307 as a refusal", err)
	}
	if dialed.Load() != 0 {
		t.Error("the key was about to be sent in clear to another host")
	}
}

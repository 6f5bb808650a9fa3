package sandbox

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestAccessTokenLifetime: an access token says its lifetime in expires_in
// and AccessTokenLive answers true until that lifetime has passed, false
// after, and false for anything this server did not issue.
func TestAccessTokenLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New()
		s.Add("rt", Healthy)
		s.SetAccessTokenLifetime(10 * time.Second)
		w := post(t, s.Handler(), "rt", nil)
		var a struct {
			AccessToken string `json:"access_token"`
			ExpiresIn   int    `json:"expires_in"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || w.Code != http.StatusOK {
			t.Fatalf("%d %s: %v", w.Code, w.Body, err)
		}
		if a.ExpiresIn != 10 {
			t.Errorf("expires_in = %d, want 10", a.ExpiresIn)
		}
		exp, ok := s.AccessTokenExpiry(a.AccessToken)
		if want := time.Now().Add(10 * time.Second); !ok || exp.Sub(want).Abs() > time.Millisecond {
			t.Errorf("AccessTokenExpiry = %v %v, want %v", exp, ok, want)
		}
		if !s.AccessTokenLive(a.AccessToken) {
			t.Error("a fresh token is not live")
		}
		time.Sleep(9 * time.Second)
		if !s.AccessTokenLive(a.AccessToken) {
			t.Error("not live 1s before it expires")
		}
		time.Sleep(time.Second)
		if s.AccessTokenLive(a.AccessToken) {
			t.Error("live once its lifetime has passed")
		}

		// Not issued here: another server's, altered (a later expiry), made up.
		other := New()
		other.Add("rt", Healthy)
		var b struct {
			AccessToken string `json:"access_token"`
		}
		json.Unmarshal(post(t, other.Handler(), "rt", nil).Body.Bytes(), &b)
		body, mac, _ := cutLast(a.AccessToken, '.')
		seq, _, _ := cutLast(body, '.')
		for _, tok := range []string{b.AccessToken, seq + ".99999999999999." + mac, "at_1", "", a.AccessToken + "0"} {
			if _, ok := s.AccessTokenExpiry(tok); ok {
				t.Errorf("AccessTokenExpiry(%q) ok, want not issued here", tok)
			}
		}
		s.SetAccessTokenLifetime(0)
		json.Unmarshal(post(t, s.Handler(), "rt", nil).Body.Bytes(), &a)
		if a.ExpiresIn != int(DefaultAccessTokenLifetime/time.Second) {
			t.Errorf("default expires_in = %d", a.ExpiresIn)
		}
	})
}

// TestExchanges counts a chain's successful refreshes: Healthy and Rotate
// answers with a token, not a reuse nor another token's.
func TestExchanges(t *testing.T) {
	s := New()
	h := s.Handler()
	s.Add("h", Healthy)
	s.Add("r0", Rotate)
	s.Add("x", Revoked)
	for range 3 {
		post(t, h, "h", nil)
	}
	tok := "r0"
	for range 2 {
		tok = decode(t, post(t, h, tok, nil)).RefreshToken
	}
	post(t, h, "r0", nil) // reuse: revokes, no exchange
	post(t, h, "x", nil)
	for _, c := range []struct {
		token string
		want  int64
	}{{"h", 3}, {"r0", 2}, {tok, 2}, {"x", 0}, {"unknown", 0}} {
		if got := s.Exchanges(c.token); got != c.want {
			t.Errorf("Exchanges(%s) = %d, want %d", c.token, got, c.want)
		}
	}
	if !strings.HasPrefix(decode(t, post(t, h, "h", nil)).AccessToken, "at_") {
		t.Error("access tokens lost their at_ prefix")
	}
}

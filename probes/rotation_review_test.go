package probes_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/probes"
)

// TestRefreshRotatedTokenOddContentType: a 2xx token answer whose
// Content-Type x/oauth2 misreads (JSON as text/plain, a form body as JSON, as
// PHP's default text/html, or untyped) still carries the rotated refresh
// token, and the probe must hand it on: it is in the body the probe kept.
func TestRefreshRotatedTokenOddContentType(t *testing.T) {
	for _, tc := range []struct{ name, contentType, body string }{
		{"json as text/plain", "text/plain; charset=utf-8", `{"access_token":"at","refresh_token":"rt-new","token_type":"Bearer","expires_in":3600}`},
		{"form as application/json", "application/json", `access_token=at&refresh_token=rt-new&token_type=bearer&expires_in=3600`},
		{"form as text/html", "text/html; charset=UTF-8", `access_token=at&refresh_token=rt-new&token_type=bearer`},
		{"form untyped", "", `access_token=at&refresh_token=rt-new&token_type=bearer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = nil // no sniffing: send exactly tc.contentType
				if tc.contentType != "" {
					w.Header().Set("Content-Type", tc.contentType)
				}
				fmt.Fprint(w, tc.body)
			}))
			defer srv.Close()
			got := refresh(t, newProber(1), probes.Endpoint{TokenURL: srv.URL}, "rt-old", 5*time.Second)
			if !got.OK || got.NewRefreshToken.Reveal() != "rt-new" {
				t.Errorf("got OK %v cause %q (rule %q) lost %v, rotated %v; want OK with NewRefreshToken rt-new",
					got.OK, got.Cause, got.Rule, got.Lost, !got.NewRefreshToken.IsZero())
			}
			if got.Status != http.StatusOK || got.Date.IsZero() {
				t.Errorf("Status %d Date %v, want 200 and a Date", got.Status, got.Date)
			}
		})
	}
}

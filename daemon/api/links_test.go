package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestReconnectLinkRoute(t *testing.T) {
	var gotTTL time.Duration
	var gotBy string
	svc := &fakeService{t: t, link: func(_ context.Context, id string, ttl time.Duration, by string) (ReconnectLink, error) {
		gotTTL, gotBy = ttl, by
		return ReconnectLink{URL: "https://gw.example.com/reconnect/S", GrantID: id, ExpiresAt: time.Unix(0, 0)}, nil
	}}
	l, err := client(t, svc).ReconnectLink(context.Background(), "g/1", 90*time.Minute)
	if err != nil || l.URL != "https://gw.example.com/reconnect/S" || l.GrantID != "g/1" || gotTTL != 90*time.Minute || gotBy != "cli" {
		t.Errorf("ReconnectLink = %+v, %v (ttl %s, by %q); want the link of g/1 for 90m by cli", l, err, gotTTL, gotBy)
	}
	if _, err := client(t, svc).ReconnectLink(context.Background(), "g", 0); err != nil || gotTTL != 0 {
		t.Errorf("no ttl: err %v, ttl %s; want the default (0)", err, gotTTL)
	}
	for body, want := range map[string]string{
		`{"ttl":"soon"}`: `ttl \"soon\"`,
		`{"ttl":"-1h"}`:  `ttl \"-1h\"`,
		`{"tll":"1h"}`:   "unknown field",
		strings.Repeat(" ", maxLinkRequest+1) + "{}": "request body too large",
	} {
		rec := httptest.NewRecorder()
		Handler(svc, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/grants/g/reconnect_link", strings.NewReader(body)))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("body %.20q: got %d %s, want 400 saying %s", body, rec.Code, rec.Body, want)
		}
	}
}

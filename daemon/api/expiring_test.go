package api

import (
	"context"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/store"
)

func (f *fakeService) ExpiringGrants(time.Duration, string, func(store.Grant) error) error {
	return f.missing("ExpiringGrants")
}

// expiringService is fakeService with ExpiringGrants.
type expiringService struct {
	*fakeService
	expiring func(time.Duration, string, func(store.Grant) error) error
}

func (e expiringService) ExpiringGrants(within time.Duration, p string, fn func(store.Grant) error) error {
	return e.expiring(within, p, fn)
}

// TestListExpiring: the expiring query parameter (grants list --expiring)
// lists through ExpiringGrants with the span asked for, filtered by state;
// a span that is not one is refused before anything is listed.
func TestListExpiring(t *testing.T) {
	var gotWithin time.Duration
	var gotProvider string
	svc := expiringService{fakeService: &fakeService{t: t}, expiring: func(within time.Duration, p string, fn func(store.Grant) error) error {
		gotWithin, gotProvider = within, p
		for _, g := range []store.Grant{{ID: "a", State: store.StateHealthy}, {ID: "b", State: store.StateDegraded}, {ID: "c", State: store.StateHealthy}} {
			if err := fn(g); err != nil {
				return err
			}
		}
		return nil
	}}
	c := client(t, svc)
	var ids []string
	err := c.ListExpiring(context.Background(), 7*24*time.Hour, "healthy", "google", func(g store.Grant) error {
		ids = append(ids, g.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if gotWithin != 7*24*time.Hour || gotProvider != "google" || !slices.Equal(ids, []string{"a", "c"}) {
		t.Errorf("ExpiringGrants(%s, %q) listed %v; want 168h, google, [a c]", gotWithin, gotProvider, ids)
	}

	rec := httptest.NewRecorder()
	Handler(svc, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/grants?expiring=soon", nil))
	if rec.Code != 400 {
		t.Errorf("expiring=soon: %d %s, want 400", rec.Code, rec.Body)
	}
}

func TestParseWithin(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "1.5d": 36 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := ParseWithin(in); err != nil || got != want {
			t.Errorf("ParseWithin(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "7", "d", "-1d", "soon", "-3h"} {
		if _, err := ParseWithin(in); err == nil {
			t.Errorf("ParseWithin(%q) accepted", in)
		}
	}
}

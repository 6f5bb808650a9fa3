package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/store"
)

// testLinks: a reconnect link is bound to its grant, works until its
// expiry, once, and dies with its grant.
func testLinks(t *testing.T, s store.Store) {
	importGrants(t, s, newGrants(2, "google"), T0)
	h := store.LinkHash("LINKSECRETABCDEFGHIJKLMNOP")
	l := store.Link{GrantID: "g000", CreatedAt: T0, ExpiresAt: T0.Add(time.Hour), By: "cli"}
	if err := s.CreateLink(h, l, T0); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateLink(h, l, T0); err == nil {
		t.Error("a second link under the same hash was stored")
	}
	if err := s.CreateLink(store.LinkHash("other"), store.Link{GrantID: "nope", CreatedAt: T0, ExpiresAt: T0.Add(time.Hour)}, T0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("link for a missing grant: err %v, want ErrNotFound", err)
	}
	got, err := s.Link(h, T0.Add(time.Minute))
	if err != nil || got.GrantID != "g000" || got.By != "cli" || !got.UsedAt.IsZero() || !got.ExpiresAt.Equal(l.ExpiresAt) {
		t.Fatalf("Link = %+v, %v; want the unused link of g000", got, err)
	}
	if _, err := s.Link(store.LinkHash("LINKSECRETABCDEFGHIJKLMNOQ"), T0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown link: err %v, want ErrNotFound", err)
	}

	// Past its TTL the link is refused, and stays unused.
	if got, err := s.UseLink(h, T0.Add(time.Hour)); !errors.Is(err, store.ErrLinkExpired) || got.GrantID != "g000" {
		t.Errorf("UseLink at expiry = %+v, %v; want the record and ErrLinkExpired", got, err)
	}
	used := T0.Add(30 * time.Minute)
	if got, err := s.UseLink(h, used); err != nil || !got.UsedAt.Equal(used) {
		t.Fatalf("UseLink = %+v, %v; want it used at %s", got, err, used)
	}
	if _, err := s.UseLink(h, used.Add(time.Second)); !errors.Is(err, store.ErrLinkUsed) {
		t.Errorf("second UseLink: err %v, want ErrLinkUsed", err)
	}
	if got, err := s.Link(h, used); !errors.Is(err, store.ErrLinkUsed) || !got.UsedAt.Equal(used) {
		t.Errorf("Link of a used link = %+v, %v; want the record and ErrLinkUsed", got, err)
	}

	// Of callers racing for one link, one gets it.
	race := store.LinkHash("race")
	if err := s.CreateLink(race, store.Link{GrantID: "g001", CreatedAt: T0, ExpiresAt: T0.Add(time.Hour)}, T0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range 8 {
		wg.Go(func() {
			_, err := s.UseLink(race, T0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case !errors.Is(err, store.ErrLinkUsed):
				t.Errorf("UseLink: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d callers used the link, want 1", won)
	}

	// A removed grant's links are dead, also when its id is imported again.
	dies := store.LinkHash("dies")
	if err := s.CreateLink(dies, store.Link{GrantID: "g001", CreatedAt: T0, ExpiresAt: T0.Add(time.Hour)}, T0); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("g001"); err != nil {
		t.Fatal(err)
	}
	importGrants(t, s, newGrants(2, "google"), T0)
	if _, err := s.UseLink(dies, T0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("link of a removed grant: err %v, want ErrNotFound", err)
	}
}

package store

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestLinkIsSingleUseBoundAndExpires(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 2, "google", t0)
	const sec = "LINKSECRETABCDEFGHIJKLMNOP"
	h := LinkHash(sec)
	l := Link{GrantID: "g0000", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), By: "cli"}
	if err := db.CreateLink(h, l, t0); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateLink(h, l, t0); err == nil {
		t.Error("a second link under the same hash was stored")
	}
	if err := db.CreateLink(LinkHash("other"), Link{GrantID: "nope", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("link for a missing grant: err %v, want ErrNotFound", err)
	}

	got, err := db.Link(h, t0.Add(time.Minute))
	if err != nil || got.GrantID != "g0000" || got.By != "cli" || !got.UsedAt.IsZero() {
		t.Fatalf("Link = %+v, %v; want the unused link of g0000", got, err)
	}
	if _, err := db.Link(LinkHash(sec+"x"), t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown link: err %v, want ErrNotFound", err)
	}

	// Past its TTL the link is refused, and stays unused.
	if _, err := db.UseLink(h, t0.Add(time.Hour)); !errors.Is(err, ErrLinkExpired) {
		t.Errorf("UseLink at expiry: err %v, want ErrLinkExpired", err)
	}
	used := t0.Add(30 * time.Minute)
	if got, err := db.UseLink(h, used); err != nil || !got.UsedAt.Equal(used) {
		t.Fatalf("UseLink = %+v, %v; want it used at %s", got, err, used)
	}
	if _, err := db.UseLink(h, used.Add(time.Second)); !errors.Is(err, ErrLinkUsed) {
		t.Errorf("second UseLink: err %v, want ErrLinkUsed", err)
	}
	if got, err := db.Link(h, used); !errors.Is(err, ErrLinkUsed) || got.GrantID != "g0000" {
		t.Errorf("Link of a used link = %+v, %v; want the record and ErrLinkUsed", got, err)
	}

}

func TestLinkDiesWithItsGrant(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 1, "google", t0)
	h := LinkHash("s1")
	if err := db.CreateLink(h, Link{GrantID: "g0000", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}, t0); err != nil {
		t.Fatal(err)
	}
	if err := db.Remove("g0000"); err != nil {
		t.Fatal(err)
	}
	// The same id imported again is another grant: the link is not its.
	importN(t, db, 1, "google", t0)
	if _, err := db.UseLink(h, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("link of a removed grant: err %v, want ErrNotFound", err)
	}
}

func TestUseLinkOnceUnderRace(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 1, "google", t0)
	h := LinkHash("s1")
	if err := db.CreateLink(h, Link{GrantID: "g0000", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}, t0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range 8 {
		wg.Go(func() {
			if _, err := db.UseLink(h, t0); err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			} else if !errors.Is(err, ErrLinkUsed) {
				t.Errorf("UseLink: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d callers used the link, want 1", won)
	}
}

func TestPruneLinks(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 1, "google", t0)
	old, fresh := LinkHash("old"), LinkHash("fresh")
	db.CreateLink(old, Link{GrantID: "g0000", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}, t0)
	db.CreateLink(fresh, Link{GrantID: "g0000", CreatedAt: t0, ExpiresAt: t0.Add(72 * time.Hour)}, t0)

	// Expired, but within LinkKeep: still told apart from unknown.
	if _, err := db.Link(old, t0.Add(2*time.Hour)); !errors.Is(err, ErrLinkExpired) {
		t.Errorf("expired link: err %v, want ErrLinkExpired", err)
	}
	// A link made LinkKeep after the old one's expiry deletes its record.
	later := t0.Add(time.Hour + LinkKeep + time.Second)
	if err := db.CreateLink(LinkHash("new"), Link{GrantID: "g0000", CreatedAt: later, ExpiresAt: later.Add(time.Hour)}, later); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Link(old, later); !errors.Is(err, ErrNotFound) {
		t.Errorf("old link after prune: err %v, want ErrNotFound", err)
	}
	if _, err := db.Link(fresh, t0); err != nil {
		t.Errorf("fresh link was pruned: %v", err)
	}
	if n, err := db.PruneLinks(later.Add(100 * time.Hour)); err != nil || n != 2 {
		t.Errorf("PruneLinks = %d, %v; want the 2 left", n, err)
	}
	db.view(func(b *bkts) error {
		if k, _ := b.tx.Bucket(bucketLinkExp).Cursor().First(); k != nil {
			t.Errorf("linkexp keeps %x", k)
		}
		return nil
	})
}

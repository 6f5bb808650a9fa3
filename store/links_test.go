package store

import (
	"errors"
	"testing"
	"time"
)

// The links' semantics are the contract's (storetest testLinks); this is
// bbolt's pruning of old records.

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

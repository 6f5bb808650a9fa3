package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// setGrant applies fn's changes to grant id, as a probe result would.
func setGrant(t *testing.T, db *DB, id string, fn func(*Grant)) {
	t.Helper()
	err := db.Apply(id, func(cur Grant) (Change, error) {
		fn(&cur)
		return Change{Grant: cur}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func expiringIDs(t *testing.T, db *DB, before time.Time, provider string) []string {
	t.Helper()
	var ids []string
	if err := db.EachExpiring(before, provider, func(g Grant) error { ids = append(ids, g.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestExpiryIndex: the expiry index follows every write of a grant's
// forecast, so that counting and listing the grants about to die reads
// only them, provider by provider and soonest first.
func TestExpiryIndex(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 4, "a", t0) // g0000..g0003
	if _, _, err := db.Import([]NewGrant{
		{ID: "b1", Provider: "b", RefreshToken: secret.Secret("rt-b1")},
		{ID: "ab1", Provider: "ab", RefreshToken: secret.Secret("rt-ab1")},
	}, t0); err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	for id, in := range map[string]time.Duration{"g0000": 3 * day, "g0001": day, "g0002": 30 * day, "b1": 2 * day, "ab1": 5 * day} {
		setGrant(t, db, id, func(g *Grant) { g.ExpiresAt, g.ExpiresBasis = t0.Add(in), BasisAbsolute })
	}
	// g0003 has no forecast.

	counts, err := db.ExpiringCounts(t0.Add(7 * day))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"a": 2, "b": 1, "ab": 1}; !mapsEqual(counts, want) {
		t.Errorf("ExpiringCounts(7d) = %v, want %v", counts, want)
	}
	if got, want := expiringIDs(t, db, t0.Add(7*day), ""), []string{"g0001", "g0000", "ab1", "b1"}; !slices.Equal(got, want) {
		t.Errorf("EachExpiring(7d) = %v, want %v (provider order, soonest first)", got, want)
	}
	if got, want := expiringIDs(t, db, t0.Add(7*day), "a"), []string{"g0001", "g0000"}; !slices.Equal(got, want) {
		t.Errorf("EachExpiring(7d, a) = %v, want %v", got, want)
	}
	if got := expiringIDs(t, db, t0.Add(time.Hour), ""); len(got) != 0 {
		t.Errorf("EachExpiring(1h) = %v, want none", got)
	}

	// A forecast moved out of the window leaves it; a removed grant and a
	// new token chain take theirs away.
	setGrant(t, db, "g0001", func(g *Grant) { g.ExpiresAt = t0.Add(60 * day) })
	if err := db.Remove("b1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetToken("ab1", secret.Secret("rt-new"), t0); err != nil {
		t.Fatal(err)
	}
	if got, want := expiringIDs(t, db, t0.Add(7*day), ""), []string{"g0000"}; !slices.Equal(got, want) {
		t.Errorf("after the moves EachExpiring(7d) = %v, want %v", got, want)
	}
	if g, _ := db.Get("ab1"); !g.ExpiresAt.IsZero() || g.ExpiresBasis != "" || !g.ConsentAt.Equal(t0) {
		t.Errorf("after set-token: forecast %v %q, consent %v; want none and %v", g.ExpiresAt, g.ExpiresBasis, g.ConsentAt, t0)
	}
	if err := db.Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// TestEachExpiringPages: a listing longer than a page is complete and in
// order.
func TestEachExpiringPages(t *testing.T) {
	db := openTest(t, Options{})
	n := eachPage + 10
	importN(t, db, n, "a", t0)
	var want []string
	err := db.Each(func(g Grant) error {
		want = append(want, g.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	items := make([]ApplyItem, len(want))
	for i, id := range want {
		items[i] = ApplyItem{ID: id, Fn: func(cur Grant) (Change, error) {
			cur.ExpiresAt, cur.ExpiresBasis = t0.Add(time.Duration(i)*time.Second), BasisIdle
			return Change{Grant: cur}, nil
		}}
	}
	if _, err := db.ApplyAll(items); err != nil {
		t.Fatal(err)
	}
	if got := expiringIDs(t, db, t0.Add(time.Hour), ""); !slices.Equal(got, want) {
		t.Errorf("EachExpiring listed %d grants, want %d in forecast order", len(got), len(want))
	}
}

// TestUnreadableIndex: a grant enters the unreadable index when its streak
// of unreadable answers reaches UnreadableAfter and leaves it when the
// streak ends.
func TestUnreadableIndex(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 3, "a", t0)
	list := func() []string {
		var ids []string
		if err := db.EachUnreadable("", func(g Grant) error { ids = append(ids, g.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	setGrant(t, db, "g0000", func(g *Grant) { g.Unreadable = UnreadableAfter - 1 })
	if got := list(); len(got) != 0 {
		t.Fatalf("below UnreadableAfter: listed %v", got)
	}
	setGrant(t, db, "g0000", func(g *Grant) { g.Unreadable = UnreadableAfter })
	setGrant(t, db, "g0002", func(g *Grant) { g.Unreadable = UnreadableAfter + 5 })
	if got, want := list(), []string{"g0000", "g0002"}; !slices.Equal(got, want) {
		t.Errorf("EachUnreadable = %v, want %v", got, want)
	}
	if counts, err := db.UnreadableCounts(); err != nil || !mapsEqual(counts, map[string]int{"a": 2}) {
		t.Errorf("UnreadableCounts = %v, %v; want a: 2", counts, err)
	}
	setGrant(t, db, "g0000", func(g *Grant) { g.Unreadable = 0 })
	if err := db.Remove("g0002"); err != nil {
		t.Fatal(err)
	}
	if got := list(); len(got) != 0 {
		t.Errorf("after the streak ended and a removal: listed %v", got)
	}
	if err := db.Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// BenchmarkExpiringCounts measures the status/metrics count at fleet scale:
// 10⁶ forecasts over 4 providers, every one of them within the window (the
// worst case, a fleet imported at once whose absolute lifetime ends), read
// from the expiry index alone.
func BenchmarkExpiringCounts(b *testing.B) {
	db := openTest(b, Options{NoSync: true})
	const n = 1_000_000
	err := db.update(func(bk *bkts) error {
		bk.expiry.FillPercent = 1
		for row := uint64(1); row <= n; row++ {
			prov := [...]string{"google", "microsoft", "okta", "spotify"}[row*4/(n+1)]
			if err := bk.expiry.Put(expiryKey(prov, t0.Add(time.Duration(row)*time.Second), row), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		counts, err := db.ExpiringCounts(t0.Add(365 * 24 * time.Hour))
		if err != nil || counts["google"]+counts["microsoft"]+counts["okta"]+counts["spotify"] != n {
			b.Fatalf("%v %v", counts, err)
		}
	}
}

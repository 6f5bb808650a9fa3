package store

import (
	"slices"
	"testing"
	"time"
)

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
	var got []string
	if err := db.EachExpiring(t0.Add(time.Hour), "", func(g Grant) error { got = append(got, g.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("EachExpiring listed %d grants, want %d in forecast order", len(got), len(want))
	}
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

package store

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDue(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 10, "google", t0)
	// Spread due times: g000i due at t0 + i minutes.
	for i := range 10 {
		id := fmt.Sprintf("g%04d", i)
		db.Apply(id, func(cur Grant) (Change, error) {
			cur.NextDueAt = t0.Add(time.Duration(i) * time.Minute)
			return Change{Grant: cur}, nil
		})
	}
	now := t0.Add(4 * time.Minute)
	if at, ok, _ := db.NextDue(); !ok || !at.Equal(t0) {
		t.Errorf("NextDue = %v, %v; want %v", at, ok, t0)
	}
	ls, err := db.Due(now, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := leaseIDs(ls); got != "g0000 g0001 g0002" {
		t.Errorf("Due(limit 3) = %s", got)
	}
	// A read: the same grants are due again, and nothing moved.
	if ls, _ = db.Due(now, 0, nil); leaseIDs(ls) != "g0000 g0001 g0002 g0003 g0004" || ls[0].Token != "rt-0" {
		t.Errorf("Due again = %s, want every due one", leaseIDs(ls))
	}
	if g, _ := db.Get("g0003"); !g.NextDueAt.Equal(t0.Add(3 * time.Minute)) {
		t.Errorf("NextDueAt moved to %v", g.NextDueAt)
	}
	// take passes over what the caller holds, and the limit counts only
	// what it takes.
	taken := map[uint64]bool{}
	take := func(row uint64) bool {
		if taken[row] {
			return false
		}
		taken[row] = true
		return true
	}
	if ls, _ = db.Due(now, 3, take); leaseIDs(ls) != "g0000 g0001 g0002" {
		t.Errorf("first Due with take = %s", leaseIDs(ls))
	}
	if ls, _ = db.Due(now, 3, take); leaseIDs(ls) != "g0003 g0004" {
		t.Errorf("second Due with take = %s, want the remaining due ones", leaseIDs(ls))
	}
	if ls, _ = db.Due(now, 3, take); len(ls) != 0 {
		t.Errorf("third Due with take = %s, want none", leaseIDs(ls))
	}
	// A stale entry (no grant, or not its grant's due time) is passed over
	// and dropped.
	g5, _ := db.Get("g0005")
	db.update(func(b *bkts) error {
		b.due.Put(dueKey(t0, 999), nil)
		return b.due.Put(dueKey(t0.Add(time.Second), g5.Row), nil)
	})
	if ls, err = db.Due(now, 0, nil); err != nil || leaseIDs(ls) != "g0000 g0001 g0002 g0003 g0004" {
		t.Errorf("Due with stale entries = %s, %v", leaseIDs(ls), err)
	}
	assertIndexesMatchScan(t, db)
}

func leaseIDs(ls []Lease) string {
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.Grant.ID)
	}
	return strings.Join(ids, " ")
}

func TestReschedule(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 6, "google", t0)
	importN2 := []NewGrant{{ID: "m1", Provider: "microsoft", RefreshToken: "x"}}
	db.Import(importN2, t0, replaceAll)
	hold := func(id, cause string) {
		db.Apply(id, func(cur Grant) (Change, error) {
			cur.State, cur.Cause, cur.NextDueAt = StateOnHold, cause, time.Time{}
			return Change{Grant: cur}, nil
		})
	}
	hold("g0000", "clock_skew")
	hold("g0001", "clock_skew")
	hold("g0002", "invalid_client")
	hold("m1", "clock_skew")
	later := t0.Add(time.Hour)
	tests := []struct {
		name            string
		provider, cause string
		want            int
		wantDue         string
	}{
		{"one provider, one cause", "google", "clock_skew", 2, "g0000 g0001"},
		{"any provider, cause", "", "clock_skew", 3, "g0000 g0001 m1"},
		{"any cause", "google", "", 3, "g0000 g0001 g0002"},
	}
	defer func(n int) { rescheduleChunk = n }(rescheduleChunk)
	rescheduleChunk = 2 // several transactions per call
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, id := range []string{"g0000", "g0001", "m1"} {
				hold(id, "clock_skew")
			}
			hold("g0002", "invalid_client")
			// Park the pending ones.
			db.EachInState(StatePending, "", func(g Grant) error {
				return db.Apply(g.ID, func(cur Grant) (Change, error) {
					cur.NextDueAt = t0.Add(2 * time.Hour)
					return Change{Grant: cur}, nil
				})
			})
			n, err := db.Reschedule(later, StateOnHold, tt.provider, tt.cause)
			if err != nil || n != tt.want {
				t.Fatalf("Reschedule = %d, %v; want %d", n, err, tt.want)
			}
			ls, _ := db.Due(later, 0, nil)
			if got := leaseIDs(ls); got != tt.wantDue {
				t.Errorf("due = %s, want %s", got, tt.wantDue)
			}
			assertIndexesMatchScan(t, db)
		})
	}
}

// TestDueTimeBeyondNanosRange: a NextDueAt the int64 nanosecond range cannot
// hold (after 2262) is neither due now nor read back as another time, and a
// non-zero time at the Unix epoch is not read back as "never".
func TestDueTimeBeyondNanosRange(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 2, "google", t0)
	far := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"g0000", "g0001"} {
		if err := db.Apply(id, func(cur Grant) (Change, error) {
			cur.State, cur.NextDueAt = StateHealthy, far
			return Change{Grant: cur}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if g, _ := db.Get("g0000"); !g.NextDueAt.Equal(far) {
		t.Errorf("NextDueAt read back as %v, want %v", g.NextDueAt, far)
	}
	if ls, err := db.Due(t0.Add(time.Hour), 0, nil); err != nil || len(ls) != 0 {
		t.Errorf("Due = %s, %v; grants due in %d are not due now", leaseIDs(ls), err, far.Year())
	}
	assertIndexesMatchScan(t, db)
}

package store

import (
	"fmt"
	"testing"
	"time"
)

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
	for _, ts := range []time.Time{far, time.Unix(0, 0).UTC(), time.Date(1960, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(9999, 12, 31, 0, 0, 0, 5, time.UTC)} {
		g := Grant{ID: "x", Provider: "p", State: StateHealthy, CreatedAt: ts, NextDueAt: ts}
		var got Grant
		if err := decodeGrant(encodeGrant(&g), &got); err != nil || !got.NextDueAt.Equal(ts) || !got.CreatedAt.Equal(ts) {
			t.Errorf("codec: %v round-trips as %v, %v", ts, got.NextDueAt, err)
		}
	}
}

// TestApplyAllBadChangeIsItemError: a Change that cannot be written (invalid
// state, empty provider, empty receiver, empty meta key) is its item's error,
// writes nothing of it and does not cost the other items their results (a
// rotated token among them).
func TestApplyAllBadChangeIsItemError(t *testing.T) {
	bad := map[string]func(cur Grant) Change{
		"state":    func(cur Grant) Change { cur.State = "bogus"; return Change{Grant: cur} },
		"provider": func(cur Grant) Change { cur.Provider = ""; return Change{Grant: cur} },
		"receiver": func(cur Grant) Change {
			cur.State, cur.NextDueAt = StateHealthy, t0.Add(time.Hour)
			return Change{Grant: cur, NewToken: "rot-b", History: &HistoryEntry{To: StateHealthy}, Outbox: []OutboxEntry{{Payload: []byte("{}")}}}
		},
		"meta": func(cur Grant) Change {
			cur.State = StateHealthy
			return Change{Grant: cur, Meta: map[string][]byte{"": []byte("x")}}
		},
	}
	for name, fn := range bad {
		t.Run(name, func(t *testing.T) {
			db := openTest(t, Options{})
			if _, _, err := db.Import([]NewGrant{{ID: "a", Provider: "p", RefreshToken: "tok-a"}, {ID: "b", Provider: "p", RefreshToken: "tok-b"}}, t0); err != nil {
				t.Fatal(err)
			}
			errs, err := db.ApplyAll([]ApplyItem{
				{ID: "a", Fn: func(cur Grant) (Change, error) {
					cur.State, cur.NextDueAt = StateHealthy, t0.Add(time.Hour)
					return Change{Grant: cur, NewToken: "rot-a"}, nil
				}},
				{ID: "b", Fn: func(cur Grant) (Change, error) { return fn(cur), nil }},
			})
			if err != nil || errs[0] != nil || errs[1] == nil {
				t.Fatalf("ApplyAll = %v, %v; want item b's error only", errs, err)
			}
			if l, err := db.GetLease("a"); err != nil || l.Token.Reveal() != "rot-a" || l.Grant.State != StateHealthy {
				t.Errorf("a lost its result: %v", err)
			}
			if l, err := db.GetLease("b"); err != nil || l.Token.Reveal() != "tok-b" || l.Grant.State != StatePending || !l.Grant.NextDueAt.Equal(t0) {
				t.Errorf("b half-written: %+v, %v", l.Grant, err)
			}
			if h, _ := db.History("b"); len(h) != 1 {
				t.Errorf("b has %d history entries, want 1", len(h))
			}
			assertIndexesMatchScan(t, db)
		})
	}
}

// TestRemoveThenReimportIsNewTokenGen: a probe leased before its grant was
// removed and re-imported under the same id must not pass the daemon's
// TokenGen check against the new grant (its result, a rotated token of the
// old chain, would overwrite the new token).
func TestRemoveThenReimportIsNewTokenGen(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 2, "google", t0)
	if _, err := db.SetToken("g0001", "again", t0); err != nil {
		t.Fatal(err)
	}
	ls, err := db.Due(t0, 0, nil)
	if err != nil || len(ls) != 2 {
		t.Fatal(ls, err)
	}
	for _, l := range ls {
		if err := db.Remove(l.Grant.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.Import([]NewGrant{{ID: l.Grant.ID, Provider: "google", RefreshToken: "fresh"}}, t0); err != nil {
			t.Fatal(err)
		}
		g, _ := db.Get(l.Grant.ID)
		if g.TokenGen == l.Grant.TokenGen {
			t.Errorf("%s re-imported with TokenGen %d, the removed grant's lease has the same", g.ID, g.TokenGen)
		}
	}
	db.Close()
}

// TestApplyAllSameGrantInOrder: results for one grant are applied in the
// order given, as consecutive Applies would (the later rotated token wins).
func TestApplyAllSameGrantInOrder(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 50, "google", t0)
	var items []ApplyItem
	for i := range 200 {
		id := fmt.Sprintf("g%04d", i%50)
		items = append(items, ApplyItem{ID: id, Fn: func(cur Grant) (Change, error) {
			cur.Failures = i
			return Change{Grant: cur, NewToken: "tok"}, nil
		}})
	}
	if _, err := db.ApplyAll(items); err != nil {
		t.Fatal(err)
	}
	for j := range 50 {
		g, _ := db.Get(fmt.Sprintf("g%04d", j))
		if g.Failures != 150+j {
			t.Errorf("%s: the result of item %d was applied last, want %d", g.ID, g.Failures, 150+j)
		}
	}
}

package store

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestImport(t *testing.T) {
	db := openTest(t, Options{})
	created, replaced, err := db.Import([]NewGrant{
		{ID: "a", Provider: "google", Subject: "a@x", Labels: map[string]string{"team": "x"}, RefreshToken: "t1"},
		{ID: "b", Provider: "google", RefreshToken: "t2"},
	}, t0)
	if err != nil || created != 2 || replaced != 0 {
		t.Fatalf("Import = %d, %d, %v; want 2, 0", created, replaced, err)
	}
	// b fails and is degraded; re-importing resets it.
	db.Apply("b", func(cur Grant) (Change, error) {
		cur.State, cur.Failures, cur.Cause, cur.NextDueAt = StateDegraded, 4, "server_error", t0.Add(time.Hour)
		return Change{Grant: cur}, nil
	})
	t1 := t0.Add(time.Minute)
	created, replaced, err = db.Import([]NewGrant{{ID: "b", Provider: "google", Subject: "b@x", RefreshToken: "t3"}}, t1)
	if err != nil || created != 0 || replaced != 1 {
		t.Fatalf("re-Import = %d, %d, %v; want 0, 1", created, replaced, err)
	}
	g, _ := db.Get("b")
	if g.State != StatePending || g.Failures != 0 || g.Cause != "" || g.TokenGen != 2 || !g.NextDueAt.Equal(t1) || g.Subject != "b@x" || !g.CreatedAt.Equal(t0) {
		t.Errorf("re-imported grant = %+v", g)
	}
	h, _ := db.History("b")
	if len(h) != 2 || h[1].From != StateDegraded || h[1].Note != "token imported" {
		t.Errorf("history = %+v", h)
	}
	if ls, _ := db.Due(t1, 0, nil); len(ls) != 2 || ls[1].Token != "t3" {
		t.Errorf("leases = %+v, want a and b with token t3", ls)
	}
	assertCountsMatchScan(t, db)

	for _, bad := range []NewGrant{
		{ID: "", Provider: "p", RefreshToken: "t"},
		{ID: "a\x00b", Provider: "p", RefreshToken: "t"},
		{ID: "c", Provider: "", RefreshToken: "t"},
		{ID: "c", Provider: "p"},
	} {
		if _, _, err := db.Import([]NewGrant{{ID: "ok", Provider: "p", RefreshToken: "t"}, bad}, t0); err == nil {
			t.Errorf("Import(%q, %q): nil error", bad.ID, bad.Provider)
		}
	}
	if _, err := db.Get("ok"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed Import stored part of its input: Get err = %v", err)
	}
}

func TestEachInState(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 3000, "google", t0)
	db.Import([]NewGrant{{ID: "m1", Provider: "microsoft", RefreshToken: "x"}}, t0)
	for _, id := range []string{"g0005", "g2999", "m1"} {
		db.Apply(id, func(cur Grant) (Change, error) { cur.State = StateDegraded; return Change{Grant: cur}, nil })
	}
	var got []string
	db.EachInState(StateDegraded, "", func(g Grant) error { got = append(got, g.ID); return nil })
	if strings.Join(got, " ") != "g0005 g2999 m1" {
		t.Errorf("degraded = %v", got)
	}
	got = nil
	db.EachInState(StateDegraded, "microsoft", func(g Grant) error { got = append(got, g.ID); return nil })
	if strings.Join(got, " ") != "m1" {
		t.Errorf("degraded microsoft = %v", got)
	}
	n := 0
	db.EachInState(StatePending, "google", func(g Grant) error { n++; return nil })
	if n != 2998 {
		t.Errorf("pending google = %d, want 2998", n)
	}
	n = 0
	errStop := errors.New("stop")
	if err := db.Each(func(g Grant) error {
		n++
		if n == 1500 {
			return errStop
		}
		return nil
	}); !errors.Is(err, errStop) || n != 1500 {
		t.Errorf("Each stopped at %d with %v, want 1500, stop", n, err)
	}
}

func TestRemoveCleansEveryBucket(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 3, "google", t0)
	db.Apply("g0001", func(cur Grant) (Change, error) {
		cur.State = StateDegraded
		return Change{Grant: cur, History: &HistoryEntry{To: StateDegraded}}, nil
	})
	if err := db.Remove("g0001"); err != nil {
		t.Fatal(err)
	}
	if err := db.Remove("g0001"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove err = %v, want ErrNotFound", err)
	}
	// assertIndexesMatchScan below finds leftovers of the removed row.
	db.view(func(b *bkts) error {
		for _, name := range allBuckets {
			b.tx.Bucket(name).ForEach(func(k, v []byte) error {
				if bytes.Contains(k, []byte("g0001")) || bytes.Contains(v, []byte("g0001")) {
					t.Errorf("bucket %s still has %q", name, k)
				}
				return nil
			})
		}
		return nil
	})
	if c, _ := db.Counts(); c["google"][StatePending] != 2 || len(c["google"]) != 1 {
		t.Errorf("counts = %v, want 2 pending", c)
	}
	if h, _ := db.History("g0002"); len(h) != 1 {
		t.Errorf("neighbour's history = %v", h)
	}
	assertIndexesMatchScan(t, db)
}

func TestSetToken(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 1, "google", t0)
	db.Apply("g0000", func(cur Grant) (Change, error) {
		cur.State, cur.Cause, cur.Error, cur.Failures, cur.NextDueAt = StateReconnectRequired, "revoked", "invalid_grant", 1, time.Time{}
		return Change{Grant: cur}, nil
	})
	t1 := t0.Add(time.Hour)
	g, err := db.SetToken("g0000", "fresh", t1)
	if err != nil {
		t.Fatal(err)
	}
	if g.State != StatePending || g.Cause != "" || g.Error != "" || g.Failures != 0 || g.TokenGen != 2 || !g.NextDueAt.Equal(t1) || !g.StateChangedAt.Equal(t1) {
		t.Errorf("SetToken = %+v", g)
	}
	if ls, _ := db.Due(t1, 0, nil); len(ls) != 1 || ls[0].Token != "fresh" {
		t.Errorf("lease = %+v", ls)
	}
	if _, err := db.SetToken("nope", "x", t1); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetToken(missing) err = %v", err)
	}
	assertIndexesMatchScan(t, db)
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

// TestImportRefusesReservedID: the id the key canary uses cannot be imported;
// the error names it and the line, and nothing of the call is stored.
func TestImportRefusesReservedID(t *testing.T) {
	db := openTest(t, Options{})
	_, _, err := db.Import([]NewGrant{
		{ID: "ok", Provider: "p", RefreshToken: "t"},
		{ID: "grantwatch-canary", Provider: "p", RefreshToken: "t"},
	}, t0)
	if err == nil || !strings.Contains(err.Error(), `"grantwatch-canary"`) || !strings.Contains(err.Error(), "grant 2") || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("Import(grantwatch-canary) = %v, want an error naming the reserved id and its position", err)
	}
	if _, err := db.Get("ok"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the call's other grant was stored: Get err = %v", err)
	}
}

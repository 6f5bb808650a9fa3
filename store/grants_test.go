package store

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// replaceAll lets an import replace any stored token, rotated or not: what
// Import did before ImportOptions, for the tests that import over grants.
var replaceAll = ImportOptions{Replace: true, Force: true}

func TestImport(t *testing.T) {
	db := openTest(t, Options{})
	created, replaced, err := db.Import([]NewGrant{
		{ID: "a", Provider: "google", Subject: "a@x", Labels: map[string]string{"team": "x"}, RefreshToken: "t1"},
		{ID: "b", Provider: "google", RefreshToken: "t2"},
	}, t0, replaceAll)

	if err != nil || created != 2 || replaced != 0 {
		t.Fatalf("Import = %d, %d, %v; want 2, 0", created, replaced, err)
	}
	// b fails and is degraded; re-importing resets it.
	db.Apply("b", func(cur Grant) (Change, error) {
		cur.State, cur.Failures, cur.Cause, cur.NextDueAt = StateDegraded, 4, "server_error", t0.Add(time.Hour)
		return Change{Grant: cur}, nil
	})
	t1 := t0.Add(time.Minute)
	created, replaced, err = db.Import([]NewGrant{{ID: "b", Provider: "google", Subject: "b@x", RefreshToken: "t3"}}, t1, replaceAll)
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
		if _, _, err := db.Import([]NewGrant{{ID: "ok", Provider: "p", RefreshToken: "t"}, bad}, t0, replaceAll); err == nil {
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
	db.Import([]NewGrant{{ID: "m1", Provider: "microsoft", RefreshToken: "x"}}, t0, replaceAll)
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
		if _, _, err := db.Import([]NewGrant{{ID: l.Grant.ID, Provider: "google", RefreshToken: "fresh"}}, t0, replaceAll); err != nil {
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
	}, t0, replaceAll)

	if err == nil || !strings.Contains(err.Error(), `"grantwatch-canary"`) || !strings.Contains(err.Error(), "grant 2") || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("Import(grantwatch-canary) = %v, want an error naming the reserved id and its position", err)
	}
	if _, err := db.Get("ok"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the call's other grant was stored: Get err = %v", err)
	}
}

// writeTxID is the id of the last committed write transaction: the
// difference across a call is how many write transactions it committed.
func writeTxID(t *testing.T, db *DB) int {
	t.Helper()
	tx, err := db.bolt.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	return tx.ID()
}

// fleetForRemoval imports 12 google and 6 microsoft grants and makes every
// third google one degraded and every second microsoft one
// reconnect_required, each with history.
func fleetForRemoval(t *testing.T, db *DB) {
	t.Helper()
	importN(t, db, 12, "google", t0)
	var ms []NewGrant
	for i := range 6 {
		ms = append(ms, NewGrant{ID: fmt.Sprintf("m%d", i), Provider: "microsoft", RefreshToken: "t"})
	}
	if _, _, err := db.Import(ms, t0, replaceAll); err != nil {
		t.Fatal(err)
	}
	set := func(id string, st State) {
		if err := db.Apply(id, func(cur Grant) (Change, error) {
			cur.State = st
			return Change{Grant: cur, History: &HistoryEntry{At: t0, From: StatePending, To: st}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 12; i += 3 {
		set(fmt.Sprintf("g%04d", i), StateDegraded)
	}
	for i := 0; i < 6; i += 2 {
		set(fmt.Sprintf("m%d", i), StateReconnectRequired)
	}
}

func grantIDs(t *testing.T, db *DB) string {
	t.Helper()
	var ids []string
	if err := db.Each(func(g Grant) error { ids = append(ids, g.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	return strings.Join(ids, " ")
}

func TestRemoveIDs(t *testing.T) {
	defer func(n int) { removeChunk = n }(removeChunk)
	removeChunk = 4
	db := openTest(t, Options{})
	fleetForRemoval(t, db)
	g3, _ := db.Get("g0003")
	before := writeTxID(t, db)
	// Nine ids, one of them missing and one twice: seven grants.
	n, err := db.RemoveIDs([]string{"g0000", "g0001", "g0002", "g0003", "nope", "m0", "m1", "g0001", "m5"})
	if err != nil || n != 7 {
		t.Fatalf("RemoveIDs = %d, %v; want 7", n, err)
	}
	if txs := writeTxID(t, db) - before; txs != 3 {
		t.Errorf("RemoveIDs of 9 ids in chunks of 4 committed %d write transactions, want 3", txs)
	}
	if got, want := grantIDs(t, db), "g0004 g0005 g0006 g0007 g0008 g0009 g0010 g0011 m2 m3 m4"; got != want {
		t.Errorf("left %s, want %s", got, want)
	}
	if h, _ := db.History("g0004"); len(h) != 1 {
		t.Errorf("a kept grant's history has %d entries, want 1", len(h))
	}
	assertIndexesMatchScan(t, db)
	// Removed grants raise removedGen as Remove does.
	if _, _, err := db.Import([]NewGrant{{ID: "g0003", Provider: "google", RefreshToken: "again"}}, t0, replaceAll); err != nil {
		t.Fatal(err)
	}
	if g, _ := db.Get("g0003"); g.TokenGen <= g3.TokenGen {
		t.Errorf("re-imported grant has TokenGen %d, the removed one had %d", g.TokenGen, g3.TokenGen)
	}
}

func TestRemoveWhere(t *testing.T) {
	defer func(n int) { removeChunk = n }(removeChunk)
	removeChunk = 3
	tests := []struct {
		name     string
		state    State
		provider string
		want     int
		wantLeft string
		wantTxs  int // write transactions committed
	}{
		// Eight pending google grants: chunks of 3, 3, 2.
		{"state and provider", StatePending, "google", 8, "g0000 g0003 g0006 g0009 m0 m1 m2 m3 m4 m5", 3},
		// Four degraded google grants: 3, then 1.
		{"state", StateDegraded, "", 4, "g0001 g0002 g0004 g0005 g0007 g0008 g0010 g0011 m0 m1 m2 m3 m4 m5", 2},
		// Three pending and three reconnect_required ones: one
		// transaction each; states with none commit nothing.
		{"provider", "", "microsoft", 6, "g0000 g0001 g0002 g0003 g0004 g0005 g0006 g0007 g0008 g0009 g0010 g0011", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openTest(t, Options{})
			fleetForRemoval(t, db)
			before := writeTxID(t, db)
			n, err := db.RemoveWhere(tt.state, tt.provider)
			if err != nil || n != tt.want {
				t.Fatalf("RemoveWhere(%q, %q) = %d, %v; want %d", tt.state, tt.provider, n, err, tt.want)
			}
			if txs := writeTxID(t, db) - before; txs != tt.wantTxs {
				t.Errorf("committed %d write transactions, want %d", txs, tt.wantTxs)
			}
			if got := grantIDs(t, db); got != tt.wantLeft {
				t.Errorf("left %s, want %s", got, tt.wantLeft)
			}
			assertIndexesMatchScan(t, db)
		})
	}

	t.Run("stale index entry", func(t *testing.T) {
		// An entry that says g0001 is degraded while it is pending is
		// dropped, and g0001 stays.
		db := openTest(t, Options{})
		fleetForRemoval(t, db)
		g1, _ := db.Get("g0001")
		db.update(func(b *bkts) error { return b.byState.Put(stateKey(StateDegraded, "google", g1.Row), nil) })
		if n, err := db.RemoveWhere(StateDegraded, "google"); err != nil || n != 4 {
			t.Fatalf("RemoveWhere = %d, %v; want 4", n, err)
		}
		if _, err := db.Get("g0001"); err != nil {
			t.Errorf("g0001 (pending) was removed by a stale degraded entry: %v", err)
		}
		assertIndexesMatchScan(t, db)
	})

	t.Run("bad filters", func(t *testing.T) {
		db := openTest(t, Options{})
		fleetForRemoval(t, db)
		for _, f := range []struct {
			state    State
			provider string
		}{{"", ""}, {"bogus", ""}} {
			if n, err := db.RemoveWhere(f.state, f.provider); err == nil || n != 0 {
				t.Errorf("RemoveWhere(%q, %q) = %d, %v; want an error", f.state, f.provider, n, err)
			}
		}
		if got := len(strings.Fields(grantIDs(t, db))); got != 18 {
			t.Errorf("%d grants left, want all 18", got)
		}
	})
}

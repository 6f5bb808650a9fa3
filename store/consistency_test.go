package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// assertCountsMatchScan compares Counts with a count over every grant.
func assertCountsMatchScan(t *testing.T, db *DB) {
	t.Helper()
	want := map[string]map[State]int{}
	if err := db.Each(func(g Grant) error {
		if want[g.Provider] == nil {
			want[g.Provider] = map[State]int{}
		}
		want[g.Provider][g.State]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := db.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Counts = %v, full scan = %v", got, want)
	}
}

// assertIndexesMatchScan checks every derived bucket against the grants: one
// due entry per scheduled grant at its NextDueAt, one state index entry per
// grant, a token per grant, nothing for grants that do not exist, and the
// counters; and that Check, which verifies the same (and more) its own way,
// finds nothing.
func assertIndexesMatchScan(t *testing.T, db *DB) {
	t.Helper()
	if err := db.Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
	assertCountsMatchScan(t, db)
	db.view(func(b *bkts) error {
		wantDue, wantState, rows := map[string]bool{}, map[string]bool{}, map[string]bool{}
		b.ids.ForEach(func(id, v []byte) error {
			row := rowOf(v)
			g, ok, err := b.getRow(row)
			if !ok || err != nil || g.ID != string(id) {
				t.Errorf("id %q → row %d: %+v, %v, %v", id, row, g, ok, err)
			}
			rows[string(rowKey(row))] = true
			if !g.NextDueAt.IsZero() {
				wantDue[string(dueKey(g.NextDueAt, row))] = true
			}
			wantState[string(stateKey(g.State, g.Provider, row))] = true
			return nil
		})
		keys := func(bk interface {
			ForEach(func(k, v []byte) error) error
		}) map[string]bool {
			m := map[string]bool{}
			bk.ForEach(func(k, _ []byte) error { m[string(k)] = true; return nil })
			return m
		}
		for _, c := range []struct {
			name      string
			got, want map[string]bool
		}{
			{"grants", keys(b.grants), rows},
			{"tokens", keys(b.tokens), rows},
			{"due", keys(b.due), wantDue},
			{"bystate", keys(b.byState), wantState},
		} {
			if fmt.Sprintf("%q", sorted(c.got)) != fmt.Sprintf("%q", sorted(c.want)) {
				t.Errorf("bucket %s has %d keys, the grants call for %d", c.name, len(c.got), len(c.want))
			}
		}
		b.history.ForEach(func(k, _ []byte) error {
			if !rows[string(k[:8])] {
				t.Errorf("history of missing row %d", rowOf(k))
			}
			return nil
		})
		return nil
	})
}

func sorted(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// TestRandomOperationsKeepIndexes runs a random mix of every write path and
// checks the indexes and counters against a full scan after each round.
func TestRandomOperationsKeepIndexes(t *testing.T) {
	db := openTest(t, Options{HistoryLimit: 3})
	rng := rand.New(rand.NewPCG(1, 2))
	providers := []string{"google", "microsoft", "okta"}
	states := States()
	now := t0
	id := func() string { return fmt.Sprintf("g%02d", rng.IntN(40)) }
	for round := range 30 {
		for range 40 {
			now = now.Add(time.Duration(rng.IntN(120)) * time.Second)
			switch op := rng.IntN(9); op {
			case 0:
				var gs []NewGrant
				for range rng.IntN(5) + 1 {
					gs = append(gs, NewGrant{ID: id(), Provider: providers[rng.IntN(3)], RefreshToken: "t"})
				}
				if _, _, err := db.Import(gs, now, replaceAll); err != nil {
					t.Fatal(err)
				}
			case 1, 2:
				st, prov, due, skip := states[rng.IntN(len(states))], providers[rng.IntN(3)], rng.IntN(3), rng.IntN(6) == 0
				move, in := rng.IntN(4) == 0, time.Duration(rng.IntN(3600))*time.Second
				db.Apply(id(), func(cur Grant) (Change, error) {
					cur.State = st
					if move {
						cur.Provider = prov
					}
					switch due {
					case 0:
						cur.NextDueAt = time.Time{}
					case 1:
						cur.NextDueAt = now.Add(in)
					}
					cur.Cause = fmt.Sprintf("c%d", rng.IntN(2))
					return Change{Skip: skip, Grant: cur, History: &HistoryEntry{At: now, To: st}}, nil
				})
			case 3:
				db.Due(now, rng.IntN(10), nil)
			case 4:
				db.Remove(id())
			case 5:
				db.SetToken(id(), "n", now)
			case 6:
				db.Reschedule(now, states[rng.IntN(len(states))], "", "")
			case 7:
				// Reschedule in chunks smaller than the state, filtered.
				defer func(n int) { rescheduleChunk = n }(rescheduleChunk)
				rescheduleChunk = 1 + rng.IntN(3)
				db.Reschedule(now.Add(time.Duration(rng.IntN(600))*time.Second), states[rng.IntN(len(states))],
					providers[rng.IntN(3)], []string{"", "c0", "c1"}[rng.IntN(3)])
			case 8:
				applyAllMixed(t, db, rng, id, now, providers)
			}
		}
		assertIndexesMatchScan(t, db)
		assertTokensOpen(t, db)
		if t.Failed() {
			t.Fatalf("inconsistent after round %d", round)
		}
	}
}

// applyAllMixed commits one ApplyAll of random items: good ones (some for
// the same grant, some rotating the token, some far in the future), skips,
// missing grants, failing Fns and Changes that cannot be written. Each item's
// error must be its own, and exactly the good items must be written.
func applyAllMixed(t *testing.T, db *DB, rng *rand.Rand, id func() string, now time.Time, providers []string) {
	t.Helper()
	boom := errors.New("boom")
	var items []ApplyItem
	var kinds []int
	for range rng.IntN(12) + 1 {
		kind, gid := rng.IntN(6), id()
		if kind == 2 {
			gid = "missing-" + gid
		}
		st, prov := States()[rng.IntN(5)], providers[rng.IntN(3)]
		due := []time.Time{{}, now.Add(time.Duration(rng.IntN(3600)) * time.Second), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)}[rng.IntN(3)]
		items = append(items, ApplyItem{ID: gid, Fn: func(cur Grant) (Change, error) {
			cur.State, cur.Provider, cur.NextDueAt = st, prov, due
			ch := Change{Grant: cur, History: &HistoryEntry{At: now, To: st}, NewToken: secret.Secret("rot-" + gid)}
			switch kind {
			case 1:
				ch.Skip = true
			case 3:
				return Change{}, boom
			case 4:
				ch.Grant.State = "bogus"
			case 5:
				ch.Outbox = []OutboxEntry{{Receiver: ""}}
			}
			return ch, nil
		}})
		kinds = append(kinds, kind)
	}
	errs, err := db.ApplyAll(items)
	if err != nil {
		t.Fatalf("ApplyAll: %v", err)
	}
	for i, k := range kinds {
		e := errs[i]
		ok := errors.Is(e, ErrNotFound) // the grant is absent: any kind
		switch k {
		case 0, 1:
			ok = ok || e == nil
		case 3:
			ok = ok || errors.Is(e, boom)
		case 4, 5:
			ok = ok || e != nil
		}
		if !ok {
			t.Errorf("item %d (kind %d, %s): err %v", i, k, items[i].ID, e)
		}
	}
}

// assertTokensOpen: every grant's token opens with its own id.
func assertTokensOpen(t *testing.T, db *DB) {
	t.Helper()
	db.Each(func(g Grant) error {
		if _, err := db.GetLease(g.ID); err != nil {
			t.Errorf("token of %s: %v", g.ID, err)
		}
		return nil
	})
}

package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

func TestApply(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		fn      func(cur Grant) (Change, error)
		wantErr error
		check   func(t *testing.T, db *DB)
	}{
		{
			// A stale result writes nothing.
			name: "skip",
			fn: func(cur Grant) (Change, error) {
				cur.State = StateHealthy
				return Change{Skip: true, Grant: cur, Outbox: []OutboxEntry{{Receiver: "r"}}}, nil
			},
			check: func(t *testing.T, db *DB) {
				if g, _ := db.Get("g0000"); g.State != StatePending {
					t.Errorf("state = %s, want pending", g.State)
				}
				if n, _, _ := db.OutboxStats(); n != 0 {
					t.Errorf("outbox has %d entries, want 0", n)
				}
			},
		},
		{
			// An error from fn rolls everything back.
			name: "fn error",
			fn: func(cur Grant) (Change, error) {
				return Change{}, errBoom
			},
			wantErr: errBoom,
			check: func(t *testing.T, db *DB) {
				if g, _ := db.Get("g0000"); g.State != StatePending {
					t.Errorf("state = %s, want pending", g.State)
				}
			},
		},
		{
			// A failing write (an invalid receiver) leaves the grant as it was.
			name: "atomic",
			fn: func(cur Grant) (Change, error) {
				cur.State = StateHealthy
				return Change{Grant: cur, NewToken: "new", History: &HistoryEntry{To: StateHealthy},
					Outbox: []OutboxEntry{{Receiver: "bad\x00name"}}}, nil
			},
			wantErr: errNUL,
			check: func(t *testing.T, db *DB) {
				if g, _ := db.Get("g0000"); g.State != StatePending {
					t.Errorf("state = %s, want pending", g.State)
				}
				if h, _ := db.History("g0000"); len(h) != 1 {
					t.Errorf("history has %d entries, want 1", len(h))
				}
				if ls, _ := db.Due(t0, 0, nil); len(ls) != 2 || ls[0].Token != "rt-0" {
					t.Errorf("token changed: %+v", ls)
				}
			},
		},
		{
			// Success with rotation: every part lands.
			name: "healthy with rotation",
			fn: func(cur Grant) (Change, error) {
				cur.State, cur.LastSuccessAt, cur.NextDueAt = StateHealthy, t0, t0.Add(24*time.Hour)
				return Change{Grant: cur, NewToken: "rt-0b",
					History: &HistoryEntry{At: t0, From: StatePending, To: StateHealthy},
					Outbox:  []OutboxEntry{{Receiver: "hook", Payload: []byte("{}")}},
					Meta:    map[string][]byte{"provider/google": []byte("ok")}}, nil
			},
			check: func(t *testing.T, db *DB) {
				if g, _ := db.Get("g0000"); g.State != StateHealthy {
					t.Errorf("state = %s, want healthy", g.State)
				}
				if ls, _ := db.Due(t0, 0, nil); leaseIDs(ls) != "g0001" {
					t.Errorf("due now = %s, want only g0001", leaseIDs(ls))
				}
				if ls, _ := db.Due(t0.Add(24*time.Hour), 0, nil); leaseIDs(ls) != "g0001 g0000" || ls[1].Token != "rt-0b" {
					t.Errorf("due tomorrow = %+v, want g0000 with the rotated token", ls)
				}
				if out, _ := db.PendingOutbox("hook", 0); len(out) != 1 || out[0].Seq == 0 || out[0].CreatedAt.IsZero() {
					t.Errorf("outbox = %+v", out)
				}
				if v, _ := db.GetMeta("provider/google"); string(v) != "ok" {
					t.Errorf("meta = %q", v)
				}
				if c, _ := db.Counts(); c["google"][StateHealthy] != 1 || c["google"][StatePending] != 1 {
					t.Errorf("counts = %v", c)
				}
			},
		},
		{
			// reconnect_required leaves the due index.
			name: "zero NextDueAt",
			fn: func(cur Grant) (Change, error) {
				cur.State, cur.NextDueAt = StateReconnectRequired, time.Time{}
				return Change{Grant: cur}, nil
			},
			check: func(t *testing.T, db *DB) {
				if ls, _ := db.Due(t0.Add(1000*time.Hour), 0, nil); leaseIDs(ls) != "g0001" {
					t.Errorf("due = %s, want only g0001", leaseIDs(ls))
				}
			},
		},
		{
			// The record's id cannot be changed by fn.
			name: "id kept",
			fn: func(cur Grant) (Change, error) {
				cur.ID = "other"
				cur.State = StateHealthy
				return Change{Grant: cur}, nil
			},
			check: func(t *testing.T, db *DB) {
				if _, err := db.Get("other"); !errors.Is(err, ErrNotFound) {
					t.Errorf("Get(other) err = %v, want ErrNotFound", err)
				}
				if g, _ := db.Get("g0000"); g.State != StateHealthy {
					t.Errorf("state = %s, want healthy", g.State)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openTest(t, Options{})
			importN(t, db, 2, "google", t0)
			err := db.Apply("g0000", tt.fn)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Apply err = %v, want %v", err, tt.wantErr)
			}
			tt.check(t, db)
			assertIndexesMatchScan(t, db)
		})
	}

	t.Run("not found", func(t *testing.T) {
		db := openTest(t, Options{})
		called := false
		err := db.Apply("nope", func(cur Grant) (Change, error) { called = true; return Change{}, nil })
		if !errors.Is(err, ErrNotFound) || called {
			t.Errorf("Apply(missing) = %v, fn called %v; want ErrNotFound, not called", err, called)
		}
	})

	t.Run("history bounded", func(t *testing.T) {
		db := openTest(t, Options{HistoryLimit: 5})
		importN(t, db, 2, "google", t0)
		for i := range 12 {
			err := db.Apply("g0000", func(cur Grant) (Change, error) {
				return Change{Grant: cur, History: &HistoryEntry{At: t0.Add(time.Duration(i) * time.Second), To: cur.State, Note: fmt.Sprint(i)}}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		h, _ := db.History("g0000")
		var notes []string
		for _, e := range h {
			notes = append(notes, e.Note)
		}
		if got, want := strings.Join(notes, ","), "7,8,9,10,11"; got != want {
			t.Errorf("history = %s, want %s", got, want)
		}
		if h, _ := db.History("g0001"); len(h) != 1 {
			t.Errorf("neighbour's history has %d entries, want 1", len(h))
		}
	})
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
			if _, _, err := db.Import([]NewGrant{{ID: "a", Provider: "p", RefreshToken: "tok-a"}, {ID: "b", Provider: "p", RefreshToken: "tok-b"}}, t0, replaceAll); err != nil {
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

// TestApplyConcurrent has 32 workers apply results through Batch at once, as
// the daemon does, and checks each grant got exactly its result.
func TestApplyConcurrent(t *testing.T) {
	db := openTest(t, Options{MaxBatchSize: 32, NoSync: true})
	const n = 640
	importN(t, db, n, "google", t0)
	var wg sync.WaitGroup
	ids := make(chan string)
	for range 32 {
		wg.Go(func() {
			for id := range ids {
				err := db.Apply(id, func(cur Grant) (Change, error) {
					cur.State, cur.NextDueAt = StateHealthy, t0.Add(time.Hour)
					return Change{Grant: cur, NewToken: secret.Secret("new-" + id),
						History: &HistoryEntry{At: t0, From: StatePending, To: StateHealthy}}, nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	for i := range n {
		ids <- fmt.Sprintf("g%04d", i)
	}
	close(ids)
	wg.Wait()
	ls, err := db.Due(t0.Add(time.Hour), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != n {
		t.Fatalf("%d leased, want %d", len(ls), n)
	}
	for _, l := range ls {
		if l.Token.Reveal() != "new-"+l.Grant.ID || l.Grant.State != StateHealthy {
			t.Errorf("%s: state %s, token mismatch %v", l.Grant.ID, l.Grant.State, l.Token.Reveal() != "new-"+l.Grant.ID)
		}
	}
	assertIndexesMatchScan(t, db)
}

// TestApplyAllIsolatesItems: in one ApplyAll, an item whose grant is gone or
// whose Fn fails is not written and does not stop the others.
func TestApplyAllIsolatesItems(t *testing.T) {
	db := openTest(t, Options{})
	now := time.Now()
	if _, _, err := db.Import([]NewGrant{
		{ID: "a", Provider: "p", RefreshToken: "tok-a"},
		{ID: "b", Provider: "p", RefreshToken: "tok-b"},
	}, now, replaceAll); err != nil {
		t.Fatal(err)
	}
	healthy := func(cur Grant) (Change, error) {
		cur.State = StateHealthy
		cur.NextDueAt = now.Add(time.Hour)
		return Change{Grant: cur}, nil
	}
	boom := errors.New("boom")
	errs, err := db.ApplyAll([]ApplyItem{
		{ID: "a", Fn: healthy},
		{ID: "gone", Fn: healthy},
		{ID: "b", Fn: func(Grant) (Change, error) { return Change{}, boom }},
	})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || !errors.Is(errs[1], ErrNotFound) || !errors.Is(errs[2], boom) {
		t.Fatalf("errs = %v", errs)
	}
	if g, _ := db.Get("a"); g.State != StateHealthy {
		t.Errorf("a is %s, want healthy", g.State)
	}
	if g, _ := db.Get("b"); g.State != StatePending {
		t.Errorf("b is %s, want pending (its Fn failed)", g.State)
	}
}

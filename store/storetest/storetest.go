// Package storetest is the store contract's conformance suite, written once
// and run against every backend (store's bbolt tests, store/etcd's tests):
// Run for the semantics every caller relies on, RunCrash for what survives
// a process killed in the middle of its writes.
//
// A backend passes when its store behaves as store.Store's and *store.DB's
// doc comments say. The suite checks behaviour through the interface only;
// it never looks at a backend's records. storetest.go is one long list of
// cases (~1,100 lines) on purpose: a backend's author reads the whole
// contract in one place.
package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

// T0 is the suite's "now"; backends' own tests may use it too.
var T0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Run runs the suite. open returns a new, empty store for one subtest and
// closes it at t's cleanup.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, c := range []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"ImportGetAndReplace", testImport},
		{"ImportRefusesWhole", testImportRefusesWhole},
		{"ImportRefusesToReplace", testImportRefusesToReplace},
		{"ImportObserve", testImportObserve},
		{"ListsAndCounts", testListsAndCounts},
		{"DueOrder", testDueOrder},
		{"Reschedule", testReschedule},
		{"ResultGroupWritesTogether", testGroupWritesTogether},
		{"ResultGroupIsolatesItems", testGroupIsolatesItems},
		{"ResultsOfOneGrantInOrder", testSameGrantInOrder},
		{"StaleResultDropped", testStaleResultDropped},
		{"ResultRacingSetToken", testResultRacingSetToken},
		{"SetToken", testSetToken},
		{"Remove", testRemove},
		{"RemoveMany", testRemoveMany},
		{"OutboxDelivery", testOutboxDelivery},
		{"DeadLetters", testDeadLetters},
		{"Meta", testMeta},
		{"ImportJobs", testImportJobs},
		{"Links", testLinks},
		{"AppKeys", testAppKeys},
		{"WatchIndexes", testWatchIndexes},
		{"ForecastFieldsKept", testForecastFieldsKept},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, open(t)) })
	}
}

// replaceAll lets an import replace any stored token, rotated or not.
var replaceAll = store.ImportOptions{Replace: true, Force: true}

func newGrants(n int, provider string) []store.NewGrant {
	gs := make([]store.NewGrant, n)
	for i := range gs {
		gs[i] = store.NewGrant{ID: fmt.Sprintf("g%03d", i), Provider: provider, RefreshToken: secret.Secret(fmt.Sprintf("rt-%d", i))}
	}
	return gs
}

func importGrants(t *testing.T, s store.Store, gs []store.NewGrant, now time.Time) {
	t.Helper()
	if _, _, err := s.Import(gs, now, replaceAll); err != nil {
		t.Fatalf("Import: %v", err)
	}
}

func get(t *testing.T, s store.Store, id string) store.Grant {
	t.Helper()
	g, err := s.Get(id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return g
}

func token(t *testing.T, s store.Store, id string) string {
	t.Helper()
	l, err := s.GetLease(id)
	if err != nil {
		t.Fatalf("GetLease(%q): %v", id, err)
	}
	return l.Token.Reveal()
}

// set writes g (as read) changed by fn through Apply.
func set(t *testing.T, s store.Store, id string, fn func(*store.Grant)) {
	t.Helper()
	err := s.Apply(id, func(cur store.Grant) (store.Change, error) {
		fn(&cur)
		return store.Change{Grant: cur}, nil
	})
	if err != nil {
		t.Fatalf("Apply(%q): %v", id, err)
	}
}

func ids(ls []store.Lease) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Grant.ID
	}
	return out
}

func collect(t *testing.T, each func(func(store.Grant) error) error) []string {
	t.Helper()
	var out []string
	if err := each(func(g store.Grant) error { out = append(out, g.ID); return nil }); err != nil {
		t.Fatalf("walk: %v", err)
	}
	return out
}

// testImport: new grants start pending and due at once with their token
// sealed; an import over an existing id replaces its token, raises TokenGen
// and keeps its row.
func testImport(t *testing.T, s store.Store) {
	created, replaced, err := s.Import(newGrants(3, "google"), T0, store.ImportOptions{})
	if err != nil || created != 3 || replaced != 0 {
		t.Fatalf("Import = %d, %d, %v; want 3, 0, nil", created, replaced, err)
	}
	g := get(t, s, "g001")
	if g.State != store.StatePending || !g.NextDueAt.Equal(T0) || g.TokenGen == 0 || g.Provider != "google" || g.Row == 0 {
		t.Errorf("imported grant = %+v: want pending, due %v, a TokenGen and a row", g, T0)
	}
	if got := token(t, s, "g001"); got != "rt-1" {
		t.Errorf("token = %q, want rt-1", got)
	}
	set(t, s, "g001", func(g *store.Grant) {
		g.State, g.Cause, g.NextDueAt = store.StateReconnectRequired, "revoked", time.Time{}
	})

	later := T0.Add(time.Hour)
	created, replaced, err = s.Import([]store.NewGrant{{ID: "g001", Provider: "google", Subject: "a@b", RefreshToken: "new"}}, later, replaceAll)
	if err != nil || created != 0 || replaced != 1 {
		t.Fatalf("re-Import = %d, %d, %v; want 0, 1, nil", created, replaced, err)
	}
	r := get(t, s, "g001")
	if r.TokenGen <= g.TokenGen || r.State != store.StatePending || r.Cause != "" || !r.NextDueAt.Equal(later) || r.Row != g.Row || r.Subject != "a@b" {
		t.Errorf("replaced grant = %+v; want TokenGen above %d, pending, no cause, due %v, row %d", r, g.TokenGen, later, g.Row)
	}
	if r.PreviousState != store.StateReconnectRequired || r.PreviousCause != "revoked" {
		t.Errorf("replaced grant's previous problem = %q/%q, want reconnect_required/revoked", r.PreviousState, r.PreviousCause)
	}
	if got := token(t, s, "g001"); got != "new" {
		t.Errorf("token after re-import = %q, want new", got)
	}
	h, err := s.History("g001")
	if err != nil || len(h) != 2 || h[0].To != store.StatePending || h[1].From != store.StateReconnectRequired {
		t.Errorf("History = %+v, %v; want the import, then pending from reconnect_required", h, err)
	}
	if _, err := s.Get("nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetLease("nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetLease(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.History("nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("History(missing) = %v, want ErrNotFound", err)
	}
}

// testImportRefusesToReplace: without Replace an import over an existing
// grant fails whole, naming the grant, and writes nothing; with Replace a
// grant whose token rotated since its import fails the same way unless Force
// is given. The flag that tells (Grant.Rotated) is set by a rotation, cannot
// be cleared by a Change, and is cleared by import and set-token.
func testImportRefusesToReplace(t *testing.T, s store.Store) {
	if _, _, err := s.Import([]store.NewGrant{
		{ID: "quiet", Provider: "google", RefreshToken: "q1"},
		{ID: "rotating", Provider: "hydra", RefreshToken: "r1"},
	}, T0, store.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	rotate := func(id, tok string) {
		t.Helper()
		err := s.Apply(id, func(cur store.Grant) (store.Change, error) {
			cur.State = store.StateHealthy
			return store.Change{Grant: cur, NewToken: secret.Secret(tok)}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	rotate("rotating", "r2")
	if !get(t, s, "rotating").Rotated {
		t.Fatal("a rotation did not set Rotated")
	}
	set(t, s, "rotating", func(g *store.Grant) { g.Rotated = false })
	if !get(t, s, "rotating").Rotated {
		t.Fatal("a Change without a new token cleared Rotated")
	}

	again := []store.NewGrant{
		{ID: "new", Provider: "google", RefreshToken: "n1"},
		{ID: "quiet", Provider: "google", RefreshToken: "q-old"},
		{ID: "rotating", Provider: "hydra", RefreshToken: "r1"},
	}
	for _, tc := range []struct {
		name  string
		opts  store.ImportOptions
		is    error
		named []string
	}{
		{"no replace", store.ImportOptions{}, store.ErrExists, []string{`"quiet"`, `"rotating"`}},
		{"force alone", store.ImportOptions{Force: true}, store.ErrExists, []string{`"quiet"`, `"rotating"`}},
		{"replace", store.ImportOptions{Replace: true}, store.ErrRotated, []string{`"rotating"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.Import(again, T0.Add(time.Minute), tc.opts)
			var ce *store.ConflictError
			if !errors.Is(err, tc.is) || !errors.As(err, &ce) {
				t.Fatalf("Import = %v, want %v as a *ConflictError", err, tc.is)
			}
			for _, id := range tc.named {
				if !strings.Contains(err.Error(), id) {
					t.Errorf("error %q does not name %s", err, id)
				}
			}
			if tc.is == store.ErrRotated && strings.Contains(err.Error(), `"quiet"`) {
				t.Errorf("error %q names a grant that did not rotate", err)
			}
			if _, err := s.Get("new"); !errors.Is(err, store.ErrNotFound) {
				t.Error("a refused import stored a new grant")
			}
			if token(t, s, "quiet") != "q1" || token(t, s, "rotating") != "r2" {
				t.Error("a refused import replaced a token")
			}
		})
	}
	c, err := s.ImportConflicts(again)
	if err != nil || c.Exists != 2 || c.Rotated != 1 || len(c.RotatedIDs) != 1 || c.RotatedIDs[0] != "rotating" {
		t.Errorf("ImportConflicts = %+v, %v; want 2 existing, rotating rotated", c, err)
	}

	created, replaced, err := s.Import(again, T0.Add(time.Minute), replaceAll)
	if err != nil || created != 1 || replaced != 2 {
		t.Fatalf("Import with Force = %d, %d, %v", created, replaced, err)
	}
	if get(t, s, "rotating").Rotated || token(t, s, "rotating") != "r1" {
		t.Errorf("forced import: Rotated %v, token %q; want false, r1", get(t, s, "rotating").Rotated, token(t, s, "rotating"))
	}
	rotate("rotating", "r3")
	if _, err := s.SetToken("rotating", "r-user", T0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if get(t, s, "rotating").Rotated {
		t.Error("set-token did not clear Rotated")
	}
	if _, _, err := s.Import([]store.NewGrant{{ID: "rotating", Provider: "hydra", RefreshToken: "r-old"}}, T0, store.ImportOptions{Replace: true}); err != nil {
		t.Errorf("Replace after set-token: %v", err)
	}
}

// testImportObserve: a grant of a provider in observe mode may come without
// a refresh token and is never scheduled; any other grant needs a token.
func testImportObserve(t *testing.T, s store.Store) {
	if _, _, err := s.Import([]store.NewGrant{{ID: "plain", Provider: "google"}}, T0, store.ImportOptions{}); err == nil {
		t.Fatal("a grant without a token was imported")
	}
	if _, _, err := s.Import([]store.NewGrant{
		{ID: "watched", Provider: "app", Observe: true},
		{ID: "watched-tok", Provider: "app", Observe: true, RefreshToken: "kept"},
	}, T0, store.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"watched", "watched-tok"} {
		if g := get(t, s, id); g.State != store.StatePending || !g.NextDueAt.IsZero() {
			t.Errorf("%s = %+v; want pending and not due", id, g)
		}
	}
	if ls, err := s.Due(T0.Add(time.Hour), 0, nil); err != nil || len(ls) != 0 {
		t.Errorf("Due = %d leases, %v; want none", len(ls), err)
	}
	if token(t, s, "watched") != "" {
		t.Error("a grant imported without a token has one")
	}
}

// testImportRefusesWhole: one bad grant fails the call and writes none.
func testImportRefusesWhole(t *testing.T, s store.Store) {
	for _, bad := range []store.NewGrant{
		{ID: "", Provider: "google", RefreshToken: "t"},
		{ID: "x", Provider: "", RefreshToken: "t"},
		{ID: "x", Provider: "google"},
		{ID: "x\x00y", Provider: "google", RefreshToken: "t"},
	} {
		gs := append(newGrants(2, "google"), bad)
		if _, _, err := s.Import(gs, T0, replaceAll); err == nil {
			t.Errorf("Import with %+v: nil error", bad)
		}
	}
	if got := collect(t, s.Each); len(got) != 0 {
		t.Errorf("after refused imports the store holds %v", got)
	}
}

// testListsAndCounts: Each in id order, EachInState through the state
// index, Counts per provider and state.
func testListsAndCounts(t *testing.T, s store.Store) {
	importGrants(t, s, []store.NewGrant{
		{ID: "c", Provider: "ms", RefreshToken: "t"},
		{ID: "a", Provider: "google", RefreshToken: "t"},
		{ID: "b", Provider: "google", RefreshToken: "t"},
		{ID: "d", Provider: "google", RefreshToken: "t"},
	}, T0)
	set(t, s, "b", func(g *store.Grant) { g.State = store.StateHealthy })
	set(t, s, "c", func(g *store.Grant) { g.State = store.StateHealthy })
	if got, want := collect(t, s.Each), []string{"a", "b", "c", "d"}; !slices.Equal(got, want) {
		t.Errorf("Each = %v, want %v", got, want)
	}
	inState := func(st store.State, p string) []string {
		return collect(t, func(fn func(store.Grant) error) error { return s.EachInState(st, p, fn) })
	}
	// Order: provider, then creation.
	if got, want := inState(store.StateHealthy, ""), []string{"b", "c"}; !slices.Equal(got, want) {
		t.Errorf("EachInState(healthy) = %v, want %v", got, want)
	}
	if got, want := inState(store.StatePending, "google"), []string{"a", "d"}; !slices.Equal(got, want) {
		t.Errorf("EachInState(pending, google) = %v, want %v", got, want)
	}
	if got := inState(store.StateDegraded, ""); len(got) != 0 {
		t.Errorf("EachInState(degraded) = %v, want none", got)
	}
	counts, err := s.Counts()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[store.State]int{"google": {store.StatePending: 2, store.StateHealthy: 1}, "ms": {store.StateHealthy: 1}}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("Counts = %v, want %v", counts, want)
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Each(func(store.Grant) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("Each with fn failing: %v after %d calls, want stop after 1", err, n)
	}
}

// testDueOrder: Due hands out grants due by now, earliest first, equal
// times in creation order, up to limit, passing over those take refuses;
// NextDue is the earliest; a grant with no due time is never due.
func testDueOrder(t *testing.T, s store.Store) {
	importGrants(t, s, newGrants(6, "google"), T0)
	due := map[string]time.Time{
		"g000": T0.Add(3 * time.Minute), "g001": T0.Add(time.Minute), "g002": T0.Add(2 * time.Minute),
		"g003": {}, "g004": T0.Add(time.Minute), "g005": T0.Add(time.Hour),
	}
	for id, at := range due {
		set(t, s, id, func(g *store.Grant) { g.NextDueAt = at })
	}
	at, ok, err := s.NextDue()
	if err != nil || !ok || !at.Equal(T0.Add(time.Minute)) {
		t.Errorf("NextDue = %v, %v, %v; want %v", at, ok, err, T0.Add(time.Minute))
	}
	ls, err := s.Due(T0.Add(3*time.Minute), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(ls), []string{"g001", "g004", "g002", "g000"}; !slices.Equal(got, want) {
		t.Errorf("Due = %v, want %v", got, want)
	}
	for _, l := range ls {
		var i int
		fmt.Sscanf(l.Grant.ID, "g%d", &i)
		if want := fmt.Sprintf("rt-%d", i); l.Token.Reveal() != want {
			t.Errorf("Due's token for %s = %q, want %q", l.Grant.ID, l.Token.Reveal(), want)
		}
	}
	if ls, _ := s.Due(T0.Add(3*time.Minute), 2, nil); !slices.Equal(ids(ls), []string{"g001", "g004"}) {
		t.Errorf("Due with limit 2 = %v", ids(ls))
	}
	// take refuses the first (the caller holds it); Due is a read, so a
	// second scan hands out the same grants again.
	first := ls[0].Grant.Row
	ls, _ = s.Due(T0.Add(3*time.Minute), 2, func(row uint64) bool { return row != first })
	if got, want := ids(ls), []string{"g004", "g002"}; !slices.Equal(got, want) {
		t.Errorf("Due passing over g001 = %v, want %v", got, want)
	}
	if ls, _ := s.Due(T0, 0, nil); len(ls) != 0 {
		t.Errorf("Due(T0) = %v, want none", ids(ls))
	}
	// Moving a grant's due time moves it in the index.
	set(t, s, "g005", func(g *store.Grant) { g.NextDueAt = T0 })
	if ls, _ := s.Due(T0, 0, nil); !slices.Equal(ids(ls), []string{"g005"}) {
		t.Errorf("Due(T0) after moving g005 = %v, want [g005]", ids(ls))
	}
	for id := range due {
		set(t, s, id, func(g *store.Grant) { g.NextDueAt = time.Time{} })
	}
	if _, ok, err := s.NextDue(); ok || err != nil {
		t.Errorf("NextDue with nothing scheduled: ok %v, %v", ok, err)
	}
}

// testReschedule: grants in a state (of a provider, with a cause) become due.
func testReschedule(t *testing.T, s store.Store) {
	importGrants(t, s, newGrants(3, "google"), T0)
	importGrants(t, s, []store.NewGrant{{ID: "m", Provider: "ms", RefreshToken: "t"}}, T0)
	hold := func(g *store.Grant) { g.State, g.Cause, g.NextDueAt = store.StateOnHold, "clock_skew", time.Time{} }
	for _, id := range []string{"g000", "g001", "m"} {
		set(t, s, id, hold)
	}
	set(t, s, "g001", func(g *store.Grant) { g.Cause = "server_error" })
	set(t, s, "g002", func(g *store.Grant) { g.State, g.NextDueAt = store.StateHealthy, T0.Add(time.Hour) })
	at := T0.Add(time.Minute)
	n, err := s.Reschedule(at, store.StateOnHold, "google", "clock_skew")
	if err != nil || n != 1 {
		t.Fatalf("Reschedule = %d, %v; want 1", n, err)
	}
	ls, _ := s.Due(at, 0, nil)
	if !slices.Equal(ids(ls), []string{"g000"}) {
		t.Errorf("due after Reschedule = %v, want [g000]", ids(ls))
	}
	if n, err := s.Reschedule(at, store.StateOnHold, "", ""); err != nil || n != 3 {
		t.Errorf("Reschedule(on_hold) = %d, %v; want 3", n, err)
	}
	if g := get(t, s, "m"); g.State != store.StateOnHold || !g.NextDueAt.Equal(at) {
		t.Errorf("rescheduled grant = %v due %v, want on_hold due %v", g.State, g.NextDueAt, at)
	}
}

// testGroupWritesTogether: one Change writes grant, due entry, rotated
// token, history, outbox entries and meta.
func testGroupWritesTogether(t *testing.T, s store.Store) {
	importGrants(t, s, newGrants(3, "google"), T0)
	at := T0.Add(24 * time.Hour)
	items := make([]store.ApplyItem, 3)
	for i := range items {
		id := fmt.Sprintf("g%03d", i)
		items[i] = store.ApplyItem{ID: id, Fn: func(cur store.Grant) (store.Change, error) {
			cur.State, cur.NextDueAt, cur.LastProbeAt = store.StateHealthy, at, T0
			return store.Change{
				Grant:    cur,
				NewToken: secret.Secret("rotated-" + id),
				History:  &store.HistoryEntry{At: T0, From: store.StatePending, To: store.StateHealthy},
				Outbox:   []store.OutboxEntry{{Receiver: "hook", Payload: []byte(`"` + id + `"`)}},
				Meta:     map[string][]byte{"last/" + id: []byte("1")},
			}, nil
		}}
	}
	errs, err := s.ApplyAll(items)
	if err != nil || errors.Join(errs...) != nil {
		t.Fatalf("ApplyAll = %v, %v", errs, err)
	}
	for i := range 3 {
		id := fmt.Sprintf("g%03d", i)
		g := get(t, s, id)
		if g.State != store.StateHealthy || !g.NextDueAt.Equal(at) || !g.LastProbeAt.Equal(T0) {
			t.Errorf("%s = %v due %v, want healthy due %v", id, g.State, g.NextDueAt, at)
		}
		if got := token(t, s, id); got != "rotated-"+id {
			t.Errorf("%s's token = %q, want the rotated one", id, got)
		}
		if h, _ := s.History(id); len(h) != 2 || h[1].To != store.StateHealthy {
			t.Errorf("%s's history = %+v, want the import and the transition", id, h)
		}
		if v, _ := s.GetMeta("last/" + id); string(v) != "1" {
			t.Errorf("meta of %s = %q", id, v)
		}
	}
	if ls, _ := s.Due(at.Add(-time.Second), 0, nil); len(ls) != 0 {
		t.Errorf("due before %v: %v", at, ids(ls))
	}
	if ls, _ := s.Due(at, 0, nil); len(ls) != 3 {
		t.Errorf("due at %v: %v, want all three", at, ids(ls))
	}
	es, err := s.PendingOutbox("hook", 0)
	if err != nil || len(es) != 3 {
		t.Fatalf("PendingOutbox = %v, %v; want 3 entries", es, err)
	}
	for _, e := range es {
		if e.Seq == 0 || e.CreatedAt.IsZero() {
			t.Errorf("outbox entry %+v: want a Seq and CreatedAt", e)
		}
	}
	if counts, _ := s.Counts(); counts["google"][store.StateHealthy] != 3 || counts["google"][store.StatePending] != 0 {
		t.Errorf("Counts = %v, want 3 healthy", counts)
	}
}

// testGroupIsolatesItems: an item's own problem (unknown grant, its Fn's
// error, a Change that cannot be written) leaves that item unwritten and
// writes the others; Skip writes nothing.
func testGroupIsolatesItems(t *testing.T, s store.Store) {
	importGrants(t, s, newGrants(5, "google"), T0)
	boom := errors.New("boom")
	change := func(st store.State, receiver string) func(store.Grant) (store.Change, error) {
		return func(cur store.Grant) (store.Change, error) {
			cur.State = st
			return store.Change{Grant: cur, NewToken: "x", Outbox: []store.OutboxEntry{{Receiver: receiver, Payload: []byte(`1`)}},
				Meta: map[string][]byte{"m/" + cur.ID: []byte("1")}}, nil
		}
	}
	items := []store.ApplyItem{
		{ID: "g000", Fn: change(store.StateHealthy, "hook")},
		{ID: "missing", Fn: change(store.StateHealthy, "hook")},
		{ID: "g001", Fn: func(store.Grant) (store.Change, error) { return store.Change{}, boom }},
		{ID: "g002", Fn: change("bogus", "hook")},
		{ID: "g003", Fn: change(store.StateHealthy, "")},
		{ID: "g004", Fn: func(store.Grant) (store.Change, error) { return store.Change{Skip: true}, nil }},
	}
	errs, err := s.ApplyAll(items)
	if err != nil {
		t.Fatalf("ApplyAll: %v", err)
	}
	if errs[0] != nil || errs[5] != nil {
		t.Errorf("good items' errors: %v, %v", errs[0], errs[5])
	}
	if !errors.Is(errs[1], store.ErrNotFound) {
		t.Errorf("missing grant's error = %v, want ErrNotFound", errs[1])
	}
	if !errors.Is(errs[2], boom) {
		t.Errorf("Fn's error = %v, want it wrapped", errs[2])
	}
	if errs[3] == nil || errs[4] == nil {
		t.Errorf("unwritable Changes' errors = %v, %v; want both", errs[3], errs[4])
	}
	if g := get(t, s, "g000"); g.State != store.StateHealthy {
		t.Errorf("g000 = %v, want healthy", g.State)
	}
	for _, id := range []string{"g001", "g002", "g003", "g004"} {
		if g := get(t, s, id); g.State != store.StatePending {
			t.Errorf("%s = %v, want it unwritten (pending)", id, g.State)
		}
		if v, _ := s.GetMeta("m/" + id); v != nil {
			t.Errorf("%s's meta written: %q", id, v)
		}
		if tok := token(t, s, id); tok == "x" {
			t.Errorf("%s's token replaced", id)
		}
	}
	if es, _ := s.PendingOutbox("hook", 0); len(es) != 1 {
		t.Errorf("outbox holds %d entries, want g000's one", len(es))
	}
	if _, err := s.Get("missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an item for a missing grant created it: %v", err)
	}
}

// testSameGrantInOrder: items of one grant apply in the order given, each
// on the record the one before wrote (the later rotated token wins).
func testSameGrantInOrder(t *testing.T, s store.Store) {
	importGrants(t, s, newGrants(1, "google"), T0)
	step := func(tok string) store.ApplyItem {
		return store.ApplyItem{ID: "g000", Fn: func(cur store.Grant) (store.Change, error) {
			cur.Failures++
			return store.Change{Grant: cur, NewToken: secret.Secret(tok)}, nil
		}}
	}
	errs, err := s.ApplyAll([]store.ApplyItem{step("a"), step("b"), step("c")})
	if err != nil || errors.Join(errs...) != nil {
		t.Fatalf("ApplyAll = %v, %v", errs, err)
	}
	if g := get(t, s, "g000"); g.Failures != 3 {
		t.Errorf("Failures = %d, want 3 (each item on the one before)", g.Failures)
	}
	if got := token(t, s, "g000"); got != "c" {
		t.Errorf("token = %q, want c", got)
	}
}

// daemonResult is the daemon writer's Fn: a result for the token generation
// it was leased with, dropped when the grant's token was replaced since.
func daemonResult(leased store.Grant, rotated string, dropped *bool) func(store.Grant) (store.Change, error) {
	return func(cur store.Grant) (store.Change, error) {
		if cur.TokenGen != leased.TokenGen {
			*dropped = true
			return store.Change{Skip: true}, nil
		}
		*dropped = false
		cur.State, cur.NextDueAt = store.StateHealthy, T0.Add(time.Hour)
		return store.Change{Grant: cur, NewToken: secret.Secret(rotated)}, nil
	}
}

// testStaleResultDropped: a result for a token replaced while it was
// probed (set-token, re-import) is dropped: Fn sees the new TokenGen, and
// its rotated token of the old chain does not overwrite the new token.
func testStaleResultDropped(t *testing.T, s store.Store) {
	importGrants(t, s, newGrants(2, "google"), T0)
	ls, err := s.Due(T0, 0, nil)
	if err != nil || len(ls) != 2 {
		t.Fatalf("Due = %v, %v", ids(ls), err)
	}
	if _, err := s.SetToken("g000", "fresh", T0); err != nil {
		t.Fatal(err)
	}
	importGrants(t, s, []store.NewGrant{{ID: "g001", Provider: "google", RefreshToken: "reimported"}}, T0)
	var dropped [2]bool
	errs, err := s.ApplyAll([]store.ApplyItem{
		{ID: "g000", Row: ls[0].Grant.Row, Fn: daemonResult(ls[0].Grant, "old-chain-0", &dropped[0])},
		{ID: "g001", Row: ls[1].Grant.Row, Fn: daemonResult(ls[1].Grant, "old-chain-1", &dropped[1])},
	})
	if err != nil || errors.Join(errs...) != nil {
		t.Fatalf("ApplyAll = %v, %v", errs, err)
	}
	if !dropped[0] || !dropped[1] {
		t.Errorf("stale results dropped: %v, want both", dropped)
	}
	for id, want := range map[string]string{"g000": "fresh", "g001": "reimported"} {
		if got := token(t, s, id); got != want {
			t.Errorf("%s's token = %q, want %q", id, got, want)
		}
		if g := get(t, s, id); g.State != store.StatePending {
			t.Errorf("%s = %v, want pending (awaiting its new token's probe)", id, g.State)
		}
	}
	// A grant removed and imported again under its id is a new grant: a
	// result leased before never matches it.
	l, _ := s.GetLease("g000")
	if err := s.Remove("g000"); err != nil {
		t.Fatal(err)
	}
	importGrants(t, s, []store.NewGrant{{ID: "g000", Provider: "google", RefreshToken: "again"}}, T0)
	var d bool
	errs, err = s.ApplyAll([]store.ApplyItem{{ID: "g000", Row: l.Grant.Row, Fn: daemonResult(l.Grant, "old-chain", &d)}})
	if err != nil || errs[0] != nil || !d {
		t.Errorf("result for the removed grant: %v, %v, dropped %v; want dropped", errs, err, d)
	}
	if got := token(t, s, "g000"); got != "again" {
		t.Errorf("re-imported grant's token = %q, want again", got)
	}
}

// testResultRacingSetToken: a result committed while set-token runs is
// either written first (and the new token replaces its rotated one) or
// sees the new TokenGen and is dropped; the new token always stays. A
// backend that wrote a Change computed on a record read before the
// set-token landed would leave the old chain's token.
func testResultRacingSetToken(t *testing.T, s store.Store) {
	importGrants(t, s, newGrants(1, "google"), T0)
	for i := range 40 {
		l, err := s.GetLease("g000")
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("set-%d", i)
		var wg sync.WaitGroup
		var dropped bool
		var errs []error
		var applyErr, setErr error
		wg.Go(func() {
			errs, applyErr = s.ApplyAll([]store.ApplyItem{{ID: "g000", Row: l.Grant.Row, Fn: daemonResult(l.Grant, "rotated", &dropped)}})
		})
		wg.Go(func() { _, setErr = s.SetToken("g000", secret.Secret(want), T0) })
		wg.Wait()
		if applyErr != nil || setErr != nil || errs[0] != nil {
			t.Fatalf("round %d: ApplyAll %v %v, SetToken %v", i, applyErr, errs, setErr)
		}
		if got := token(t, s, "g000"); got != want {
			t.Fatalf("round %d: token = %q, want %q (dropped %v): a result overwrote the token set meanwhile", i, got, want, dropped)
		}
	}
}

// testSetToken: the grant is reset to pending, due now, TokenGen raised,
// its problem kept as PreviousState until the new token's verdict.
func testSetToken(t *testing.T, s store.Store) {
	importGrants(t, s, newGrants(1, "google"), T0)
	set(t, s, "g000", func(g *store.Grant) {
		g.State, g.Cause, g.Error, g.Failures, g.NextDueAt = store.StateReconnectRequired, "revoked", "invalid_grant", 3, time.Time{}
	})
	before := get(t, s, "g000")
	now := T0.Add(time.Hour)
	g, err := s.SetToken("g000", "new", now)
	if err != nil {
		t.Fatal(err)
	}
	if g.State != store.StatePending || g.Cause != "" || g.Error != "" || g.Failures != 0 || g.TokenGen != before.TokenGen+1 || !g.NextDueAt.Equal(now) {
		t.Errorf("SetToken returned %+v", g)
	}
	if g.PreviousState != store.StateReconnectRequired || g.PreviousCause != "revoked" {
		t.Errorf("PreviousState/Cause = %q/%q", g.PreviousState, g.PreviousCause)
	}
	if got := get(t, s, "g000"); got.TokenGen != g.TokenGen || got.State != store.StatePending {
		t.Errorf("stored %+v, SetToken returned %+v", got, g)
	}
	if tok := token(t, s, "g000"); tok != "new" {
		t.Errorf("token = %q", tok)
	}
	if h, _ := s.History("g000"); len(h) != 2 || h[1].From != store.StateReconnectRequired || h[1].To != store.StatePending {
		t.Errorf("history = %+v", h)
	}
	if ls, _ := s.Due(now, 0, nil); len(ls) != 1 {
		t.Errorf("after SetToken the grant is not due: %v", ids(ls))
	}
	if _, err := s.SetToken("nope", "t", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetToken(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.SetToken("g000", "", now); err == nil {
		t.Error("SetToken with an empty token: nil error")
	}
}

// testRemove: a removed grant is gone from every read; a grant imported
// again under its id starts above the removed one's TokenGen.
func testRemove(t *testing.T, s store.Store) {
	importGrants(t, s, newGrants(2, "google"), T0)
	g := get(t, s, "g000")
	if err := s.Remove("g000"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("g000"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Remove = %v", err)
	}
	if _, err := s.History("g000"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("History after Remove = %v", err)
	}
	if ls, _ := s.Due(T0, 0, nil); !slices.Equal(ids(ls), []string{"g001"}) {
		t.Errorf("Due after Remove = %v", ids(ls))
	}
	if got := collect(t, func(fn func(store.Grant) error) error { return s.EachInState(store.StatePending, "", fn) }); !slices.Equal(got, []string{"g001"}) {
		t.Errorf("EachInState after Remove = %v", got)
	}
	if c, _ := s.Counts(); c["google"][store.StatePending] != 1 {
		t.Errorf("Counts after Remove = %v", c)
	}
	if err := s.Remove("g000"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
	importGrants(t, s, []store.NewGrant{{ID: "g000", Provider: "google", RefreshToken: "t"}}, T0)
	if again := get(t, s, "g000"); again.TokenGen <= g.TokenGen {
		t.Errorf("re-imported TokenGen %d, removed one had %d", again.TokenGen, g.TokenGen)
	}
	if h, _ := s.History("g000"); len(h) != 1 {
		t.Errorf("re-imported grant has the removed one's history: %+v", h)
	}
}

// testRemoveMany: RemoveIDs passes over unknown ids; RemoveWhere takes a
// state, a provider or both, and refuses neither.
func testRemoveMany(t *testing.T, s store.Store) {
	importGrants(t, s, newGrants(4, "google"), T0)
	importGrants(t, s, []store.NewGrant{{ID: "m1", Provider: "ms", RefreshToken: "t"}, {ID: "m2", Provider: "ms", RefreshToken: "t"}}, T0)
	set(t, s, "m2", func(g *store.Grant) { g.State = store.StateHealthy })
	if n, err := s.RemoveIDs([]string{"g000", "nope", "g001"}); err != nil || n != 2 {
		t.Errorf("RemoveIDs = %d, %v; want 2", n, err)
	}
	if n, err := s.RemoveWhere(store.StatePending, "ms"); err != nil || n != 1 {
		t.Errorf("RemoveWhere(pending, ms) = %d, %v; want 1", n, err)
	}
	if _, err := s.RemoveWhere("", ""); err == nil {
		t.Error("RemoveWhere of everything: nil error")
	}
	if n, err := s.RemoveWhere("", "google"); err != nil || n != 2 {
		t.Errorf("RemoveWhere(google) = %d, %v; want 2", n, err)
	}
	if got := collect(t, s.Each); !slices.Equal(got, []string{"m2"}) {
		t.Errorf("left: %v, want [m2]", got)
	}
	if c, _ := s.Counts(); fmt.Sprint(c) != fmt.Sprint(map[string]map[store.State]int{"ms": {store.StateHealthy: 1}}) {
		t.Errorf("Counts = %v", c)
	}
}

// testOutboxDelivery: entries come out per receiver in Seq order (Seq
// increasing across receivers and across Enqueue and Change.Outbox),
// bookkeeping updates keep the payload, an ack deletes, and an entry stays
// until acknowledged or dead-lettered.
func testOutboxDelivery(t *testing.T, s store.Store) {
	if err := s.Enqueue(
		store.OutboxEntry{Receiver: "a", Payload: []byte(`1`), CreatedAt: T0},
		store.OutboxEntry{Receiver: "b", Payload: []byte(`2`), CreatedAt: T0.Add(time.Second)},
		store.OutboxEntry{Receiver: "a", Payload: []byte(`3`), CreatedAt: T0.Add(2 * time.Second)},
	); err != nil {
		t.Fatal(err)
	}
	importGrants(t, s, newGrants(1, "google"), T0)
	if err := s.Apply("g000", func(cur store.Grant) (store.Change, error) {
		return store.Change{Grant: cur, Outbox: []store.OutboxEntry{{Receiver: "a", Payload: []byte(`4`), CreatedAt: T0}}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	a, err := s.PendingOutbox("a", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.PendingOutbox("b", 0)
	if got := payloads(a); got != "1,3,4" {
		t.Fatalf("receiver a's entries = %s, want 1,3,4", got)
	}
	if len(b) != 1 || !(a[0].Seq < b[0].Seq && b[0].Seq < a[1].Seq && a[1].Seq < a[2].Seq) {
		t.Errorf("seqs a=%v b=%v: want increasing across receivers in enqueue order", seqs(a), seqs(b))
	}
	if lim, _ := s.PendingOutbox("a", 2); payloads(lim) != "1,3" {
		t.Errorf("PendingOutbox limit 2 = %s", payloads(lim))
	}
	if pending, oldest, err := s.OutboxStats(); err != nil || pending != 4 || !oldest.Equal(T0) {
		t.Errorf("OutboxStats = %d, %v, %v; want 4, %v", pending, oldest, err, T0)
	}

	// A failed attempt: bookkeeping stored, the entry stays.
	u := a[0]
	u.Attempts, u.NextAttemptAt, u.LastError, u.NotificationID = 2, T0.Add(time.Minute), "HTTP 503", "n-1"
	u.Payload = []byte(`"ignored"`)
	if err := s.UpdateOutbox(u, store.OutboxEntry{Receiver: "a", Seq: 999}); err != nil {
		t.Fatal(err)
	}
	a, _ = s.PendingOutbox("a", 0)
	if e := a[0]; e.Attempts != 2 || !e.NextAttemptAt.Equal(T0.Add(time.Minute)) || e.LastError != "HTTP 503" || e.NotificationID != "n-1" || string(e.Payload) != "1" {
		t.Errorf("updated entry = %+v; want the bookkeeping, payload kept", e)
	}
	if len(a) != 3 {
		t.Errorf("UpdateOutbox of an unknown entry added one: %d entries", len(a))
	}
	// Delivered: acknowledged entries go, the rest stay, in order.
	if err := s.AckOutbox("a", a[0].Seq, a[2].Seq, 12345); err != nil {
		t.Fatal(err)
	}
	if a, _ = s.PendingOutbox("a", 0); payloads(a) != "3" {
		t.Errorf("after ack: %s, want 3", payloads(a))
	}
	if b2, _ := s.PendingOutbox("b", 0); len(b2) != 1 {
		t.Errorf("an ack for a deleted b's entry")
	}
	if pending, oldest, _ := s.OutboxStats(); pending != 2 || !oldest.Equal(T0.Add(time.Second)) {
		t.Errorf("OutboxStats after ack = %d, %v", pending, oldest)
	}
}

// testDeadLetters: a dead letter leaves the outbox with its reason, is
// listed, and Redeliver puts it back as new with its notification id.
func testDeadLetters(t *testing.T, s store.Store) {
	if err := s.Enqueue(
		store.OutboxEntry{Receiver: "a", Payload: []byte(`1`), CreatedAt: T0},
		store.OutboxEntry{Receiver: "a", Payload: []byte(`2`), CreatedAt: T0},
		store.OutboxEntry{Receiver: "b", Payload: []byte(`3`), CreatedAt: T0},
	); err != nil {
		t.Fatal(err)
	}
	a, _ := s.PendingOutbox("a", 0)
	b, _ := s.PendingOutbox("b", 0)
	a[0].Attempts, a[0].NotificationID, a[0].LastError = 5, "n-a", "HTTP 500"
	if err := s.UpdateOutbox(a[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter("a", "max_age exceeded", a[0].Seq, 777); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter("b", "receiver refused", b[0].Seq); err != nil {
		t.Fatal(err)
	}
	if left, _ := s.PendingOutbox("a", 0); payloads(left) != "2" {
		t.Errorf("outbox of a after dead-lettering: %s, want 2", payloads(left))
	}
	var dead []store.OutboxEntry
	if err := s.DeadLetters(func(e store.OutboxEntry) error { dead = append(dead, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if payloads(dead) != "1,3" || dead[0].DeadReason != "max_age exceeded" || dead[0].DeadAt.IsZero() || dead[0].Receiver != "a" || dead[1].DeadReason != "receiver refused" {
		t.Fatalf("dead letters = %+v", dead)
	}
	now := T0.Add(time.Hour)
	if n, err := s.Redeliver("a", nil, now); err != nil || n != 1 {
		t.Fatalf("Redeliver(a) = %d, %v; want 1", n, err)
	}
	a, _ = s.PendingOutbox("a", 0)
	if payloads(a) != "1,2" {
		t.Fatalf("outbox after redeliver = %s, want 1,2 (Seq order)", payloads(a))
	}
	if e := a[0]; e.Attempts != 0 || !e.CreatedAt.Equal(now) || e.NotificationID != "n-a" || e.LastError != "" || e.DeadReason != "" || !e.DeadAt.IsZero() {
		t.Errorf("redelivered entry = %+v; want fresh bookkeeping, CreatedAt now, the notification id kept", e)
	}
	if n, err := s.Redeliver("b", []uint64{b[0].Seq, 4242}, now); err != nil || n != 1 {
		t.Errorf("Redeliver(b, seq) = %d, %v; want 1", n, err)
	}
	dead = nil
	s.DeadLetters(func(e store.OutboxEntry) error { dead = append(dead, e); return nil })
	if len(dead) != 0 {
		t.Errorf("dead letters left: %+v", dead)
	}
}

func payloads(es []store.OutboxEntry) string {
	var p []string
	for _, e := range es {
		p = append(p, string(e.Payload))
	}
	return strings.Join(p, ",")
}

func seqs(es []store.OutboxEntry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

func testMeta(t *testing.T, s store.Store) {
	if v, err := s.GetMeta("k"); v != nil || err != nil {
		t.Errorf("GetMeta(absent) = %q, %v; want nil, nil", v, err)
	}
	if err := s.PutMeta("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.GetMeta("k"); string(v) != "v" {
		t.Errorf("GetMeta = %q", v)
	}
	if err := s.PutMeta("k", nil); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.GetMeta("k"); v != nil {
		t.Errorf("GetMeta after delete = %q", v)
	}
	if err := s.PutMeta("", []byte("v")); err == nil {
		t.Error("PutMeta with an empty key: nil error")
	}
}

// testImportJobs: a job's progress lands with its grants; a batch that does
// not start where the job stands is refused.
func testImportJobs(t *testing.T, s store.Store) {
	job, err := s.BeginImport(store.ImportJob{Source: "f.jsonl", Total: 3, StartedAt: T0})
	if err != nil || job.ID == "" {
		t.Fatalf("BeginImport = %+v, %v", job, err)
	}
	gs := newGrants(3, "google")
	job, err = s.ImportBatch(job.ID, 0, 2, gs[:2], T0, replaceAll)
	if err != nil || job.Committed != 2 || job.Created != 2 {
		t.Fatalf("ImportBatch = %+v, %v", job, err)
	}
	if _, err := s.ImportBatch(job.ID, 0, 2, gs[:2], T0, replaceAll); !errors.Is(err, store.ErrImportOffset) {
		t.Errorf("batch sent again = %v, want ErrImportOffset", err)
	}
	if _, err := s.FinishImport(job.ID); err == nil {
		t.Error("FinishImport with a line left: nil error")
	}
	pend, err := s.PendingImports()
	if err != nil || len(pend) != 1 || pend[0].Committed != 2 || pend[0].Source != "f.jsonl" {
		t.Errorf("PendingImports = %+v, %v", pend, err)
	}
	if job, err = s.ImportBatch(job.ID, 2, 1, gs[2:], T0, replaceAll); err != nil || job.Committed != 3 {
		t.Fatalf("last ImportBatch = %+v, %v", job, err)
	}
	if _, err := s.FinishImport(job.ID); err != nil {
		t.Errorf("FinishImport: %v", err)
	}
	if got := collect(t, s.Each); len(got) != 3 {
		t.Errorf("grants after the job: %v", got)
	}
	other, _ := s.BeginImport(store.ImportJob{Source: "-"})
	if other.ID == job.ID {
		t.Errorf("two jobs got the id %q", job.ID)
	}
	if _, err := s.AbortImport(other.ID); err != nil {
		t.Errorf("AbortImport: %v", err)
	}
	if pend, _ := s.PendingImports(); len(pend) != 0 {
		t.Errorf("PendingImports after finish and abort = %+v", pend)
	}
	if _, err := s.ImportBatch("import-none", 0, 1, gs[:1], T0, replaceAll); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ImportBatch of an unknown job = %v, want ErrNotFound", err)
	}
}

// testAppKeys: app keys are stored by name with their hash, labels and
// scopes; a name and a hash are each stored once; revoking removes a key,
// once.
func testAppKeys(t *testing.T, s store.Store) {
	ops := store.AppKey{Name: "ops", Hash: store.HashAppKey("key-ops"), Scopes: []string{"read", "set-token"}, CreatedAt: T0}
	acme := store.AppKey{Name: "acme-sync", Hash: store.HashAppKey("key-acme"), Labels: map[string]string{"tenant": "acme"},
		Scopes: []string{"token"}, CreatedAt: T0.Add(time.Minute)}
	for _, k := range []store.AppKey{ops, acme} {
		if err := s.CreateAppKey(k); err != nil {
			t.Fatalf("CreateAppKey(%s): %v", k.Name, err)
		}
	}
	if err := s.CreateAppKey(store.AppKey{Name: "ops", Hash: store.HashAppKey("other")}); !errors.Is(err, store.ErrExists) {
		t.Errorf("a second key named ops: %v, want ErrExists", err)
	}
	if err := s.CreateAppKey(store.AppKey{Name: "copy", Hash: store.HashAppKey("key-acme")}); !errors.Is(err, store.ErrExists) {
		t.Errorf("acme's key under another name: %v, want ErrExists", err)
	}
	got, err := s.AppKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "acme-sync" || got[1].Name != "ops" || string(got[0].Hash) != string(acme.Hash) ||
		got[0].Labels["tenant"] != "acme" || !slices.Equal(got[1].Scopes, ops.Scopes) || !got[0].CreatedAt.Equal(acme.CreatedAt) {
		t.Errorf("AppKeys = %+v, want acme-sync and ops as created", got)
	}
	if err := s.RevokeAppKey("ops"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAppKey("ops"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoking ops twice: %v, want ErrNotFound", err)
	}
	if got, _ := s.AppKeys(); len(got) != 1 || got[0].Name != "acme-sync" {
		t.Errorf("after revoke: %+v", got)
	}
}

// testWatchIndexes: the expiry and unreadable indexes follow every write of
// a grant: counted and listed per provider, soonest first, and left by a
// moved forecast, a new token chain and a removal.
func testWatchIndexes(t *testing.T, s store.Store) {
	importGrants(t, s, []store.NewGrant{
		{ID: "a1", Provider: "a", RefreshToken: "t"}, {ID: "a2", Provider: "a", RefreshToken: "t"},
		{ID: "a3", Provider: "a", RefreshToken: "t"}, {ID: "b1", Provider: "b", RefreshToken: "t"},
	}, T0)
	day := 24 * time.Hour
	for id, in := range map[string]time.Duration{"a1": 3 * day, "a2": day, "a3": 30 * day, "b1": 2 * day} {
		set(t, s, id, func(g *store.Grant) { g.ExpiresAt, g.ExpiresBasis = T0.Add(in), store.BasisAbsolute })
	}
	expiring := func(within time.Duration, p string) []string {
		return collect(t, func(fn func(store.Grant) error) error { return s.EachExpiring(T0.Add(within), p, fn) })
	}
	if got, want := expiring(7*day, ""), []string{"a2", "a1", "b1"}; !slices.Equal(got, want) {
		t.Errorf("EachExpiring(7d) = %v, want %v (by provider, soonest first)", got, want)
	}
	if got, want := expiring(7*day, "b"), []string{"b1"}; !slices.Equal(got, want) {
		t.Errorf("EachExpiring(7d, b) = %v, want %v", got, want)
	}
	if counts, err := s.ExpiringCounts(T0.Add(7 * day)); err != nil || fmt.Sprint(counts) != fmt.Sprint(map[string]int{"a": 2, "b": 1}) {
		t.Errorf("ExpiringCounts(7d) = %v, %v; want a: 2, b: 1", counts, err)
	}
	set(t, s, "a2", func(g *store.Grant) { g.ExpiresAt = T0.Add(60 * day) })
	if _, err := s.SetToken("b1", "new", T0); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("a1"); err != nil {
		t.Fatal(err)
	}
	if got := expiring(7*day, ""); len(got) != 0 {
		t.Errorf("after a moved forecast, a new token and a removal: EachExpiring(7d) = %v, want none", got)
	}

	unread := func() []string {
		return collect(t, func(fn func(store.Grant) error) error { return s.EachUnreadable("", fn) })
	}
	set(t, s, "a2", func(g *store.Grant) { g.Unreadable = store.UnreadableAfter - 1 })
	set(t, s, "a3", func(g *store.Grant) { g.Unreadable = store.UnreadableAfter })
	if got, want := unread(), []string{"a3"}; !slices.Equal(got, want) {
		t.Errorf("EachUnreadable = %v, want %v", got, want)
	}
	if counts, err := s.UnreadableCounts(); err != nil || counts["a"] != 1 || len(counts) != 1 {
		t.Errorf("UnreadableCounts = %v, %v; want a: 1", counts, err)
	}
	set(t, s, "a3", func(g *store.Grant) { g.Unreadable = 0 })
	if got := unread(); len(got) != 0 {
		t.Errorf("after the streak ended: EachUnreadable = %v", got)
	}
}

// testForecastFieldsKept: a grant's forecast, its unreadable count and its
// token chain's consent time are stored as written; a new token chain
// (set-token) starts with a consent time and no forecast.
func testForecastFieldsKept(t *testing.T, s store.Store) {
	importGrants(t, s, newGrants(1, "p"), T0)
	if g := get(t, s, "g000"); !g.ConsentAt.Equal(T0) {
		t.Errorf("import: ConsentAt %v, want %v", g.ConsentAt, T0)
	}
	at := T0.Add(48 * time.Hour)
	set(t, s, "g000", func(g *store.Grant) {
		g.ExpiresAt, g.ExpiresBasis, g.ExpiryWarned = at, store.BasisTesting, true
		g.AnnouncedExpiresAt, g.Unreadable = at, 4
	})
	g := get(t, s, "g000")
	if !g.ExpiresAt.Equal(at) || g.ExpiresBasis != store.BasisTesting || !g.ExpiryWarned || !g.AnnouncedExpiresAt.Equal(at) || g.Unreadable != 4 {
		t.Errorf("stored %+v", g)
	}
	later := T0.Add(time.Hour)
	if _, err := s.SetToken("g000", "new", later); err != nil {
		t.Fatal(err)
	}
	g = get(t, s, "g000")
	if !g.ConsentAt.Equal(later) || !g.ExpiresAt.IsZero() || g.ExpiresBasis != "" || g.ExpiryWarned || g.Unreadable != 0 || !g.AnnouncedExpiresAt.IsZero() {
		t.Errorf("after set-token: %+v", g)
	}
}

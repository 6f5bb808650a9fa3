package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/grantwatch/grantwatch/internal/secret"
)

var (
	testKey  = bytes.Repeat([]byte{7}, KeySize)
	otherKey = bytes.Repeat([]byte{9}, KeySize)
	t0       = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
)

// openTest opens a database in a fresh temp dir and closes it at cleanup.
func openTest(t testing.TB, opts Options) *DB {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "grantwatch.db"), opts)
}

func openAt(t testing.TB, path string, opts Options) *DB {
	t.Helper()
	if opts.Key == nil {
		opts.Key = testKey
	}
	db, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func importN(t testing.TB, db *DB, n int, provider string, now time.Time) {
	t.Helper()
	gs := make([]NewGrant, n)
	for i := range gs {
		gs[i] = NewGrant{ID: fmt.Sprintf("g%04d", i), Provider: provider, RefreshToken: secret.Secret(fmt.Sprintf("rt-%d", i))}
	}
	if _, _, err := db.Import(gs, now); err != nil {
		t.Fatalf("Import: %v", err)
	}
}

func TestOpenCreatesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db := openAt(t, path, Options{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode = %o, want 600", got)
	}
	if db.Path() != path {
		t.Errorf("Path() = %q, want %q", db.Path(), path)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "x.db"), Options{Key: []byte("short")}); err == nil {
		t.Error("Open with a 5-byte key: got nil error")
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db, err := Open(path, Options{Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	importN(t, db, 3, "google", t0)
	err = db.Apply("g0001", func(cur Grant) (Change, error) {
		cur.State, cur.Cause = StateReconnectRequired, "revoked"
		cur.NextDueAt = time.Time{}
		return Change{
			Grant:    cur,
			NewToken: "rotated",
			History:  &HistoryEntry{At: t0, From: StatePending, To: StateReconnectRequired, Cause: "revoked"},
			Outbox:   []OutboxEntry{{Receiver: "pager", Payload: []byte(`{"x":1}`), CreatedAt: t0}},
			Meta:     map[string][]byte{"clock": []byte("ok")},
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantCounts, _ := db.Counts()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openAt(t, path, Options{})
	g, err := db.Get("g0001")
	if err != nil {
		t.Fatal(err)
	}
	if g.State != StateReconnectRequired || g.Cause != "revoked" || g.TokenGen != 1 || !g.CreatedAt.Equal(t0) {
		t.Errorf("grant after reopen = %+v", g)
	}
	h, _ := db.History("g0001")
	if len(h) != 2 || h[1].To != StateReconnectRequired {
		t.Errorf("history after reopen = %+v, want import + transition", h)
	}
	out, _ := db.PendingOutbox("pager", 0)
	if len(out) != 1 || string(out[0].Payload) != `{"x":1}` {
		t.Errorf("outbox after reopen = %+v", out)
	}
	if v, _ := db.GetMeta("clock"); string(v) != "ok" {
		t.Errorf("meta clock = %q, want ok", v)
	}
	gotCounts, _ := db.Counts()
	if fmt.Sprint(gotCounts) != fmt.Sprint(wantCounts) {
		t.Errorf("counts = %v, want %v", gotCounts, wantCounts)
	}
	// g0001 is out of the due index; the other two are due with their tokens.
	ls, err := db.Due(t0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].Grant.ID != "g0000" || ls[0].Token != "rt-0" || ls[1].Token != "rt-2" {
		t.Errorf("leases after reopen = %+v", ls)
	}
	// The rotated token was sealed: read it back through a lease.
	if _, err := db.SetToken("g0002", "new", t0); err != nil {
		t.Fatal(err)
	}
	var sealed []byte
	db.view(func(b *bkts) error {
		row, _, _, _ := b.lookup("g0001")
		sealed = clone(b.tokens.Get(rowKey(row)))
		return nil
	})
	if pt, err := db.open(sealed, "g0001"); err != nil || string(pt) != "rotated" {
		t.Errorf("token of g0001 = %q, %v; want rotated", pt, err)
	}
	if bytes.Contains(sealed, []byte("rotated")) {
		t.Error("token stored in clear")
	}
	if _, err := db.open(sealed, "g0000"); err == nil {
		t.Error("token of g0001 opens with another grant's id as AD")
	}
}

func TestOpenWrongKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db := openAt(t, path, Options{})
	db.Close()
	_, err := Open(path, Options{Key: otherKey})
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open with another key: err = %v, want ErrWrongKey", err)
	}
	for _, want := range []string{path, KeyFingerprint(testKey), KeyFingerprint(otherKey)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// The right key still opens it: nothing was rewritten.
	openAt(t, path, Options{})
}

func TestOpenInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	openAt(t, path, Options{})
	start := time.Now()
	_, err := Open(path, Options{Key: testKey, LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: err = %v, want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %s, want about the 100ms lock timeout", d)
	}
}

func TestOpenNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db := openAt(t, path, Options{})
	db.Close()
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	bdb.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte("2")) })
	bdb.Close()
	before, _ := os.ReadFile(path)
	fiBefore, _ := os.Stat(path)

	_, err = Open(path, Options{Key: testKey})
	if !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("Open: err = %v, want ErrNewerSchema", err)
	}
	for _, want := range []string{path, "version 2", "up to 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	after, _ := os.ReadFile(path)
	fiAfter, _ := os.Stat(path)
	if !bytes.Equal(before, after) || !fiBefore.ModTime().Equal(fiAfter.ModTime()) || fiBefore.Mode() != fiAfter.Mode() {
		t.Error("the newer-schema file was modified")
	}
}

func TestOpenCorrupt(t *testing.T) {
	// A real database with some data, to damage in different ways.
	src := filepath.Join(t.TempDir(), "src.db")
	db := openAt(t, src, Options{})
	importN(t, db, 2000, "google", t0)
	db.Close()
	good, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	garbage := bytes.Repeat([]byte("not a database "), 1000)

	tests := []struct {
		name string
		data []byte
	}{
		// Text where a database should be.
		{"garbage", garbage},
		// Cut inside the first meta page.
		{"truncated to 100 bytes", good[:100]},
		// Both meta pages kept, the data pages gone.
		{"truncated to two pages", good[:8192]},
		// Cut in the middle of the data.
		{"truncated to half", good[:len(good)/2]},
		// Meta pages zeroed: checksums fail.
		{"meta pages zeroed", append(make([]byte, 8192), good[8192:]...)},
		// A valid bbolt file that is not ours.
		{"foreign bbolt file", foreignBolt(t)},
		// Intact meta pages over scrambled data pages: bbolt panics
		// reading them, Open recovers.
		{"data pages scrambled", append(bytes.Clone(good[:8192]), scrambled(len(good)-8192)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.db")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := Open(path, Options{Key: testKey, LockTimeout: 100 * time.Millisecond})
			if err == nil {
				db.Close()
				t.Fatal("Open: nil error")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "backup") {
				t.Errorf("error %q should name the file and what to do", err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, tt.data) {
				t.Error("the damaged file was modified")
			}
			// The failed Open released the lock: a second attempt gets the
			// same answer, not ErrInUse. (Not after a panic inside bbolt's
			// Open: its mapping keeps the lock until the process exits.)
			if tt.name == "data pages scrambled" {
				return
			}
			if _, err := Open(path, Options{Key: testKey, LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("second Open: err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func scrambled(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{3}).Read(b)
	return b
}

func foreignBolt(t *testing.T) []byte {
	path := filepath.Join(t.TempDir(), "foreign.db")
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	bdb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
	bdb.Close()
	data, _ := os.ReadFile(path)
	return data
}

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

func TestReschedule(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 6, "google", t0)
	importN2 := []NewGrant{{ID: "m1", Provider: "microsoft", RefreshToken: "x"}}
	db.Import(importN2, t0)
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

func TestMeta(t *testing.T) {
	db := openTest(t, Options{})
	if v, err := db.GetMeta("absent"); v != nil || err != nil {
		t.Errorf("GetMeta(absent) = %q, %v; want nil, nil", v, err)
	}
	db.PutMeta("k", []byte("v"))
	if v, _ := db.GetMeta("k"); string(v) != "v" {
		t.Errorf("GetMeta = %q", v)
	}
	db.PutMeta("k", nil)
	if v, _ := db.GetMeta("k"); v != nil {
		t.Errorf("GetMeta after delete = %q", v)
	}
}

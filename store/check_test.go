package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkFleet fills db with grants in several states, with history, an
// outbox entry and a dead letter, and returns grant g0003.
func checkFleet(t *testing.T, db *DB) Grant {
	t.Helper()
	importN(t, db, 40, "google", t0)
	for i := 0; i < 40; i += 4 {
		id := fmt.Sprintf("g%04d", i)
		if err := db.Apply(id, func(cur Grant) (Change, error) {
			cur.State, cur.NextDueAt = StateHealthy, t0.Add(time.Duration(i)*time.Minute)
			cur.ExpiresAt, cur.ExpiresBasis = t0.Add(time.Duration(i)*time.Hour), BasisIdle
			if i == 4 {
				cur.Unreadable = UnreadableAfter
			}
			if i%8 == 0 {
				cur.State, cur.NextDueAt = StateReconnectRequired, time.Time{}
			}
			return Change{Grant: cur, NewToken: "rotated", History: &HistoryEntry{At: t0, From: StatePending, To: cur.State},
				Outbox: []OutboxEntry{{Receiver: "hook", Payload: []byte(`{}`)}}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	out, _ := db.PendingOutbox("hook", 1)
	if err := db.DeadLetter("hook", "test", out[0].Seq); err != nil {
		t.Fatal(err)
	}
	g, err := db.Get("g0003")
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		damage func(b *bkts, g Grant) error
		want   string
	}{
		{"due entry missing", func(b *bkts, g Grant) error { return b.due.Delete(dueKey(g.NextDueAt, g.Row)) },
			`due: grant "g0003" (row 4) has no entry`},
		{"due entry of no grant", func(b *bkts, g Grant) error { return b.due.Put(dueKey(t0, 9999), nil) },
			"due: entry"},
		{"state entry missing", func(b *bkts, g Grant) error { return b.byState.Delete(stateKey(g.State, g.Provider, g.Row)) },
			`bystate: grant "g0003" (row 4) has no pending entry`},
		{"state entry of another state", func(b *bkts, g Grant) error {
			return b.byState.Put(stateKey(StateHealthy, g.Provider, g.Row), nil)
		}, "bystate: entry"},
		{"expiry entry missing", func(b *bkts, g Grant) error {
			g4, _, _ := b.getRow(5) // g0004
			return b.expiry.Delete(expiryKey(g4.Provider, g4.ExpiresAt, g4.Row))
		}, `expiry: grant "g0004" (row 5) has no entry`},
		{"expiry entry of another time", func(b *bkts, g Grant) error { return b.expiry.Put(expiryKey("google", t0, 5), nil) },
			"expiry: entry"},
		{"unread entry missing", func(b *bkts, g Grant) error { return b.unread.Delete(unreadKey("google", 5)) },
			`unread: grant "g0004" (row 5) has no entry`},
		{"unread entry of no unreadable grant", func(b *bkts, g Grant) error { return b.unread.Put(unreadKey("google", g.Row), nil) },
			"unread: entry"},
		{"counter off", func(b *bkts, g Grant) error { return b.counts.Put(countKey("google", StatePending), u64(999)) },
			"counts: google/pending is 999, the grants count 30"},
		{"counter missing", func(b *bkts, g Grant) error { return b.counts.Delete(countKey("google", StateHealthy)) },
			"counts: google/healthy is missing, the grants count 5"},
		{"id missing", func(b *bkts, g Grant) error { return b.ids.Delete([]byte(g.ID)) },
			`ids: grant "g0003" (row 4) is not indexed`},
		{"id of no grant", func(b *bkts, g Grant) error { return b.ids.Put([]byte("ghost"), rowKey(9999)) },
			"ids: entry"},
		{"token missing", func(b *bkts, g Grant) error { return b.tokens.Delete(rowKey(g.Row)) },
			`tokens: grant "g0003" (row 4) has no token`},
		{"token damaged", func(b *bkts, g Grant) error {
			tok := clone(b.tokens.Get(rowKey(g.Row)))
			tok[len(tok)-1] ^= 1
			return b.tokens.Put(rowKey(g.Row), tok)
		}, `tokens: token of grant "g0003" (row 4)`},
		{"token of no grant", func(b *bkts, g Grant) error { return b.tokens.Put(rowKey(9999), []byte("x")) },
			"tokens: entry"},
		{"grant record damaged", func(b *bkts, g Grant) error { return b.grants.Put(rowKey(g.Row), []byte{0x7f}) },
			"grants: row 4"},
		{"history of no grant", func(b *bkts, g Grant) error {
			return b.history.Put(histKey(9999, 1), encodeHistory(&HistoryEntry{To: StatePending}))
		}, "history: entry 1 of row 9999"},
		{"history damaged", func(b *bkts, g Grant) error { return b.history.Put(histKey(g.Row, 1), []byte{0x7f}) },
			"history: entry 1 of row 4"},
		{"outbox entry damaged", func(b *bkts, g Grant) error { return b.outbox.Put(seqKey("hook", 99), []byte("{")) },
			"outbox: entry"},
		{"dead letter damaged", func(b *bkts, g Grant) error { return b.dead.Put(seqKey("hook", 99), []byte("{")) },
			"dead letters: entry"},
		{"import job damaged", func(b *bkts, g Grant) error { return b.imports.Put([]byte("import-1"), []byte("{")) },
			"imports: entry"},
		{"canary", func(b *bkts, g Grant) error { return b.meta.Put(keyCanary, []byte("junk")) },
			"meta: the key canary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openTest(t, Options{})
			g := checkFleet(t, db)
			if err := db.Check(context.Background()); err != nil {
				t.Fatalf("Check before the damage: %v", err)
			}
			if err := db.update(func(b *bkts) error { return tt.damage(b, g) }); err != nil {
				t.Fatal(err)
			}
			err := db.Check(context.Background())
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Check = %v, want ErrCorrupt", err)
			}
			for _, want := range []string{tt.want, db.Path(), "backup"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Check = %v\nwant it to say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "rt-3") || strings.Contains(err.Error(), "rotated") {
				t.Errorf("Check's error shows a token: %v", err)
			}
		})
	}
}

// TestCheckReportsEveryProblem: Check goes on past the first problem and
// names each; past the limit it counts the rest.
func TestCheckReportsEveryProblem(t *testing.T) {
	db := openTest(t, Options{})
	g := checkFleet(t, db)
	db.update(func(b *bkts) error {
		b.due.Delete(dueKey(g.NextDueAt, g.Row))
		b.counts.Put(countKey("google", StatePending), u64(999))
		return b.tokens.Delete(rowKey(1))
	})
	err := db.Check(context.Background())
	for _, want := range []string{`due: grant "g0003"`, "counts: google/pending is 999", `tokens: grant "g0000"`, "(3 problems;"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check = %v\nwant it to say %q", err, want)
		}
	}

	db = openTest(t, Options{})
	importN(t, db, checkProblemLimit+50, "google", t0)
	db.update(func(b *bkts) error {
		c := b.due.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.First() {
			c.Delete()
		}
		return nil
	})
	err = db.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "and 50 more problems") || !strings.Contains(err.Error(), "(150 problems;") ||
		strings.Count(err.Error(), "\ndue: grant") != checkProblemLimit {
		t.Errorf("Check with 150 problems = %v", err)
	}
}

// TestCheckPages: damage bbolt's page structure that Open does not see (a
// free page dropped from the freelist, so that it is neither reachable nor
// free) and Check finds it.
func TestCheckPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db := openAt(t, path, Options{})
	importN(t, db, 2000, "google", t0)
	var ids []string
	for i := range 1000 {
		ids = append(ids, fmt.Sprintf("g%04d", i))
	}
	if _, err := db.RemoveIDs(ids); err != nil {
		t.Fatal(err)
	}
	if err := db.Check(context.Background()); err != nil {
		t.Fatalf("Check before the damage: %v", err)
	}
	db.Close()
	dropFreePage(t, path)

	db = openAt(t, path, Options{})
	err := db.Check(context.Background())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "pages: page") || !strings.Contains(err.Error(), "unreachable unfreed") {
		t.Errorf("Check = %v, want ErrCorrupt naming an unreachable page", err)
	}
}

// dropFreePage removes the last page id from the freelist of the file's
// current meta page (bbolt internal/common/page.go: a 16-byte header of id,
// flags, count, overflow; then the page ids).
func dropFreePage(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m0, ok0 := parseBoltMeta(b)
	m1, ok1 := parseBoltMeta(b[m0.pageSize:])
	if !ok0 || (ok1 && m1.txid > m0.txid) {
		m0 = m1
	}
	off := int(m0.freelist) * int(m0.pageSize)
	count := binary.LittleEndian.Uint16(b[off+10:])
	if count == 0 || count == 0xFFFF {
		t.Fatalf("freelist holds %d ids; want some, fewer than 65535", count)
	}
	binary.LittleEndian.PutUint16(b[off+10:], count-1)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCheckCancelled(t *testing.T) {
	db := openTest(t, Options{})
	importN(t, db, 10, "google", t0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := db.Check(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, ErrCorrupt) {
		t.Errorf("Check(cancelled) = %v, want context.Canceled", err)
	}
}

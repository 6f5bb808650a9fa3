package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// checkProblemLimit is how many problems Check lists; beyond it, it counts.
const checkProblemLimit = 100

// Check verifies the whole database and returns every problem it finds,
// joined (errors.Join) under an error wrapping ErrCorrupt, or nil when there
// is none. It runs in two phases:
//
//   - pages: bbolt's consistency check (tx.Check) of the file's page
//     structure: every page reachable or free, none freed twice, B+tree
//     keys in order. It runs in a write transaction (bbolt's check reads
//     the freelist, which a concurrent writer would change), so writers
//     wait for it; readers do not.
//   - records: every grant record decodes; the id index, due index, state
//     index, expiry and unreadable indexes and counters agree with the
//     grants exactly; every grant has a token that opens with the key;
//     history, outbox, dead-letter and import-job entries decode and
//     belong to something; the schema and the canary are in place. It
//     runs in one read transaction, so writers proceed meanwhile (a file
//     that must grow waits for it).
//
// The first checkProblemLimit problems are listed, each naming the bucket,
// row or grant id (never a token); further ones are counted. ctx is checked
// between the phases and every 1024 records; bbolt's page walk, once
// started, runs to its end. A cancelled Check returns ctx's error, not
// ErrCorrupt.
func (db *DB) Check(ctx context.Context) error {
	var p problems
	if err := db.checkPages(&p); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("check %s: %w", db.path, err)
	}
	if err := db.checkRecords(ctx, &p); err != nil {
		return err
	}
	return p.err(db.path)
}

// problems collects what Check finds.
type problems struct {
	list []error
	more int
}

func (p *problems) addf(format string, args ...any) {
	if len(p.list) == checkProblemLimit {
		p.more++
		return
	}
	p.list = append(p.list, fmt.Errorf(format, args...))
}

func (p *problems) err(path string) error {
	if len(p.list) == 0 {
		return nil
	}
	errs := p.list
	if p.more > 0 {
		errs = append(errs, fmt.Errorf("and %d more problems", p.more))
	}
	return fmt.Errorf("check %s: %w (%d problems; restore it from a backup, or move it aside and re-import the grants):\n%w",
		path, ErrCorrupt, len(p.list)+p.more, errors.Join(errs...))
}

// checkPages runs bbolt's page check in a write transaction that it rolls
// back: nothing is written.
func (db *DB) checkPages(p *problems) error {
	tx, err := db.bolt.Begin(true)
	if err != nil {
		return fmt.Errorf("check %s: %w", db.path, db.writeErr(err))
	}
	defer tx.Rollback()
	// The channel is drained to its end whatever happens: the check's
	// goroutine reads the transaction's pages until it closes it.
	for e := range tx.Check() {
		p.addf("pages: %w", e)
	}
	return nil
}

// checkRecords checks the store's own invariants in one read transaction.
func (db *DB) checkRecords(ctx context.Context, p *problems) error {
	ring := db.keys.Load() // before the snapshot: it holds every key the snapshot needs
	err := db.view(func(b *bkts) error {
		for _, name := range allBuckets {
			if b.tx.Bucket(name) == nil {
				p.addf("bucket %s missing", name)
				return nil
			}
		}
		checkMeta(b, ring, p)
		want, err := checkGrants(ctx, b, ring, p)
		if err != nil {
			return err
		}
		checkIndexExtras(b, want, p)
		checkCounts(b, want.counts, p)
		if err := checkHistory(ctx, b, p); err != nil {
			return err
		}
		checkJSON(b.outbox, "outbox", func() any { return new(OutboxEntry) }, p)
		checkJSON(b.dead, "dead letters", func() any { return new(OutboxEntry) }, p)
		checkJSON(b.imports, "imports", func() any { return new(ImportJob) }, p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("check %s: %w", db.path, err)
	}
	return nil
}

func checkMeta(b *bkts, ring *keyring, p *problems) {
	if v, err := strconv.Atoi(string(b.meta.Get(keySchema))); err != nil || v != SchemaVersion {
		p.addf("meta: schema version %q, want %d", b.meta.Get(keySchema), SchemaVersion)
	}
	if c := b.meta.Get(keyCanary); c == nil || !ring.openCanary(c) {
		p.addf("meta: the key canary is missing or does not open with the key")
	}
}

// indexWant is what the grants call for in the derived buckets.
type indexWant struct {
	grants, scheduled int
	// forecast and unreadable count the grants that call for an expiry and
	// an unreadable index entry.
	forecast, unreadable int
	// missing counts the entries found missing per bucket.
	missing map[string]int
	counts  map[string]int64
}

// checkGrants reads every grant record and looks up the entries it calls
// for: its id, due and state index entries and its token, which must open.
func checkGrants(ctx context.Context, b *bkts, ring *keyring, p *problems) (indexWant, error) {
	w := indexWant{missing: map[string]int{}, counts: map[string]int64{}}
	// One cursor per bucket, reused: a Get makes a cursor each time. The
	// tokens are keyed by row as the grants are, so their cursor moves
	// along in step (a merge); the other indexes are sought.
	idsC, dueC, stateC, tokC := b.ids.Cursor(), b.due.Cursor(), b.byState.Cursor(), b.tokens.Cursor()
	expC, unreadC := b.expiry.Cursor(), b.unread.Cursor()
	tk, tv := tokC.First()
	c := b.grants.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if w.grants%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return w, err
			}
		}
		w.grants++
		if len(k) != 8 {
			p.addf("grants: key %x is not a row", k)
			continue
		}
		row := rowOf(k)
		var g Grant
		if err := decodeGrant(v, &g); err != nil {
			p.addf("grants: row %d: %w", row, err)
			continue
		}
		g.Row = row
		if !g.State.Valid() {
			p.addf("grant %q (row %d): invalid state %q", g.ID, row, g.State)
		}
		w.counts[string(countKey(g.Provider, g.State))]++
		if ik, iv := idsC.Seek([]byte(g.ID)); string(ik) != g.ID || len(iv) != 8 || rowOf(iv) != row {
			p.addf("ids: grant %q (row %d) is not indexed under its id", g.ID, row)
			w.missing["ids"]++
		}
		if !g.NextDueAt.IsZero() {
			w.scheduled++
			if !seekExact(dueC, dueKey(g.NextDueAt, row)) {
				p.addf("due: grant %q (row %d) has no entry for its due time %s", g.ID, row, g.NextDueAt.Format("2006-01-02T15:04:05Z07:00"))
				w.missing["due"]++
			}
		}
		if !seekExact(stateC, stateKey(g.State, g.Provider, row)) {
			p.addf("bystate: grant %q (row %d) has no %s entry", g.ID, row, g.State)
			w.missing["bystate"]++
		}
		exp, unread := watchKeys(&g, row)
		if exp != nil {
			w.forecast++
			if !seekExact(expC, exp) {
				p.addf("expiry: grant %q (row %d) has no entry for its forecast %s", g.ID, row, g.ExpiresAt.Format("2006-01-02T15:04:05Z07:00"))
				w.missing["expiry"]++
			}
		}
		if unread != nil {
			w.unreadable++
			if !seekExact(unreadC, unread) {
				p.addf("unread: grant %q (row %d) has no entry", g.ID, row)
				w.missing["unread"]++
			}
		}
		for tk != nil && bytes.Compare(tk, k) < 0 {
			tk, tv = tokC.Next()
		}
		if !bytes.Equal(tk, k) {
			p.addf("tokens: grant %q (row %d) has no token", g.ID, row)
			w.missing["tokens"]++
		} else if _, err := ring.openToken(&g, tv); err != nil {
			p.addf("tokens: token of grant %q (row %d): %w", g.ID, row, err)
		}
	}
	return w, nil
}

func seekExact(c *bolt.Cursor, key []byte) bool {
	k, _ := c.Seek(key)
	return bytes.Equal(k, key)
}

// checkIndexExtras finds entries that belong to no grant. A bucket is
// walked only when it holds more entries than its grants' (the found and
// the missing ones): the page statistics count keys without reading them.
func checkIndexExtras(b *bkts, w indexWant, p *problems) {
	grantOf := func(row uint64) (Grant, bool) {
		g, ok, err := b.getRow(row)
		return g, ok && err == nil
	}
	for _, c := range []struct {
		name   string
		bucket *bolt.Bucket
		want   int
		// belongs reports whether the entry is one its grant calls for.
		belongs func(k, v []byte) bool
	}{
		{"ids", b.ids, w.grants, func(k, v []byte) bool {
			g, ok := grantOf(rowOf8(v))
			return ok && g.ID == string(k)
		}},
		{"tokens", b.tokens, w.grants, func(k, _ []byte) bool {
			_, ok := grantOf(rowOf8(k))
			return ok
		}},
		{"due", b.due, w.scheduled, func(k, _ []byte) bool {
			if len(k) != 16 {
				return false
			}
			g, ok := grantOf(rowOf(k[8:]))
			return ok && !g.NextDueAt.IsZero() && bytes.Equal(dueKey(g.NextDueAt, g.Row), k)
		}},
		{"expiry", b.expiry, w.forecast, func(k, _ []byte) bool {
			if len(k) < 17 {
				return false
			}
			g, ok := grantOf(rowOf(k[len(k)-8:]))
			exp, _ := watchKeys(&g, g.Row)
			return ok && bytes.Equal(exp, k)
		}},
		{"unread", b.unread, w.unreadable, func(k, _ []byte) bool {
			if len(k) < 9 {
				return false
			}
			g, ok := grantOf(rowOf(k[len(k)-8:]))
			_, unread := watchKeys(&g, g.Row)
			return ok && bytes.Equal(unread, k)
		}},
		{"bystate", b.byState, w.grants, func(k, _ []byte) bool {
			if len(k) < 10 {
				return false
			}
			g, ok := grantOf(stateKeyRow(k))
			return ok && bytes.Equal(stateKey(g.State, g.Provider, g.Row), k)
		}},
	} {
		if c.bucket.Stats().KeyN == c.want-w.missing[c.name] {
			continue
		}
		c.bucket.ForEach(func(k, v []byte) error {
			if !c.belongs(k, v) {
				p.addf("%s: entry %x belongs to no grant", c.name, k)
			}
			return nil
		})
	}
}

// rowOf8 is rowOf for a value that may not be 8 bytes (0: no row).
func rowOf8(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return rowOf(v)
}

// checkCounts compares the counters with the grants' count.
func checkCounts(b *bkts, want map[string]int64, p *problems) {
	seen := map[string]bool{}
	b.counts.ForEach(func(k, v []byte) error {
		seen[string(k)] = true
		var n int64
		if len(v) == 8 {
			n = int64(rowOf(v))
		}
		if n != want[string(k)] {
			p.addf("counts: %s is %d, the grants count %d", countName(k), n, want[string(k)])
		}
		return nil
	})
	for k, n := range want {
		if !seen[k] {
			p.addf("counts: %s is missing, the grants count %d", countName([]byte(k)), n)
		}
	}
}

// countName prints a counter key as provider/state.
func countName(k []byte) string {
	return string(bytes.Replace(k, []byte{0}, []byte("/"), 1))
}

// checkHistory: every entry decodes and belongs to a grant's row.
func checkHistory(ctx context.Context, b *bkts, p *problems) error {
	var lastRow uint64
	exists := false
	n := 0
	grantsC, c := b.grants.Cursor(), b.history.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if len(k) != 16 {
			p.addf("history: key %x is not row ‖ seq", k)
			continue
		}
		if row := rowOf(k[:8]); row != lastRow || n == 1 {
			lastRow, exists = row, seekExact(grantsC, k[:8])
		}
		if !exists {
			p.addf("history: entry %d of row %d, which holds no grant", seqOf(k), lastRow)
			continue
		}
		var h HistoryEntry
		if err := decodeHistory(v, &h); err != nil {
			p.addf("history: entry %d of row %d: %w", seqOf(k), lastRow, err)
		}
	}
	return nil
}

// checkJSON: every value of bk decodes as JSON into a fresh newV().
func checkJSON(bk *bolt.Bucket, name string, newV func() any, p *problems) {
	bk.ForEach(func(k, v []byte) error {
		if err := json.Unmarshal(v, newV()); err != nil {
			p.addf("%s: entry %x: %w", name, k, err)
		}
		return nil
	})
}

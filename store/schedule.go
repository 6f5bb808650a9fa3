package store

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// rescheduleChunk is how many grants Reschedule moves per transaction.
var rescheduleChunk = 10_000 // a var for tests

// LeaseDue hands out up to limit grants due at or before now, earliest first,
// with their decrypted tokens. In the same transaction each one's due entry
// (and NextDueAt) moves to now+lease, so a grant whose probe result never
// arrives (crash, lost worker) is probed again after the lease rather than
// lost, and a second LeaseDue before then does not hand it out twice.
//
// The cost is O(returned grants): a range scan from the start of the due
// index, independent of how many grants are stored. limit <= 0 means no
// limit. A token that does not open is left out and named in the error,
// returned together with the leases that did open.
func (db *DB) LeaseDue(now time.Time, lease time.Duration, limit int) ([]Lease, error) {
	end := timeNanos(now)
	until := now.Add(lease)
	type leased struct {
		g      Grant
		sealed []byte
	}
	// The idle tick (nothing due) stays a read: no write lock, no commit.
	if at, ok, err := db.NextDue(); err != nil || !ok || timeNanos(at) > end {
		return nil, err
	}
	var got []leased
	err := db.update(func(b *bkts) error {
		var keys [][]byte
		c := b.due.Cursor()
		for k, _ := c.First(); k != nil && len(k) >= 8 && timeNanos(dueKeyTime(k)) <= end; k, _ = c.Next() {
			if limit > 0 && len(keys) >= limit {
				break
			}
			keys = append(keys, clone(k))
		}
		d := counterDelta{}
		got = make([]leased, 0, len(keys))
		for _, k := range keys {
			row := rowOf(k[8:])
			g, ok, err := b.getRow(row)
			if err != nil {
				return err
			}
			if !ok || timeNanos(g.NextDueAt) != timeNanos(dueKeyTime(k)) {
				// A stale entry (its grant gone or moved): drop it.
				if err := b.due.Delete(k); err != nil {
					return fmt.Errorf("drop stale due entry: %w", err)
				}
				continue // its real entry, if any, is handled on its own
			}
			old := g
			g.NextDueAt = until
			if err := b.putGrant(row, &old, &g, d); err != nil {
				return err
			}
			got = append(got, leased{g: g, sealed: clone(b.tokens.Get(rowKey(row)))})
		}
		return b.flushCounts(d)
	})
	if err != nil {
		return nil, fmt.Errorf("lease due grants from %s: %w", db.path, err)
	}
	// Decrypting after the commit keeps the write transaction short.
	// A token that does not open (a damaged page) must not hold up the
	// others: it is reported, and the rest are returned.
	out := make([]Lease, 0, len(got))
	var bad []error
	for _, l := range got {
		pt, err := db.open(l.sealed, l.g.ID)
		if err != nil {
			bad = append(bad, fmt.Errorf("open token of %q: %w", l.g.ID, err))
			continue
		}
		out = append(out, Lease{Grant: l.g, Token: secret.Secret(pt)})
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("lease due grants from %s: %w", db.path, errors.Join(bad...))
	}
	return out, nil
}

// NextDue returns the earliest due time of any grant; ok is false when no
// grant is scheduled (all are reconnect_required, or there are none).
func (db *DB) NextDue() (at time.Time, ok bool, err error) {
	err = db.view(func(b *bkts) error {
		k, _ := b.due.Cursor().First()
		if k != nil && len(k) >= 8 {
			at, ok = dueKeyTime(k), true
		}
		return nil
	})
	return at, ok, err
}

// Reschedule makes every grant in state due at at, optionally only those of
// provider and with cause (each when non-empty), and returns how many it
// moved. It walks the state index, so its cost is O(grants in state), in
// transactions of 10,000 grants: a grant entering state meanwhile may be
// missed, which callers fix by calling again. The
// daemon uses it to release on_hold grants once their provider or the clock
// is healthy again; states are left for the next probe to decide.
func (db *DB) Reschedule(at time.Time, state State, provider, cause string) (int, error) {
	prefix := statePrefix(state, provider)
	n := 0
	// Chunks of rescheduleChunk grants per transaction keep a release of the
	// whole fleet (a provider outage puts every grant on hold) from building
	// one transaction as large as the database.
	after := prefix
	var err error
	for more := true; more && err == nil; {
		err = db.update(func(b *bkts) error {
			var rows []uint64
			c := b.byState.Cursor()
			k, _ := c.Seek(after)
			if k != nil && bytes.Equal(k, after) {
				k, _ = c.Next()
			}
			for ; k != nil && bytes.HasPrefix(k, prefix) && len(rows) < rescheduleChunk; k, _ = c.Next() {
				rows = append(rows, stateKeyRow(k))
				after = clone(k)
			}
			more = len(rows) == rescheduleChunk
			d := counterDelta{}
			for _, row := range rows {
				g, ok, err := b.getRow(row)
				if err != nil {
					return err
				}
				if !ok || (cause != "" && g.Cause != cause) {
					continue
				}
				old := g
				g.NextDueAt = at
				if err := b.putGrant(row, &old, &g, d); err != nil {
					return err
				}
				n++
			}
			return b.flushCounts(d)
		})
	}
	if err != nil {
		return 0, fmt.Errorf("reschedule %s grants in %s: %w", state, db.path, err)
	}
	return n, nil
}

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

// Due returns up to limit grants due at or before now, earliest first, with
// their decrypted tokens. take, unless nil, is asked for each one first and
// reports whether the caller takes it: false passes over it (the daemon's
// grants in flight). limit <= 0 means no limit.
//
// Due is a read: it moves nothing, so it costs no write lock and no fsync,
// and a crash loses nothing — a grant stays due until a result moves its
// due entry. Keeping a grant from being handed out twice while it is probed
// is the caller's part (take).
//
// The cost is O(returned grants + passed-over ones): a range scan from the
// start of the due index, independent of how many grants are stored. A
// token that does not open is left out and named in the error, returned
// together with the grants that did open. A stale index entry (its grant
// gone, or due at another time) is passed over and removed.
func (db *DB) Due(now time.Time, limit int, take func(row uint64) bool) ([]Lease, error) {
	end := timeNanos(now)
	type due struct {
		g      Grant
		sealed []byte
	}
	var got []due
	var stale [][]byte
	ring := db.keys.Load() // before the snapshot: it holds every key the snapshot needs
	err := db.view(func(b *bkts) error {
		c := b.due.Cursor()
		for k, _ := c.First(); k != nil && len(k) >= 16 && timeNanos(dueKeyTime(k)) <= end; k, _ = c.Next() {
			if limit > 0 && len(got) >= limit {
				break
			}
			row := rowOf(k[8:])
			g, ok, err := b.getRow(row)
			if err != nil {
				return err
			}
			if !ok || timeNanos(g.NextDueAt) != timeNanos(dueKeyTime(k)) {
				stale = append(stale, clone(k))
				continue // its real entry, if any, is handled on its own
			}
			if take != nil && !take(row) {
				continue
			}
			got = append(got, due{g: g, sealed: clone(b.tokens.Get(rowKey(row)))})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan due grants in %s: %w", db.path, err)
	}
	if len(stale) > 0 {
		if err := db.dropStale(stale); err != nil {
			return nil, err
		}
	}
	// A token that does not open (a damaged page) must not hold up the
	// others: it is reported, and the rest are returned.
	out := make([]Lease, 0, len(got))
	var bad []error
	for _, l := range got {
		pt, err := ring.openToken(&l.g, l.sealed)
		if err != nil {
			bad = append(bad, fmt.Errorf("open token of %q: %w", l.g.ID, err))
			continue
		}
		out = append(out, Lease{Grant: l.g, Token: secret.Secret(pt)})
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("scan due grants in %s: %w", db.path, errors.Join(bad...))
	}
	return out, nil
}

// dropStale removes due entries found stale, each if it still is.
func (db *DB) dropStale(keys [][]byte) error {
	err := db.update(func(b *bkts) error {
		for _, k := range keys {
			g, ok, err := b.getRow(rowOf(k[8:]))
			if err != nil {
				return err
			}
			if ok && timeNanos(g.NextDueAt) == timeNanos(dueKeyTime(k)) {
				continue // a write made it current meanwhile
			}
			if err := b.due.Delete(k); err != nil {
				return fmt.Errorf("drop stale due entry: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("drop stale due entries in %s: %w", db.path, err)
	}
	return nil
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

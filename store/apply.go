package store

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Apply records a probe result for grant id. It runs in db.Batch, so the
// writes of concurrent workers share one transaction and one fsync.
//
// Apply reads the current grant and passes it to fn, which returns the Change
// to write. fn must be a pure function of cur: Batch may run it more than
// once (when another write in the same batch fails), and only the last run's
// Change is committed. Act on the outcome (log, notify) only after Apply
// returns nil. If the grant was removed meanwhile, fn is not called and the
// error wraps ErrNotFound; an error from fn is returned wrapped (errors.Is and
// errors.As see it) and nothing is written.
//
// The Change is written atomically: the grant record (its ID forced to id),
// the due entry moved from the stored NextDueAt to the new one (zero: out of
// the index), the state index and counters, the sealed NewToken if non-empty
// (a rotated token is durable exactly when the result is), the History entry
// (the oldest dropped beyond HistoryLimit), the Outbox entries (Seq assigned,
// CreatedAt defaulted to now) and the Meta entries. Change.Skip writes
// nothing.
func (db *DB) Apply(id string, fn func(cur Grant) (Change, error)) error {
	return db.bolt.Batch(func(tx *bolt.Tx) error {
		b, d := buckets(tx), counterDelta{}
		if err := db.apply(b, d, id, 0, fn); err != nil {
			return err
		}
		return b.flushCounts(d)
	})
}

// ApplyItem is one grant's result for ApplyAll.
type ApplyItem struct {
	ID string
	// Row, when known (Grant.Row of a lease), finds the grant without the id
	// index; a row that no longer holds ID falls back to it.
	Row uint64
	// Fn is Apply's fn: a pure function of the current grant. It runs once.
	Fn func(cur Grant) (Change, error)
}

// ApplyAll is Apply for many grants in one transaction and one fsync: the
// daemon's writer commits all the results its workers queued meanwhile
// (group commit). errs[i] is item i's own problem (ErrNotFound, an error of
// its Fn, a Change that cannot be written: invalid state, empty provider,
// receiver or meta key), which leaves that item unwritten and the others
// written; err is a failure of the transaction, which writes nothing. Items
// of one grant are applied in the order given.
func (db *DB) ApplyAll(items []ApplyItem) (errs []error, err error) {
	errs = make([]error, len(items))
	// In row (then id) order, the writes walk the B-trees in order and
	// share the pages they materialize. The sort is stable: results for one
	// grant are applied in the order given (the later rotated token wins).
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(items[a].Row, items[b].Row), strings.Compare(items[a].ID, items[b].ID))
	})
	err = db.update(func(b *bkts) error {
		// The counters of the whole group are written once.
		d := counterDelta{}
		for _, i := range order {
			it := items[i]
			errs[i] = db.apply(b, d, it.ID, it.Row, it.Fn)
			if errs[i] != nil && !isItemError(errs[i]) {
				return errs[i]
			}
		}
		return b.flushCounts(d)
	})
	return errs, err
}

// apply is the body of Apply and ApplyAll within a write transaction; row,
// if not 0, is where id is expected. Counter changes go to d, for the caller
// to flush.
func (db *DB) apply(b *bkts, d counterDelta, id string, row uint64, fn func(cur Grant) (Change, error)) error {
	var cur Grant
	ok := false
	var err error
	if row != 0 {
		cur, ok, err = b.getRow(row)
		ok = ok && err == nil && cur.ID == id
	}
	if !ok {
		row, cur, ok, err = b.lookup(id)
	}
	if err != nil {
		return itemError{err} // one damaged record: the others still commit
	}
	if !ok {
		return itemError{notFound(id)}
	}
	ch, err := fn(cur)
	if err != nil {
		return itemError{err}
	}
	if ch.Skip {
		return nil
	}
	cur.ID, cur.Row = id, row
	// A Change that cannot be written is its item's problem: found before
	// anything is written, it must not fail the others' transaction.
	g, err := ChangedGrant(cur, &ch)
	if err != nil {
		return itemError{err}
	}
	if err := b.putGrant(row, &cur, &g, d); err != nil {
		return err
	}
	if !ch.NewToken.IsZero() {
		if err := b.putToken(row, id, db.keys.Load().sealToken(&g, []byte(ch.NewToken.Reveal()))); err != nil {
			return err
		}
	}
	if ch.History != nil {
		if err := b.appendHistory(row, ch.History, db.historyLimit, false); err != nil {
			return err
		}
	}
	if err := b.enqueue(ch.Outbox); err != nil {
		return err
	}
	for k, v := range ch.Meta {
		if err := b.putMeta(k, v); err != nil {
			return err
		}
	}
	return nil
}

// itemError is a problem of one item of ApplyAll, found before anything of
// it was written; it does not fail the transaction. It unwraps to the
// error itself, so errors.Is(err, ErrNotFound) holds.
type itemError struct{ error }

func (e itemError) Unwrap() error { return e.error }

func isItemError(err error) bool {
	_, ok := err.(itemError)
	return ok
}

// checkChange finds what putGrant, enqueue and putMeta would refuse, before
// any of them writes.
func checkChange(g *Grant, ch *Change) error {
	if !g.State.Valid() {
		return fmt.Errorf("grant %q: invalid state %q", g.ID, g.State)
	}
	if err := checkName("provider", g.Provider); err != nil {
		return fmt.Errorf("grant %q: %w", g.ID, err)
	}
	for _, e := range ch.Outbox {
		if err := checkName("receiver", e.Receiver); err != nil {
			return fmt.Errorf("grant %q: enqueue: %w", g.ID, err)
		}
	}
	for k := range ch.Meta {
		if k == "" {
			return fmt.Errorf("grant %q: meta key is empty", g.ID)
		}
	}
	return nil
}

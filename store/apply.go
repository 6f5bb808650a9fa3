package store

import (
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
// error wraps ErrNotFound; an error from fn is returned as is and nothing is
// written.
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
		b := buckets(tx)
		row, cur, ok, err := b.lookup(id)
		if err != nil {
			return err
		}
		if !ok {
			return notFound(id)
		}
		ch, err := fn(cur)
		if err != nil {
			return err
		}
		if ch.Skip {
			return nil
		}
		g := ch.Grant
		g.ID = id
		d := counterDelta{}
		if err := b.putGrant(row, &cur, &g, d); err != nil {
			return err
		}
		if !ch.NewToken.IsZero() {
			if err := b.putToken(row, id, db.seal([]byte(ch.NewToken.Reveal()), id)); err != nil {
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
		return b.flushCounts(d)
	})
}

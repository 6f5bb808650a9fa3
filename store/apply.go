package store

import (
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Apply records a probe result for grant id. Concurrent calls share one
// transaction and one fsync (group commit, see applyQueue).
//
// Apply reads the current grant and passes it to fn, which returns the Change
// to write. fn must be a pure function of cur: it may run more than once
// (when another write in the same group fails), and only the last run's
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
	return db.applyQ.do(db, func(tx *bolt.Tx) error { return db.applyTx(tx, id, fn) })
}

func (db *DB) applyTx(tx *bolt.Tx, id string, fn func(cur Grant) (Change, error)) error {
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
}

// applyQueue is a group commit for Apply. The first caller commits its own
// write and every write that arrived meanwhile in one transaction; calls
// that arrive while it commits wait, and the first of them commits the next
// group. A group is thus as large as the previous commit was slow, and no
// call waits on a timer: bbolt's Batch waits MaxBatchDelay for every group
// that is not full, and its groups then queue on the write lock one by one,
// which held 64 workers at ~5,000 probes/s (issue 7).
type applyQueue struct {
	mu      sync.Mutex
	pending []*applyCall
	busy    bool // a leader is committing
}

type applyCall struct {
	fn   func(*bolt.Tx) error
	err  error
	lead bool          // set before done is signalled: commit the next group
	done chan struct{} // 1-buffered
}

func (q *applyQueue) do(db *DB, fn func(*bolt.Tx) error) error {
	c := &applyCall{fn: fn, done: make(chan struct{}, 1)}
	q.mu.Lock()
	q.pending = append(q.pending, c)
	lead := !q.busy
	q.busy = true
	q.mu.Unlock()
	if !lead {
		<-c.done
		if !c.lead {
			return c.err
		}
	}
	q.mu.Lock()
	n := min(len(q.pending), db.bolt.MaxBatchSize)
	if n <= 0 {
		n = len(q.pending)
	}
	group := q.pending[:n:n]
	q.pending = q.pending[n:]
	q.mu.Unlock()

	db.commitGroup(group)

	q.mu.Lock()
	if len(q.pending) > 0 {
		next := q.pending[0]
		next.lead = true
		next.done <- struct{}{}
	} else {
		q.busy = false
		q.pending = nil
	}
	q.mu.Unlock()
	return c.err
}

// commitGroup runs group in one transaction and sets each call's err. A call
// that fails is taken out and run in a transaction of its own (its result is
// its error), and the rest are run again, as bbolt's Batch does.
func (db *DB) commitGroup(group []*applyCall) {
	for len(group) > 0 {
		failed := -1
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			for i, c := range group {
				if err := safeCall(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			c := group[failed]
			c.err = db.bolt.Update(func(tx *bolt.Tx) error { return safeCall(c.fn, tx) })
			c.finish()
			group = append(group[:failed:failed], group[failed+1:]...)
			continue
		}
		for _, c := range group {
			c.err = err
			c.finish()
		}
		return
	}
}

// finish wakes a waiting caller; the leader's own call needs no wake-up, and
// the buffered channel makes that harmless.
func (c *applyCall) finish() {
	select {
	case c.done <- struct{}{}:
	default:
	}
}

// safeCall turns a panic in fn into an error, so that one bad write cannot
// leave the other callers of its group waiting forever.
func safeCall(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errors.Join(errPanic, fmt.Errorf("%v", p))
		}
	}()
	return fn(tx)
}

var errPanic = errors.New("panic in apply")

package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

func (b *bkts) enqueue(entries []OutboxEntry) error {
	now := time.Now()
	for i := range entries {
		e := entries[i] // the caller's slice is not modified: Batch may rerun
		if err := checkName("receiver", e.Receiver); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
		if e.Seq == 0 {
			seq, err := b.outbox.NextSequence()
			if err != nil {
				return fmt.Errorf("enqueue: %w", err)
			}
			e.Seq = seq
		} else if e.Seq > b.outbox.Sequence() {
			if err := b.outbox.SetSequence(e.Seq); err != nil {
				return fmt.Errorf("enqueue: %w", err)
			}
		}
		if e.CreatedAt.IsZero() {
			e.CreatedAt = now
		}
		v, err := json.Marshal(&e)
		if err != nil {
			return fmt.Errorf("enqueue: encode: %w", err)
		}
		if err := b.outbox.Put(seqKey(e.Receiver, e.Seq), v); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
	}
	return nil
}

// Enqueue adds entries to the outbox. A zero Seq is assigned from the
// outbox's sequence (increasing across receivers), a zero CreatedAt set to
// now. Entries written with a transition go through Change.Outbox instead,
// in the transition's transaction.
func (db *DB) Enqueue(entries ...OutboxEntry) error {
	return db.update(func(b *bkts) error { return b.enqueue(entries) })
}

// PendingOutbox returns up to limit (<= 0: all) of receiver's entries in Seq
// order, a range scan of that receiver's keys.
func (db *DB) PendingOutbox(receiver string, limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := db.view(func(b *bkts) error {
		prefix := seqPrefix(receiver)
		c := b.outbox.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			var e OutboxEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode outbox entry %d of %q: %w", seqOf(k), receiver, err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// UpdateOutbox stores the delivery bookkeeping of existing entries
// (Attempts, NextAttemptAt, LastError, NotificationID), found by Receiver and
// Seq; the rest of the stored entry is kept. Entries no longer in the outbox
// (acknowledged or dead-lettered meanwhile) are ignored.
func (db *DB) UpdateOutbox(entries ...OutboxEntry) error {
	return db.update(func(b *bkts) error {
		for _, u := range entries {
			k := seqKey(u.Receiver, u.Seq)
			v := b.outbox.Get(k)
			if v == nil {
				continue
			}
			var e OutboxEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode outbox entry %d of %q: %w", u.Seq, u.Receiver, err)
			}
			e.Attempts, e.NextAttemptAt, e.LastError, e.NotificationID = u.Attempts, u.NextAttemptAt, u.LastError, u.NotificationID
			nv, err := json.Marshal(&e)
			if err != nil {
				return fmt.Errorf("encode outbox entry: %w", err)
			}
			if err := b.outbox.Put(k, nv); err != nil {
				return fmt.Errorf("update outbox entry %d of %q: %w", u.Seq, u.Receiver, err)
			}
		}
		return nil
	})
}

// AckOutbox deletes entries the receiver accepted. Unknown seqs are ignored.
func (db *DB) AckOutbox(receiver string, seqs ...uint64) error {
	return db.update(func(b *bkts) error {
		for _, s := range seqs {
			if err := b.outbox.Delete(seqKey(receiver, s)); err != nil {
				return fmt.Errorf("ack outbox entry %d of %q: %w", s, receiver, err)
			}
		}
		return nil
	})
}

// DeadLetter moves entries out of the outbox into the dead-letter bucket,
// with reason and the time in DeadReason and DeadAt. Unknown seqs are
// ignored.
func (db *DB) DeadLetter(receiver, reason string, seqs ...uint64) error {
	now := time.Now()
	return db.update(func(b *bkts) error {
		for _, s := range seqs {
			k := seqKey(receiver, s)
			v := b.outbox.Get(k)
			if v == nil {
				continue
			}
			var e OutboxEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode outbox entry %d of %q: %w", s, receiver, err)
			}
			e.DeadReason, e.DeadAt = reason, now
			nv, err := json.Marshal(&e)
			if err != nil {
				return fmt.Errorf("encode outbox entry: %w", err)
			}
			if err := b.dead.Put(k, nv); err != nil {
				return fmt.Errorf("dead-letter entry %d of %q: %w", s, receiver, err)
			}
			if err := b.outbox.Delete(k); err != nil {
				return fmt.Errorf("dead-letter entry %d of %q: %w", s, receiver, err)
			}
		}
		return nil
	})
}

// DeadLetters calls fn for each dead-lettered entry, by receiver then Seq,
// inside a read transaction: fn must not call DB write methods.
func (db *DB) DeadLetters(fn func(OutboxEntry) error) error {
	return db.view(func(b *bkts) error {
		return b.dead.ForEach(func(k, v []byte) error {
			var e OutboxEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode dead letter %d: %w", seqOf(k), err)
			}
			return fn(e)
		})
	})
}

// OutboxStats returns the number of pending entries across receivers and
// the oldest one's CreatedAt (zero when the outbox is empty). The oldest is
// found from each receiver's first entry, so the cost is O(receivers) seeks
// plus bbolt's page walk for the count.
func (db *DB) OutboxStats() (pending int, oldest time.Time, err error) {
	err = db.view(func(b *bkts) error {
		pending = b.outbox.Stats().KeyN
		c := b.outbox.Cursor()
		for k, v := c.First(); k != nil; {
			var e OutboxEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode outbox entry %d: %w", seqOf(k), err)
			}
			if oldest.IsZero() || e.CreatedAt.Before(oldest) {
				oldest = e.CreatedAt
			}
			// Skip to the next receiver: its keys start after receiver ‖ 1.
			next := append(clone(k[:len(k)-9]), 1)
			k, v = c.Seek(next)
		}
		return nil
	})
	return pending, oldest, err
}

// Redeliver moves dead-lettered entries of receiver back into the outbox, to
// be sent as if new: CreatedAt now (so max_age counts again), no attempts,
// due at once. The notification id is kept, so a receiver that did get an
// earlier attempt can tell. No seqs means every dead letter of receiver;
// unknown seqs are ignored. It returns how many entries moved.
func (db *DB) Redeliver(receiver string, seqs []uint64, now time.Time) (int, error) {
	n := 0
	err := db.update(func(b *bkts) error {
		var keys [][]byte
		if len(seqs) == 0 {
			prefix := seqPrefix(receiver)
			c := b.dead.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				keys = append(keys, clone(k))
			}
		} else {
			for _, s := range seqs {
				keys = append(keys, seqKey(receiver, s))
			}
		}
		for _, k := range keys {
			v := b.dead.Get(k)
			if v == nil {
				continue
			}
			var e OutboxEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode dead letter %d of %q: %w", seqOf(k), receiver, err)
			}
			e.CreatedAt, e.Attempts, e.NextAttemptAt, e.LastError = now, 0, time.Time{}, ""
			e.DeadReason, e.DeadAt = "", time.Time{}
			nv, err := json.Marshal(&e)
			if err != nil {
				return fmt.Errorf("encode outbox entry: %w", err)
			}
			if err := b.outbox.Put(k, nv); err != nil {
				return fmt.Errorf("redeliver entry %d of %q: %w", e.Seq, receiver, err)
			}
			if err := b.dead.Delete(k); err != nil {
				return fmt.Errorf("redeliver entry %d of %q: %w", e.Seq, receiver, err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

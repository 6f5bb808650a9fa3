package etcd

// Writes: optimistic transactions within etcd's limits.
//
// A write reads what it needs (the grants it touches, the counters, a
// sequence) into a view, builds units from it, and commits the units. A
// unit is what must land together: every write of one grant (its record,
// due entry, state index entry, history, outbox entries and meta), with
// the keys it depends on (the grant's key, compared at the revision it was
// read at) and the counters and sequences it moves. Units are packed in
// order into as few transactions as etcd's limits allow, and the
// transactions are committed one after the other:
//
//   - at most maxOps operations and maxOps comparisons per transaction
//     (etcd's --max-txn-ops, 128 by default);
//   - at most maxBytes of keys and values per transaction, well below
//     etcd's --max-request-bytes (1.5 MiB by default), leaving room for
//     the comparisons and the request's framing;
//   - no key written twice in one transaction (etcd refuses it).
//
// A unit is never split: one grant's result is atomic. A group of units is
// atomic only when it fits one transaction; a larger one lands transaction
// by transaction, in order. Each transaction compares the counters and
// sequences it moves at the revision the previous one left them, so a
// concurrent write anywhere in them fails the comparison: the write then
// reads again and rebuilds the units not yet committed (running ApplyAll's
// functions again, which is why they must be pure), up to maxAttempts
// times.

import (
	"errors"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	maxOps      = 128
	maxBytes    = 1 << 20
	maxAttempts = 20
	// opOverhead is counted per operation besides its key and value.
	opOverhead = 32
)

// errConflict is a transaction whose comparison failed: something it read
// changed meanwhile.
var errConflict = errors.New("concurrent write")

// kv is a key as read: value and mod revision (0: absent).
type kv struct {
	val []byte
	rev int64
}

// view is what a write read, and then wrote: key → kv.
type view map[string]kv

// unit is writes that land together (see above).
type unit struct {
	items []int    // the items it writes: indexes into the slice write built it from
	note  int      // the writer's note (an import's created or replaced)
	tags  []int    // the writer's own indexes of its items (ApplyAll's)
	deps  []string // keys compared at their revision in the view
	ops   []clientv3.Op
	keys  map[string]bool // keys its operations write
	size  int
	// writes are the values it writes to keys of the view (nil: deleted),
	// to update the view after the commit.
	writes map[string][]byte
	deltas map[string]int64  // counter key → change
	sets   map[string]uint64 // sequence key → its value after this unit
}

func newUnit() *unit {
	return &unit{keys: map[string]bool{}, writes: map[string][]byte{}}
}

func (u *unit) put(key, val string) {
	u.ops = append(u.ops, clientv3.OpPut(key, val))
	u.keys[key] = true
	u.size += len(key) + len(val) + opOverhead
}

func (u *unit) del(key string) {
	u.ops = append(u.ops, clientv3.OpDelete(key))
	u.keys[key] = true
	u.size += len(key) + opOverhead
}

// delRange deletes [from, to).
func (u *unit) delRange(from, to string) {
	u.ops = append(u.ops, clientv3.OpDelete(from, clientv3.WithRange(to)))
	u.keys[from] = true
	u.size += len(from) + len(to) + opOverhead
}

func (u *unit) delta(key string, n int64) {
	if u.deltas == nil {
		u.deltas = map[string]int64{}
	}
	u.deltas[key] += n
}

func (u *unit) set(key string, v uint64) {
	if u.sets == nil {
		u.sets = map[string]uint64{}
	}
	u.sets[key] = v
}

// opCount is the unit's operations, counters and sequences included.
func (u *unit) opCount() int { return len(u.ops) + len(u.deltas) + len(u.sets) }

// tooLarge is the error for a unit no transaction can hold.
func (u *unit) tooLarge() error {
	if u.opCount() > maxOps-1 || len(u.deps)+len(u.deltas)+len(u.sets) > maxOps-1 {
		return fmt.Errorf("%d writes for one grant: more than one etcd transaction holds (%d operations)", u.opCount(), maxOps)
	}
	if u.size > maxBytes {
		return fmt.Errorf("%d bytes for one grant: more than one etcd transaction holds (%d)", u.size, maxBytes)
	}
	return nil
}

// batch is units packed into one transaction.
type batch struct {
	units []*unit
	ops   int
	size  int
	deps  map[string]bool
	keys  map[string]bool
	accs  map[string]bool // counters and sequences
	seqs  map[string]bool // the sequences among them
}

func newBatch() *batch {
	return &batch{deps: map[string]bool{}, keys: map[string]bool{}, accs: map[string]bool{}, seqs: map[string]bool{}}
}

// fits reports whether u can join the batch.
func (b *batch) fits(u *unit) bool {
	if len(b.units) == 0 {
		return true
	}
	newAccs, newDeps := 0, 0
	for k := range u.deltas {
		if !b.accs[k] {
			newAccs++
		}
	}
	for k := range u.sets {
		if !b.accs[k] {
			newAccs++
		}
	}
	for _, k := range u.deps {
		if !b.deps[k] {
			newDeps++
		}
	}
	if b.ops+len(u.ops)+len(b.accs)+newAccs > maxOps ||
		len(b.deps)+newDeps+len(b.accs)+newAccs+1 > maxOps || // +1: the fence
		b.size+u.size > maxBytes {
		return false
	}
	for k := range u.keys {
		if b.keys[k] {
			return false
		}
	}
	return true
}

func (b *batch) add(u *unit) {
	b.units = append(b.units, u)
	b.ops += len(u.ops)
	b.size += u.size
	for _, k := range u.deps {
		b.deps[k] = true
	}
	for k := range u.keys {
		b.keys[k] = true
	}
	for k := range u.deltas {
		b.accs[k] = true
	}
	for k := range u.sets {
		b.accs[k], b.seqs[k] = true, true
	}
}

// txn builds the comparisons and operations of the batch on view v, and
// returns the values the counters and sequences get.
func (b *batch) txn(v view) ([]clientv3.Cmp, []clientv3.Op, map[string][]byte) {
	var cmps []clientv3.Cmp
	for k := range b.deps {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", v[k].rev))
	}
	var ops []clientv3.Op
	for _, u := range b.units {
		ops = append(ops, u.ops...)
	}
	accs := map[string][]byte{}
	for k := range b.accs {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", v[k].rev))
		var val []byte
		if b.seqs[k] {
			var seq uint64
			for _, u := range b.units {
				if s, ok := u.sets[k]; ok {
					seq = s
				}
			}
			val = []byte(strconv.FormatUint(seq, 10))
		} else {
			n, _ := strconv.ParseInt(string(v[k].val), 10, 64)
			for _, u := range b.units {
				n += u.deltas[k]
			}
			if n != 0 {
				val = []byte(strconv.FormatInt(n, 10))
			}
		}
		accs[k] = val
		if val == nil {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(val)))
		}
	}
	return cmps, ops, accs
}

// commit writes units in order in as few transactions as the limits allow
// and returns how many units were committed. On an error the rest are
// not: errConflict (a comparison failed: read again, rebuild them),
// ErrFenced, or the request's error. v is updated with what each
// transaction wrote, so the next one compares the revisions it left.
func (s *Store) commit(v view, units []*unit) (int, error) {
	done := 0
	for done < len(units) {
		b := newBatch()
		for _, u := range units[done:] {
			if !b.fits(u) {
				break
			}
			b.add(u)
		}
		cmps, ops, accs := b.txn(v)
		rev, err := s.txn(cmps, ops)
		if err != nil {
			return done, err
		}
		for _, u := range b.units {
			for k, val := range u.writes {
				if val == nil {
					v[k] = kv{}
				} else {
					v[k] = kv{val: val, rev: rev}
				}
			}
		}
		for k, val := range accs {
			if val == nil {
				v[k] = kv{}
			} else {
				v[k] = kv{val: val, rev: rev}
			}
		}
		done += len(b.units)
	}
	return done, nil
}

// txn commits one transaction with the fence's comparison added. A failed
// comparison is ErrFenced when the fence no longer holds, else errConflict.
func (s *Store) txn(cmps []clientv3.Cmp, ops []clientv3.Op) (int64, error) {
	f := s.fence.Load()
	var orElse []clientv3.Op
	if f != nil {
		cmps = append(cmps, f.cmp())
		orElse = append(orElse, clientv3.OpGet(f.Key))
	}
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(orElse...).Commit()
	if err != nil {
		return 0, s.unreachable("write to", err)
	}
	if !resp.Succeeded {
		if f != nil && !f.holds(resp.Responses[0].GetResponseRange()) {
			return 0, fmt.Errorf("write to %s: %w", s.where, ErrFenced)
		}
		return 0, errConflict
	}
	return resp.Header.Revision, nil
}

// read fills a view with keys and with every key under prefixes, in
// read-only transactions (linearizable) of up to maxOps reads each.
func (s *Store) read(keys []string, prefixes ...string) (view, error) {
	v := view{}
	ops := make([]clientv3.Op, 0, len(keys)+len(prefixes))
	for _, p := range prefixes {
		ops = append(ops, clientv3.OpGet(p, clientv3.WithPrefix()))
	}
	for _, k := range keys {
		ops = append(ops, clientv3.OpGet(k))
	}
	for len(ops) > 0 {
		n := min(len(ops), maxOps)
		ctx, cancel := s.ctx()
		resp, err := s.cli.Txn(ctx).Then(ops[:n]...).Commit()
		cancel()
		if err != nil {
			return nil, s.unreachable("read from", err)
		}
		for _, r := range resp.Responses {
			for _, x := range r.GetResponseRange().Kvs {
				v[string(x.Key)] = kv{val: x.Value, rev: x.ModRevision}
			}
		}
		ops = ops[n:]
	}
	return v, nil
}

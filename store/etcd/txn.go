package etcd

// Writes: optimistic transactions within etcd's limits.
//
// A write reads what it needs (the grants it touches, the counters) into a
// view, builds units from it, and commits the units. A unit is what must
// land together: every write of one grant (its record, due entry, state
// index entry, history, outbox entries and meta), with the keys it depends
// on (the grant's key, compared at the revision it was read at) and the
// counters it moves. Units are packed into as few transactions as etcd's
// limits allow:
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
// by transaction, up to `parallel` of them in flight at once (etcd batches
// concurrent proposals into one raft round and one fsync, which is most of
// its throughput). So that concurrent transactions do not conflict on the
// per-state counters, each counter is kept in counterShards keys (Counts
// sums them) and each transaction in flight moves a shard of its own.
// Sequences (outbox Seq, rows) are reserved before the units are built
// (reserve), so no transaction of the units moves them.
//
// A transaction whose comparison fails (a grant written meanwhile) lands
// nothing: its units are built again from a fresh read (running ApplyAll's
// functions again, which is why they must be pure), up to maxAttempts
// times.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	maxOps      = 128
	maxBytes    = 1 << 20
	maxAttempts = 20
	// opOverhead is counted per operation besides its key and value.
	opOverhead = 32
	// parallel is how many transactions of one write are in flight.
	parallel = 32
	// counterShards is how many keys each counter is kept in; at least
	// parallel.
	counterShards = 32
)

// errConflict is a transaction whose comparison failed: something it read
// changed meanwhile.
var errConflict = errors.New("concurrent write")

// kv is a key as read: value and mod revision (0: absent).
type kv struct {
	val []byte
	rev int64
}

// view is what a write read, and then wrote. Safe for concurrent use.
type view struct {
	mu sync.Mutex
	m  map[string]kv
}

func newView() *view { return &view{m: map[string]kv{}} }

func (v *view) get(k string) kv {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[k]
}

func (v *view) set(k string, x kv) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.m[k] = x
}

// under returns the keys of the view under prefix.
func (v *view) under(prefix string) map[string]kv {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string]kv{}
	for k, x := range v.m {
		if strings.HasPrefix(k, prefix) {
			out[k] = x
		}
	}
	return out
}

// unit is writes that land together (see above).
type unit struct {
	items []int // the items it writes: indexes into the slice write built it from
	// created and replaced count an import's grants.
	created, replaced int
	tags              []int    // the writer's own indexes of its items (ApplyAll's)
	deps              []string // keys compared at their revision in the view
	ops               []clientv3.Op
	keys              map[string]bool // keys its operations write
	size              int
	// writes are the values it writes to keys of the view (nil: deleted),
	// to update the view after the commit.
	writes map[string][]byte
	deltas map[string]int64 // counter (countKey) → change
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

// tooLarge is the error for a unit no transaction can hold.
func (u *unit) tooLarge() error {
	if n := len(u.ops) + len(u.deltas); n > maxOps-1 || len(u.deps)+len(u.deltas) > maxOps-1 {
		return fmt.Errorf("%d writes for one grant: more than one etcd transaction holds (%d operations)", n, maxOps)
	}
	if u.size > maxBytes {
		return fmt.Errorf("%d bytes for one grant: more than one etcd transaction holds (%d)", u.size, maxBytes)
	}
	return nil
}

// batch is units packed into one transaction.
type batch struct {
	units    []int // indexes into the units being committed
	ops      int
	size     int
	deps     map[string]bool
	keys     map[string]bool
	counters map[string]bool
}

func newBatch() *batch {
	return &batch{deps: map[string]bool{}, keys: map[string]bool{}, counters: map[string]bool{}}
}

// fits reports whether u can join the batch.
func (b *batch) fits(u *unit) bool {
	if len(b.units) == 0 {
		return true
	}
	newCounters, newDeps := 0, 0
	for k := range u.deltas {
		if !b.counters[k] {
			newCounters++
		}
	}
	for _, k := range u.deps {
		if !b.deps[k] {
			newDeps++
		}
	}
	counters := len(b.counters) + newCounters
	if b.ops+len(u.ops)+counters > maxOps ||
		len(b.deps)+newDeps+counters+1 > maxOps || // +1: the fence
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

func (b *batch) add(i int, u *unit) {
	b.units = append(b.units, i)
	b.ops += len(u.ops)
	b.size += u.size
	for _, k := range u.deps {
		b.deps[k] = true
	}
	for k := range u.keys {
		b.keys[k] = true
	}
	for k := range u.deltas {
		b.counters[k] = true
	}
}

// shardKey is counter k's shard.
func shardKey(k string, shard int) string { return k + "\x00" + strconv.Itoa(shard) }

// pack packs units, in order, into batches.
func pack(units []*unit) []*batch {
	var bs []*batch
	b := newBatch()
	for i, u := range units {
		if !b.fits(u) {
			bs = append(bs, b)
			b = newBatch()
		}
		b.add(i, u)
	}
	if len(b.units) > 0 {
		bs = append(bs, b)
	}
	return bs
}

// commit writes units in as few transactions as the limits allow, up to
// parallel at once, and reports which landed. err is the first failure:
// errConflict (a comparison failed: read again and rebuild the units not
// landed), ErrFenced, or the request's error. v is updated with what each
// transaction wrote.
func (s *Store) commit(v *view, units []*unit) ([]bool, error) {
	landed := make([]bool, len(units))
	batches := pack(units)
	shards := make(chan int, counterShards)
	for i := range counterShards {
		shards <- (i + s.shardOffset()) % counterShards
	}
	sem := make(chan struct{}, parallel)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, b := range batches {
		mu.Lock()
		failed := firstErr != nil && !errors.Is(firstErr, errConflict)
		mu.Unlock()
		if failed {
			break // the cluster refused: do not pile more requests on it
		}
		sem <- struct{}{}
		shard := <-shards
		wg.Go(func() {
			defer func() { shards <- shard; <-sem }()
			err := s.commitBatch(v, units, b, shard)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil || errors.Is(firstErr, errConflict) {
					firstErr = err
				}
				return
			}
			for _, i := range b.units {
				landed[i] = true
			}
		})
	}
	wg.Wait()
	return landed, firstErr
}

// commitBatch commits one batch, moving its counters in shard.
func (s *Store) commitBatch(v *view, units []*unit, b *batch, shard int) error {
	var cmps []clientv3.Cmp
	for k := range b.deps {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", v.get(k).rev))
	}
	var ops []clientv3.Op
	for _, i := range b.units {
		ops = append(ops, units[i].ops...)
	}
	counters := map[string][]byte{}
	for k := range b.counters {
		sk := shardKey(k, shard)
		cur := v.get(sk)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(sk), "=", cur.rev))
		n, _ := strconv.ParseInt(string(cur.val), 10, 64)
		for _, i := range b.units {
			n += units[i].deltas[k]
		}
		var val []byte
		if n != 0 {
			val = []byte(strconv.FormatInt(n, 10))
			ops = append(ops, clientv3.OpPut(sk, string(val)))
		} else {
			ops = append(ops, clientv3.OpDelete(sk))
		}
		counters[sk] = val
	}
	rev, err := s.txn(cmps, ops)
	if err != nil {
		return err
	}
	update := func(k string, val []byte) {
		if val == nil {
			v.set(k, kv{})
		} else {
			v.set(k, kv{val: val, rev: rev})
		}
	}
	for _, i := range b.units {
		for k, val := range units[i].writes {
			update(k, val)
		}
	}
	for k, val := range counters {
		update(k, val)
	}
	return nil
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
// read-only transactions (linearizable) of up to maxOps reads each, up to
// parallel at once.
func (s *Store) read(keys []string, prefixes ...string) (*view, error) {
	v := newView()
	ops := make([]clientv3.Op, 0, len(keys)+len(prefixes))
	for _, p := range prefixes {
		ops = append(ops, clientv3.OpGet(p, clientv3.WithPrefix()))
	}
	for _, k := range keys {
		ops = append(ops, clientv3.OpGet(k))
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, parallel)
	for len(ops) > 0 {
		chunk := ops[:min(len(ops), maxOps)]
		ops = ops[len(chunk):]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := s.ctx()
			resp, err := s.cli.Txn(ctx).Then(chunk...).Commit()
			cancel()
			if err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, s.unreachable("read from", err))
				mu.Unlock()
				return
			}
			for _, r := range resp.Responses {
				for _, x := range r.GetResponseRange().Kvs {
					v.set(string(x.Key), kv{val: x.Value, rev: x.ModRevision})
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return v, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// reserve takes n numbers of the sequence under key (the outbox's Seq,
// rows) and returns the first; the sequence is raised to at least atLeast
// first. A reservation whose writes then fail leaves a gap, which no reader
// minds.
func (s *Store) reserve(key string, n int, atLeast uint64) (uint64, error) {
	for attempt := 0; ; attempt++ {
		v, err := s.read([]string{key})
		if err != nil {
			return 0, err
		}
		cur := v.get(key)
		base := max(parseUint(cur.val), atLeast)
		_, err = s.txn([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", cur.rev)},
			[]clientv3.Op{clientv3.OpPut(key, strconv.FormatUint(base+uint64(n), 10))})
		if err == nil {
			return base + 1, nil
		}
		if !errors.Is(err, errConflict) || attempt == maxAttempts {
			return 0, fmt.Errorf("reserve %s: %w", key, err)
		}
	}
}

// raise sets the number under key to at least to.
func (s *Store) raise(key string, to uint64) error {
	_, err := s.reserve(key, 0, to)
	return err
}

// shardOffset spreads the counter shards writers start with.
func (s *Store) shardOffset() int { return rand.IntN(counterShards) }

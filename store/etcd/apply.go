package etcd

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/grantwatch/grantwatch/store"
)

// Apply records one probe result (store.Store.Apply).
func (s *Store) Apply(id string, fn func(cur store.Grant) (store.Change, error)) error {
	errs, err := s.ApplyAll([]store.ApplyItem{{ID: id, Fn: fn}})
	if err != nil {
		return err
	}
	return errs[0]
}

// applied is one grant's items of an ApplyAll folded together: each Fn ran
// on the record the one before left.
type applied struct {
	orig    record
	cur     record
	items   []int // indexes into rest
	changed bool
	hist    []store.HistoryEntry
	outbox  []store.OutboxEntry
	meta    map[string][]byte
}

// ApplyAll stores a group of results (store.Store.ApplyAll). The items of
// one grant become one unit (txn.go): its record, due and state index
// entries, rotated token, history, outbox entries and meta land in one
// transaction, which compares the grant's revision with the one its Fn
// saw. A group that fits one transaction is atomic as a whole; a larger
// one lands a transaction at a time, in order of each grant's first item,
// and the failure of a later transaction is reported in its items' errs.
func (s *Store) ApplyAll(items []store.ApplyItem) ([]error, error) {
	errs := make([]error, len(items))
	skipped := make([]bool, len(items)) // nothing to write: settled
	idx := make([]int, len(items))
	for i := range idx {
		idx[i] = i
	}
	outboxSeq := s.seqKey("outbox")
	// The first attempt takes the records the due scan read (the seen
	// cache) instead of reading them again; a retry reads them all.
	var cached map[string]kv
	committed, err := write(s, "store results", idx,
		func(rest []int) []string {
			var keys []string
			if cached == nil {
				ids := make([]string, len(rest))
				for j, i := range rest {
					ids[j] = items[i].ID
				}
				cached = s.seen.take(s, ids)
			} else {
				cached = map[string]kv{}
			}
			for _, i := range rest {
				if k := s.grantKey(items[i].ID); cached[k].rev == 0 {
					keys = append(keys, k)
				}
			}
			return keys
		},
		[]string{s.countPrefix()},
		func(v *view, rest []int, _ []*unit) ([]*unit, error) {
			for k, x := range cached {
				v.set(k, x)
			}
			byID := map[string]*applied{}
			var order []*applied
			for ri, i := range rest {
				it := items[i]
				errs[i], skipped[i] = nil, false
				a := byID[it.ID]
				if a == nil {
					r, ok, err := s.recordIn(v, it.ID)
					if err != nil {
						errs[i] = err
						continue
					}
					if !ok {
						errs[i] = notFound(it.ID)
						continue
					}
					a = &applied{orig: r, cur: r, meta: map[string][]byte{}}
					byID[it.ID] = a
					order = append(order, a)
				}
				ch, err := it.Fn(a.cur.g)
				if err != nil {
					errs[i] = fmt.Errorf("grant %q: %w", it.ID, err)
					continue
				}
				if ch.Skip {
					skipped[i] = true
					continue
				}
				g, err := store.ChangedGrant(a.cur.g, &ch)
				if err != nil {
					errs[i] = err
					continue
				}
				if !ch.NewToken.IsZero() {
					a.cur.sealed = s.sealer.SealToken(&g, []byte(ch.NewToken.Reveal()))
				}
				a.cur.g = g
				if ch.History != nil {
					a.hist = append(a.hist, *ch.History)
				}
				a.outbox = append(a.outbox, ch.Outbox...)
				maps.Copy(a.meta, ch.Meta)
				a.items = append(a.items, ri)
				a.changed = true
			}
			// Seqs for the entries, taken before anything is written.
			need, atLeast := 0, uint64(0)
			for _, a := range order {
				for _, e := range a.outbox {
					if e.Seq == 0 {
						need++
					}
					atLeast = max(atLeast, e.Seq)
				}
			}
			var seq uint64
			if need > 0 || atLeast > 0 {
				first, err := s.reserve(outboxSeq, need, atLeast)
				if err != nil {
					return nil, err
				}
				seq = first - 1
			}
			now := time.Now()
			var units []*unit
			for _, a := range order {
				if !a.changed {
					continue
				}
				u := newUnit()
				u.items = a.items
				for _, ri := range a.items {
					u.tags = append(u.tags, rest[ri])
				}
				s.writeGrant(u, &a.orig, &a.cur, a.hist)
				for _, e := range a.outbox {
					var err error
					if seq, err = s.putOutbox(u, e, seq, now); err != nil {
						return nil, err
					}
				}
				for _, k := range slices.Sorted(maps.Keys(a.meta)) {
					if val := a.meta[k]; val == nil {
						u.del(s.metaKey(k))
					} else {
						u.put(s.metaKey(k), string(val))
					}
				}
				if err := u.tooLarge(); err != nil {
					for _, ri := range a.items {
						errs[rest[ri]] = fmt.Errorf("grant %q: %w", a.cur.g.ID, err)
					}
					continue
				}
				units = append(units, u)
			}
			return units, nil
		})
	if err == nil {
		return errs, nil
	}
	if len(committed) == 0 {
		return errs, err
	}
	// Some landed: the others failed with err.
	landed := map[int]bool{}
	for _, u := range committed {
		for _, i := range u.tags {
			landed[i] = true
		}
	}
	for i := range errs {
		if errs[i] == nil && !landed[i] && !skipped[i] {
			errs[i] = err
		}
	}
	return errs, nil
}

// putOutbox adds e to u under the next Seq after seq (or its own, when it
// has one above) and returns the Seq it got.
func (s *Store) putOutbox(u *unit, e store.OutboxEntry, seq uint64, now time.Time) (uint64, error) {
	if err := store.CheckName("receiver", e.Receiver); err != nil {
		return seq, fmt.Errorf("enqueue: %w", err)
	}
	if e.Seq == 0 {
		seq++
		e.Seq = seq
	} else {
		seq = max(seq, e.Seq)
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now
	}
	v, err := json.Marshal(&e)
	if err != nil {
		return seq, fmt.Errorf("enqueue: encode: %w", err)
	}
	u.put(s.outboxKey(false, e.Receiver, e.Seq), string(v))
	return seq, nil
}

// seenCache holds grant records the due scan read, with their revisions,
// until the results of their probes are stored: ApplyAll compares a
// grant's revision, and the scan has just read it. A stale entry costs a
// failed comparison and a fresh read, nothing else. It is bounded: when
// full it starts over.
type seenCache struct {
	mu sync.Mutex
	m  map[string]kv
}

const seenMax = 16384

func (c *seenCache) put(k string, x kv) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= seenMax {
		c.m = make(map[string]kv, 1024)
	}
	c.m[k] = x
}

// take removes and returns the entries of ids' grant keys.
func (c *seenCache) take(s *Store, ids []string) map[string]kv {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]kv{}
	for _, id := range ids {
		k := s.grantKey(id)
		if x, ok := c.m[k]; ok {
			out[k] = x
			delete(c.m, k)
		}
	}
	return out
}

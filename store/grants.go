package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// eachPage is how many records Each and EachInState read per transaction.
// Short read transactions keep a full listing of a large fleet from holding
// back writers that need to grow the file's mapping.
const eachPage = 1024

// counterDelta accumulates changes to the per-provider, per-state counters
// within one transaction, so an import of 10,000 grants writes each counter
// once.
type counterDelta map[string]int64

func (d counterDelta) add(provider string, state State, n int64) {
	d[string(countKey(provider, state))] += n
}

func (b *bkts) flushCounts(d counterDelta) error {
	for k, n := range d {
		if n == 0 {
			continue
		}
		var cur int64
		if v := b.counts.Get([]byte(k)); len(v) == 8 {
			cur = int64(binary.BigEndian.Uint64(v))
		}
		cur += n
		var err error
		if cur == 0 {
			err = b.counts.Delete([]byte(k))
		} else {
			err = b.counts.Put([]byte(k), u64(uint64(cur)))
		}
		if err != nil {
			return fmt.Errorf("update counter: %w", err)
		}
	}
	return nil
}

// lookup finds a grant by id; ok is false when it is absent.
func (b *bkts) lookup(id string) (row uint64, g Grant, ok bool, err error) {
	v := b.ids.Get([]byte(id))
	if len(v) != 8 {
		return 0, Grant{}, false, nil
	}
	row = rowOf(v)
	g, ok, err = b.getRow(row)
	if err == nil && !ok {
		err = fmt.Errorf("grant %q: id index points to missing row %d", id, row)
	}
	return row, g, ok, err
}

// getRow reads the grant stored under row.
func (b *bkts) getRow(row uint64) (Grant, bool, error) {
	v := b.grants.Get(rowKey(row))
	if v == nil {
		return Grant{}, false, nil
	}
	var g Grant
	if err := decodeGrant(v, &g); err != nil {
		return Grant{}, false, corruptError(b.tx.DB().Path(), fmt.Errorf("grant in row %d: %w", row, err))
	}
	g.Row = row
	return g, true, nil
}

// newRow assigns a row to a new grant id.
func (b *bkts) newRow(id string) (uint64, error) {
	row, err := b.grants.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("assign row to %q: %w", id, err)
	}
	if err := b.ids.Put([]byte(id), rowKey(row)); err != nil {
		return 0, fmt.Errorf("index grant %q: %w", id, err)
	}
	return row, nil
}

// putGrant writes g under row and keeps the due index, the state index and
// the counters in step with it. old is the stored record, nil when g is new.
func (b *bkts) putGrant(row uint64, old *Grant, g *Grant, d counterDelta) error {
	if !g.State.Valid() {
		return fmt.Errorf("grant %q: invalid state %q", g.ID, g.State)
	}
	if err := checkName("provider", g.Provider); err != nil {
		return fmt.Errorf("grant %q: %w", g.ID, err)
	}
	if err := b.grants.Put(rowKey(row), encodeGrant(g)); err != nil {
		return fmt.Errorf("write grant %q: %w", g.ID, err)
	}

	oldDue, newDue := time.Time{}, g.NextDueAt
	if old != nil {
		oldDue = old.NextDueAt
	}
	if oldDue.IsZero() != newDue.IsZero() || timeNanos(oldDue) != timeNanos(newDue) {
		if !oldDue.IsZero() {
			if err := b.due.Delete(dueKey(oldDue, row)); err != nil {
				return fmt.Errorf("move due entry of %q: %w", g.ID, err)
			}
		}
		if !newDue.IsZero() {
			if err := b.due.Put(dueKey(newDue, row), nil); err != nil {
				return fmt.Errorf("move due entry of %q: %w", g.ID, err)
			}
		}
	}

	if err := b.putWatch(row, old, g); err != nil {
		return err
	}

	if old == nil || old.State != g.State || old.Provider != g.Provider {
		if old != nil {
			if err := b.byState.Delete(stateKey(old.State, old.Provider, row)); err != nil {
				return fmt.Errorf("update state index of %q: %w", g.ID, err)
			}
			d.add(old.Provider, old.State, -1)
		}
		if err := b.byState.Put(stateKey(g.State, g.Provider, row), nil); err != nil {
			return fmt.Errorf("update state index of %q: %w", g.ID, err)
		}
		d.add(g.Provider, g.State, 1)
	}
	return nil
}

func (b *bkts) putToken(row uint64, id string, sealed []byte) error {
	if err := b.tokens.Put(rowKey(row), sealed); err != nil {
		return fmt.Errorf("write token of %q: %w", id, err)
	}
	return nil
}

// appendHistory adds e to the history of the grant in row and drops the
// oldest entries beyond limit. fresh says the grant was just created, so it
// has no history to look up.
func (b *bkts) appendHistory(row uint64, e *HistoryEntry, limit int, fresh bool) error {
	v := encodeHistory(e)
	var next uint64 = 1
	if !fresh {
		prefix := rowKey(row)
		c := b.history.Cursor()
		// The row's last key is just before the next row's first.
		k, _ := c.Seek(rowKey(row + 1))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		if k != nil && bytes.HasPrefix(k, prefix) {
			next = seqOf(k) + 1
			n := 1
			for k, _ = c.Prev(); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
				n++
			}
			// n entries now, one more coming: drop n+1-limit from the start.
			var drop [][]byte
			if n+1 > limit {
				for k, _ = c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(drop) < n+1-limit; k, _ = c.Next() {
					drop = append(drop, clone(k))
				}
			}
			for _, k := range drop {
				if err := b.history.Delete(k); err != nil {
					return fmt.Errorf("trim history: %w", err)
				}
			}
		}
	}
	if err := b.history.Put(histKey(row, next), v); err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	return nil
}

func (b *bkts) deleteHistory(row uint64) error {
	prefix := rowKey(row)
	c := b.history.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return fmt.Errorf("delete history: %w", err)
		}
	}
	return nil
}

// Import stores new grants and replaces the tokens of existing ones, in one
// transaction (callers chunk large imports; 10,000 per call is a good size).
//
// A new grant starts pending, due at now, with TokenGen 1 (or, once grants
// have been removed, one above the highest TokenGen removed: see removedGen). An existing id
// takes the given provider, subject, labels and token and is reset: state
// pending, cause and error cleared, failures 0, TokenGen+1, due at now. Both
// start a new token chain (ConsentAt now, no forecast until probed) and get a
// "token imported" history entry. An Observe grant is not scheduled
// (NextDueAt zero). A grant with an empty or NUL-carrying id or provider, or
// an empty token (unless it is an Observe grant), fails the whole call.
//
// opts say what may be replaced: an existing grant without opts.Replace, or
// one whose token rotated since it was stored from outside without
// opts.Force, fails the whole call with a *ConflictError naming every such
// grant of gs, and nothing is written.
func (db *DB) Import(gs []NewGrant, now time.Time, opts ImportOptions) (created, replaced int, err error) {
	if err := checkImport(gs); err != nil {
		return 0, 0, err
	}
	err = db.update(func(b *bkts) error {
		var err error
		created, replaced, err = db.importTx(b, gs, now, opts)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("import into %s: %w", db.path, err)
	}
	return created, replaced, nil
}

// importTx is Import's work within a write transaction, for Import and
// ImportBatch; gs are checked (checkImport). A conflict with opts stops the
// writes, and the rest of gs is only looked up, so that the error names
// every conflict; the caller's transaction then rolls back.
func (db *DB) importTx(b *bkts, gs []NewGrant, now time.Time, opts ImportOptions) (created, replaced int, err error) {
	// Tokens are sealed inside the transaction: their additional
	// data holds the row and seal sequence, known only here, and the
	// keyring read here is the one a concurrent Rekey walks behind.
	ring := db.keys.Load()
	// New grants append to these (row order): full pages, half the file.
	for _, bk := range []*bolt.Bucket{b.grants, b.tokens, b.history} {
		bk.FillPercent = 1.0
	}
	d := counterDelta{}
	var conflicts Conflicts
	for _, ng := range gs {
		row, old, exists, err := b.lookup(ng.ID)
		if err != nil {
			return 0, 0, err
		}
		if exists {
			conflicts.add(ng.ID, old)
		}
		if conflicts.Refused(opts) != nil {
			continue // only look up the rest
		}
		var oldp *Grant
		if exists {
			oldp = &old
			replaced++
		} else {
			if row, err = b.newRow(ng.ID); err != nil {
				return 0, 0, err
			}
			created++
		}
		g, h := ImportedGrant(oldp, &ng, row, now, b.removedGen()+1)
		if err := b.putGrant(row, oldp, &g, d); err != nil {
			return 0, 0, err
		}
		if err := b.putToken(row, ng.ID, ring.sealToken(&g, []byte(ng.RefreshToken.Reveal()))); err != nil {
			return 0, 0, err
		}
		if err := b.appendHistory(row, &h, db.historyLimit, !exists); err != nil {
			return 0, 0, err
		}
	}
	if err := conflicts.Refused(opts); err != nil {
		return 0, 0, err
	}
	return created, replaced, b.flushCounts(d)
}

// ImportConflicts looks up which of gs exist and which of those have a
// token the provider rotated since it was stored from outside, without
// writing: what Import would refuse, for a caller that checks a whole input
// before its first chunk is written, or warns about what it replaces.
func (db *DB) ImportConflicts(gs []NewGrant) (Conflicts, error) {
	var c Conflicts
	err := db.view(func(b *bkts) error {
		for _, ng := range gs {
			_, old, ok, err := b.lookup(ng.ID)
			if err != nil {
				return err
			}
			if ok {
				c.add(ng.ID, old)
			}
		}
		return nil
	})
	if err != nil {
		return Conflicts{}, fmt.Errorf("look up grants to import in %s: %w", db.path, err)
	}
	return c, nil
}

// MaxConflictIDs is how many grants Conflicts names of each kind.
const MaxConflictIDs = 20

// Conflicts are the stored grants an import would replace.
type Conflicts struct {
	// Exists counts the grants that exist; Rotated those of them whose
	// token the provider rotated since it was stored from outside.
	Exists, Rotated int
	// ExistIDs and RotatedIDs name the first MaxConflictIDs of each, in
	// input order.
	ExistIDs, RotatedIDs []string
}

func (c *Conflicts) add(id string, old Grant) {
	c.Exists++
	if len(c.ExistIDs) < MaxConflictIDs {
		c.ExistIDs = append(c.ExistIDs, id)
	}
	if old.Rotated {
		c.Rotated++
		if len(c.RotatedIDs) < MaxConflictIDs {
			c.RotatedIDs = append(c.RotatedIDs, id)
		}
	}
}

// Merge adds o's grants to c (an input checked in chunks).
func (c *Conflicts) Merge(o Conflicts) {
	c.Exists += o.Exists
	c.Rotated += o.Rotated
	c.ExistIDs = append(c.ExistIDs, o.ExistIDs[:min(len(o.ExistIDs), MaxConflictIDs-len(c.ExistIDs))]...)
	c.RotatedIDs = append(c.RotatedIDs, o.RotatedIDs[:min(len(o.RotatedIDs), MaxConflictIDs-len(c.RotatedIDs))]...)
}

// Refused returns the *ConflictError for what opts does not allow of c, or
// nil: what Import would refuse.
func (c *Conflicts) Refused(opts ImportOptions) error {
	switch {
	case c.Exists > 0 && !opts.Replace:
		return &ConflictError{Conflicts: *c, Err: ErrExists}
	case c.Rotated > 0 && !opts.Force:
		return &ConflictError{Conflicts: *c, Err: ErrRotated}
	}
	return nil
}

// ConflictError is an import refused for the grants it would replace. Err
// is ErrExists (grants exist, ImportOptions.Replace not given) or
// ErrRotated (tokens rotated since they were stored from outside,
// ImportOptions.Force not given); errors.Is sees it.
type ConflictError struct {
	Conflicts
	Err error
}

func (e *ConflictError) Error() string {
	if e.Err == ErrRotated {
		return fmt.Sprintf("%d %s rotated since %s stored from outside: %s", e.Rotated,
			plural(e.Rotated, "grant's token", "grants' tokens"), plural(e.Rotated, "it was", "they were"), idList(e.RotatedIDs, e.Rotated))
	}
	return fmt.Sprintf("%d %s: %s", e.Exists, plural(e.Exists, "grant exists", "grants exist"), idList(e.ExistIDs, e.Exists))
}

func (e *ConflictError) Unwrap() error { return e.Err }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// idList joins ids, quoted, and says how many of total it leaves out.
func idList(ids []string, total int) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = strconv.Quote(id)
	}
	s := strings.Join(q, ", ")
	if total > len(ids) {
		s += fmt.Sprintf(" and %d more", total-len(ids))
	}
	return s
}

// reservedIDs are grant ids the store keeps for itself: the key canary is
// sealed as the token of a grant named canaryAD (seal.go), so a grant of
// that id could have the canary stand in for its token.
var reservedIDs = []string{canaryAD}

// checkImport validates grants to import before anything is written.
func checkImport(gs []NewGrant) error {
	for i, ng := range gs {
		if err := checkName("id", ng.ID); err != nil {
			return fmt.Errorf("import grant %d: %w", i+1, err)
		}
		if slices.Contains(reservedIDs, ng.ID) {
			return fmt.Errorf("import grant %d: id %q is reserved by grantwatch: give the grant another id", i+1, ng.ID)
		}
		if err := checkName("provider", ng.Provider); err != nil {
			return fmt.Errorf("import grant %q: %w", ng.ID, err)
		}
		if ng.RefreshToken.IsZero() && !ng.Observe {
			return fmt.Errorf("import grant %q: refresh token is empty", ng.ID)
		}
	}
	return nil
}

// Get returns the grant with the given id, or an error wrapping ErrNotFound.
func (db *DB) Get(id string) (Grant, error) {
	var g Grant
	err := db.view(func(b *bkts) error {
		var ok bool
		var err error
		_, g, ok, err = b.lookup(id)
		if err == nil && !ok {
			err = notFound(id)
		}
		return err
	})
	return g, err
}

func notFound(id string) error {
	return fmt.Errorf("grant %q: %w", id, ErrNotFound)
}

// History returns id's history, oldest first; an error wrapping ErrNotFound
// when there is no such grant.
func (db *DB) History(id string) ([]HistoryEntry, error) {
	var hs []HistoryEntry
	err := db.view(func(b *bkts) error {
		v := b.ids.Get([]byte(id))
		if len(v) != 8 {
			return notFound(id)
		}
		prefix := clone(v)
		c := b.history.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var h HistoryEntry
			if err := decodeHistory(v, &h); err != nil {
				return fmt.Errorf("decode history of %q: %w", id, err)
			}
			hs = append(hs, h)
		}
		return nil
	})
	return hs, err
}

// Each calls fn for every grant in id order, streaming: grants are read a
// page at a time in short read transactions and fn runs outside them, so fn
// may take its time (and may even write). A listing that runs while others
// write sees each grant as of the page it was read in. An error from fn stops
// the walk and is returned as is.
func (db *DB) Each(fn func(Grant) error) error {
	var after []byte
	for {
		page := make([]Grant, 0, eachPage)
		err := db.view(func(b *bkts) error {
			c := b.ids.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(page) < eachPage; k, v = c.Next() {
				g, ok, err := b.getRow(rowOf(v))
				if err != nil {
					return err
				}
				if ok {
					page = append(page, g)
				}
				after = clone(k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, g := range page {
			if err := fn(g); err != nil {
				return err
			}
		}
		if len(page) < eachPage {
			return nil
		}
	}
}

// EachInState calls fn for every grant in state (and of provider, unless it
// is ""), through the state index: the cost is O(matching grants), not
// O(all). Order is provider, then creation. Paging and fn's freedom as for Each.
func (db *DB) EachInState(state State, provider string, fn func(Grant) error) error {
	prefix := statePrefix(state, provider)
	var after []byte
	for {
		page := make([]Grant, 0, eachPage)
		n := 0
		err := db.view(func(b *bkts) error {
			c := b.byState.Cursor()
			k, _ := c.Seek(prefix)
			if after != nil {
				k, _ = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, _ = c.Next()
				}
			}
			for ; k != nil && bytes.HasPrefix(k, prefix) && n < eachPage; k, _ = c.Next() {
				n++
				after = clone(k)
				g, ok, err := b.getRow(stateKeyRow(k))
				if err != nil {
					return err
				}
				if ok {
					page = append(page, g)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, g := range page {
			if err := fn(g); err != nil {
				return err
			}
		}
		if n < eachPage {
			return nil
		}
	}
}

// Counts returns provider → state → number of grants, from counters kept by
// every write: its cost is O(providers × states), not a scan. States with no
// grants are absent.
func (db *DB) Counts() (map[string]map[State]int, error) {
	out := map[string]map[State]int{}
	err := db.view(func(b *bkts) error {
		return b.counts.ForEach(func(k, v []byte) error {
			i := bytes.IndexByte(k, 0)
			if i < 0 || len(v) != 8 {
				return nil
			}
			n := int(int64(binary.BigEndian.Uint64(v)))
			if n == 0 {
				return nil
			}
			p := string(k[:i])
			if out[p] == nil {
				out[p] = map[State]int{}
			}
			out[p][State(k[i+1:])] = n
			return nil
		})
	})
	return out, err
}

// Remove deletes a grant and everything stored for it: token, due entry,
// state index entry, history, counter. Missing grant: ErrNotFound.
func (db *DB) Remove(id string) error {
	return db.update(func(b *bkts) error {
		row, g, ok, err := b.lookup(id)
		if err != nil {
			return err
		}
		if !ok {
			return notFound(id)
		}
		d := counterDelta{}
		if err := b.remove(row, &g, d); err != nil {
			return err
		}
		return b.flushCounts(d)
	})
}

// removeChunk is how many grants RemoveIDs and RemoveWhere remove per
// transaction.
var removeChunk = 10_000 // a var for tests

// RemoveIDs removes the grants with the given ids as Remove does, in
// transactions of 10,000 grants, and returns how many it removed. Ids that
// name no grant are passed over: a count below len(ids) says some were
// missing. On an error the grants removed by earlier transactions stay
// removed, and their count is returned with it.
func (db *DB) RemoveIDs(ids []string) (int, error) {
	n := 0
	for i := 0; i < len(ids); i += removeChunk {
		chunk := ids[i:min(i+removeChunk, len(ids))]
		m := 0
		err := db.update(func(b *bkts) error {
			m = 0
			d := counterDelta{}
			for _, id := range chunk {
				row, g, ok, err := b.lookup(id)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				if err := b.remove(row, &g, d); err != nil {
					return err
				}
				m++
			}
			return b.flushCounts(d)
		})
		if err != nil {
			return n, fmt.Errorf("remove grants from %s: %w", db.path, err)
		}
		n += m
	}
	return n, nil
}

// RemoveWhere removes every grant in state (any state when "") of provider
// (any provider when ""), as Remove does, and returns how many it removed.
// At least one of the two must be given. It walks the state index, so its
// cost is O(matching grants), in transactions of 10,000 grants: a grant that
// starts to match meanwhile may be left, which callers fix by calling again.
// On an error the grants removed by earlier transactions stay removed, and
// their count is returned with it.
func (db *DB) RemoveWhere(state State, provider string) (int, error) {
	if state == "" && provider == "" {
		return 0, errors.New("remove grants: name a state or a provider (refusing to remove every grant)")
	}
	if state != "" && !state.Valid() {
		return 0, fmt.Errorf("remove grants: unknown state %q", state)
	}
	states := States()
	if state != "" {
		states = []State{state}
	}
	n := 0
	for _, st := range states {
		prefix := statePrefix(st, provider)
		for more := true; more; {
			m := 0
			err := db.update(func(b *bkts) error {
				// The entries are deleted as they are read: each
				// transaction starts again at the prefix.
				var keys [][]byte
				c := b.byState.Cursor()
				for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(keys) < removeChunk; k, _ = c.Next() {
					keys = append(keys, clone(k))
				}
				more = len(keys) == removeChunk
				if len(keys) == 0 {
					return errNothing // no commit, no fsync
				}
				m = 0
				d := counterDelta{}
				for _, key := range keys {
					row := stateKeyRow(key)
					g, ok, err := b.getRow(row)
					if err != nil {
						return err
					}
					if !ok || !bytes.Equal(stateKey(g.State, g.Provider, row), key) {
						// A stale entry, not its grant's: drop it (the
						// walk would find it again forever), and leave
						// the grant, which may not match.
						if err := b.byState.Delete(key); err != nil {
							return fmt.Errorf("drop stale state index entry: %w", err)
						}
						continue
					}
					if err := b.remove(row, &g, d); err != nil {
						return err
					}
					m++
				}
				return b.flushCounts(d)
			})
			if err != nil && !errors.Is(err, errNothing) {
				return n, fmt.Errorf("remove %s grants from %s: %w", st, db.path, err)
			}
			n += m
		}
	}
	return n, nil
}

// errNothing rolls back a write transaction that found nothing to write.
var errNothing = errors.New("nothing to write")

// remove deletes grant g, stored in row, and everything stored for it;
// counter changes go to d.
func (b *bkts) remove(row uint64, g *Grant, d counterDelta) error {
	for _, del := range []struct {
		b *bolt.Bucket
		k []byte
	}{
		{b.ids, []byte(g.ID)},
		{b.grants, rowKey(row)},
		{b.tokens, rowKey(row)},
		{b.byState, stateKey(g.State, g.Provider, row)},
	} {
		if err := del.b.Delete(del.k); err != nil {
			return fmt.Errorf("remove %q: %w", g.ID, err)
		}
	}
	if !g.NextDueAt.IsZero() {
		if err := b.due.Delete(dueKey(g.NextDueAt, row)); err != nil {
			return fmt.Errorf("remove %q: %w", g.ID, err)
		}
	}
	if err := b.putWatch(row, g, nil); err != nil {
		return fmt.Errorf("remove %q: %w", g.ID, err)
	}
	if err := b.deleteHistory(row); err != nil {
		return fmt.Errorf("remove %q: %w", g.ID, err)
	}
	if g.TokenGen > b.removedGen() {
		if err := b.meta.Put(keyRemovedGen, u64(g.TokenGen)); err != nil {
			return fmt.Errorf("remove %q: %w", g.ID, err)
		}
	}
	d.add(g.Provider, g.State, -1)
	return nil
}

// removedGen is the highest TokenGen of any grant removed so far. A new
// grant starts above it: a probe leased before its grant was removed then
// never matches a grant imported again under the same id (its result, a
// rotated token of the old chain among it, would overwrite the new token).
func (b *bkts) removedGen() uint64 {
	if v := b.meta.Get(keyRemovedGen); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// SetToken stores a new refresh token for id (set-token, reconnect) and
// resets the grant so that it is probed at now: state pending, cause, action
// and error cleared, failures 0, LostAnswer, Rotated and ReuseDetected
// cleared, TokenGen+1, and, a new token chain, its ConsentAt now, its
// forecast and unreadable count cleared. It returns the new record.
// Missing grant: ErrNotFound.
func (db *DB) SetToken(id string, tok secret.Secret, now time.Time) (Grant, error) {
	if tok.IsZero() {
		return Grant{}, fmt.Errorf("set token of %q: token is empty", id)
	}
	var g Grant
	err := db.update(func(b *bkts) error {
		row, old, ok, err := b.lookup(id)
		if err != nil {
			return err
		}
		if !ok {
			return notFound(id)
		}
		var h HistoryEntry
		g, h = TokenReplaced(old, now)
		d := counterDelta{}
		if err := b.putGrant(row, &old, &g, d); err != nil {
			return err
		}
		if err := b.putToken(row, id, db.keys.Load().sealToken(&g, []byte(tok.Reveal()))); err != nil {
			return err
		}
		if err := b.appendHistory(row, &h, db.historyLimit, false); err != nil {
			return err
		}
		return b.flushCounts(d)
	})
	return g, err
}

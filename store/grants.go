package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
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

// getGrant reads a grant in a transaction; ok is false when it is absent.
func (b *bkts) getGrant(id string) (Grant, bool, error) {
	v := b.grants.Get([]byte(id))
	if v == nil {
		return Grant{}, false, nil
	}
	var g Grant
	if err := json.Unmarshal(v, &g); err != nil {
		return Grant{}, false, fmt.Errorf("decode grant %q: %w", id, err)
	}
	return g, true, nil
}

// putGrant writes g and keeps the due index, the state index and the counters
// in step with it. old is the stored record, nil when g is new.
func (b *bkts) putGrant(old *Grant, g *Grant, d counterDelta) error {
	if !g.State.Valid() {
		return fmt.Errorf("grant %q: invalid state %q", g.ID, g.State)
	}
	if err := checkName("provider", g.Provider); err != nil {
		return fmt.Errorf("grant %q: %w", g.ID, err)
	}
	v, err := json.Marshal(g)
	if err != nil {
		return fmt.Errorf("encode grant %q: %w", g.ID, err)
	}
	if err := b.grants.Put([]byte(g.ID), v); err != nil {
		return fmt.Errorf("write grant %q: %w", g.ID, err)
	}

	oldDue, newDue := time.Time{}, g.NextDueAt
	if old != nil {
		oldDue = old.NextDueAt
	}
	if oldDue.IsZero() != newDue.IsZero() || timeNanos(oldDue) != timeNanos(newDue) {
		if !oldDue.IsZero() {
			if err := b.due.Delete(dueKey(oldDue, g.ID)); err != nil {
				return fmt.Errorf("move due entry of %q: %w", g.ID, err)
			}
		}
		if !newDue.IsZero() {
			if err := b.due.Put(dueKey(newDue, g.ID), nil); err != nil {
				return fmt.Errorf("move due entry of %q: %w", g.ID, err)
			}
		}
	}

	if old == nil || old.State != g.State || old.Provider != g.Provider {
		if old != nil {
			if err := b.byState.Delete(stateKey(old.State, old.Provider, g.ID)); err != nil {
				return fmt.Errorf("update state index of %q: %w", g.ID, err)
			}
			d.add(old.Provider, old.State, -1)
		}
		if err := b.byState.Put(stateKey(g.State, g.Provider, g.ID), nil); err != nil {
			return fmt.Errorf("update state index of %q: %w", g.ID, err)
		}
		d.add(g.Provider, g.State, 1)
	}
	return nil
}

func (b *bkts) putToken(id string, sealed []byte) error {
	if err := b.tokens.Put([]byte(id), sealed); err != nil {
		return fmt.Errorf("write token of %q: %w", id, err)
	}
	return nil
}

// appendHistory adds e to id's history and drops the oldest entries beyond
// limit. fresh says the grant was just created, so it has no history to
// look up.
func (b *bkts) appendHistory(id string, e *HistoryEntry, limit int, fresh bool) error {
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode history of %q: %w", id, err)
	}
	prefix := seqPrefix(id)
	var next uint64 = 1
	if !fresh {
		c := b.history.Cursor()
		// The last key of id is just before id ‖ 1.
		k, _ := c.Seek(append([]byte(id), 1))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		if k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8 {
			next = seqOf(k) + 1
			// Count back to find entries beyond the limit.
			n := 1
			for k, _ = c.Prev(); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
				n++
			}
			// n entries now, one more coming: drop n+1-limit from the start.
			var drop [][]byte
			for k, _ = c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(drop) < n+1-limit; k, _ = c.Next() {
				drop = append(drop, clone(k))
			}
			for _, k := range drop {
				if err := b.history.Delete(k); err != nil {
					return fmt.Errorf("trim history of %q: %w", id, err)
				}
			}
		}
	}
	if err := b.history.Put(seqKey(id, next), v); err != nil {
		return fmt.Errorf("write history of %q: %w", id, err)
	}
	return nil
}

func (b *bkts) deleteHistory(id string) error {
	prefix := seqPrefix(id)
	c := b.history.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return fmt.Errorf("delete history of %q: %w", id, err)
		}
	}
	return nil
}

// Import stores new grants and replaces the tokens of existing ones, in one
// transaction (callers chunk large imports; 10,000 per call is a good size).
//
// A new grant starts pending, due at now, with TokenGen 1. An existing id
// takes the given provider, subject, labels and token and is reset: state
// pending, cause and error cleared, failures 0, TokenGen+1, due at now. Both
// get a "token imported" history entry. A grant with an empty or NUL-carrying
// id or provider, or an empty token, fails the whole call.
func (db *DB) Import(gs []NewGrant, now time.Time) (created, replaced int, err error) {
	for i, ng := range gs {
		if err := checkName("id", ng.ID); err != nil {
			return 0, 0, fmt.Errorf("import grant %d: %w", i+1, err)
		}
		if err := checkName("provider", ng.Provider); err != nil {
			return 0, 0, fmt.Errorf("import grant %q: %w", ng.ID, err)
		}
		if ng.RefreshToken.IsZero() {
			return 0, 0, fmt.Errorf("import grant %q: refresh token is empty", ng.ID)
		}
	}
	// Sealing outside the transaction keeps the write lock short.
	sealed := make([][]byte, len(gs))
	for i, ng := range gs {
		sealed[i] = db.seal([]byte(ng.RefreshToken.Reveal()), ng.ID)
	}
	err = db.update(func(b *bkts) error {
		created, replaced = 0, 0
		// Imports arrive mostly in id order: fuller pages, half the file.
		b.grants.FillPercent = 0.9
		b.tokens.FillPercent = 0.9
		b.due.FillPercent = 0.9
		b.history.FillPercent = 0.9
		d := counterDelta{}
		for i, ng := range gs {
			old, exists, err := b.getGrant(ng.ID)
			if err != nil {
				return err
			}
			g := Grant{
				ID:             ng.ID,
				Provider:       ng.Provider,
				Subject:        ng.Subject,
				Labels:         ng.Labels,
				State:          StatePending,
				CreatedAt:      now,
				StateChangedAt: now,
				NextDueAt:      now,
				TokenGen:       1,
			}
			h := HistoryEntry{At: now, To: StatePending, Note: "token imported"}
			var oldp *Grant
			if exists {
				oldp = &old
				g.CreatedAt = old.CreatedAt
				g.LastProbeAt = old.LastProbeAt
				g.LastSuccessAt = old.LastSuccessAt
				g.TokenGen = old.TokenGen + 1
				if old.State == StatePending {
					g.StateChangedAt = old.StateChangedAt
				}
				h.From = old.State
				replaced++
			} else {
				created++
			}
			if err := b.putGrant(oldp, &g, d); err != nil {
				return err
			}
			if err := b.putToken(ng.ID, sealed[i]); err != nil {
				return err
			}
			if err := b.appendHistory(ng.ID, &h, db.historyLimit, !exists); err != nil {
				return err
			}
		}
		return b.flushCounts(d)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("import into %s: %w", db.path, err)
	}
	return created, replaced, nil
}

// Get returns the grant with the given id, or an error wrapping ErrNotFound.
func (db *DB) Get(id string) (Grant, error) {
	var g Grant
	err := db.view(func(b *bkts) error {
		var ok bool
		var err error
		g, ok, err = b.getGrant(id)
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
		if b.grants.Get([]byte(id)) == nil {
			return notFound(id)
		}
		prefix := seqPrefix(id)
		c := b.history.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(k) != len(prefix)+8 {
				continue
			}
			var h HistoryEntry
			if err := json.Unmarshal(v, &h); err != nil {
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
			c := b.grants.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(page) < eachPage; k, v = c.Next() {
				var g Grant
				if err := json.Unmarshal(v, &g); err != nil {
					return fmt.Errorf("decode grant %q: %w", k, err)
				}
				page = append(page, g)
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
// O(all). Order is provider, then id. Paging and fn's freedom as for Each.
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
				g, ok, err := b.getGrant(stateKeyID(k))
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
		g, ok, err := b.getGrant(id)
		if err != nil {
			return err
		}
		if !ok {
			return notFound(id)
		}
		for _, del := range []struct {
			b *bolt.Bucket
			k []byte
		}{
			{b.grants, []byte(id)},
			{b.tokens, []byte(id)},
			{b.byState, stateKey(g.State, g.Provider, id)},
		} {
			if err := del.b.Delete(del.k); err != nil {
				return fmt.Errorf("remove %q: %w", id, err)
			}
		}
		if !g.NextDueAt.IsZero() {
			if err := b.due.Delete(dueKey(g.NextDueAt, id)); err != nil {
				return fmt.Errorf("remove %q: %w", id, err)
			}
		}
		if err := b.deleteHistory(id); err != nil {
			return err
		}
		d := counterDelta{}
		d.add(g.Provider, g.State, -1)
		return b.flushCounts(d)
	})
}

// SetToken stores a new refresh token for id (set-token, reconnect) and
// resets the grant so that it is probed at now: state pending, cause, action
// and error cleared, failures 0, TokenGen+1. It returns the new record.
// Missing grant: ErrNotFound.
func (db *DB) SetToken(id string, tok secret.Secret, now time.Time) (Grant, error) {
	if tok.IsZero() {
		return Grant{}, fmt.Errorf("set token of %q: token is empty", id)
	}
	sealed := db.seal([]byte(tok.Reveal()), id)
	var g Grant
	err := db.update(func(b *bkts) error {
		old, ok, err := b.getGrant(id)
		if err != nil {
			return err
		}
		if !ok {
			return notFound(id)
		}
		g = old
		g.State = StatePending
		g.Cause, g.Action, g.Error, g.ErrorDescription = "", "", "", ""
		g.Failures = 0
		g.TokenGen++
		g.NextDueAt = now
		if old.State != StatePending {
			g.StateChangedAt = now
		}
		d := counterDelta{}
		if err := b.putGrant(&old, &g, d); err != nil {
			return err
		}
		if err := b.putToken(id, sealed); err != nil {
			return err
		}
		h := HistoryEntry{At: now, From: old.State, To: StatePending, Note: "token replaced"}
		if err := b.appendHistory(id, &h, db.historyLimit, false); err != nil {
			return err
		}
		return b.flushCounts(d)
	})
	return g, err
}

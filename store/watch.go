package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The watch indexes: the expiry index (each grant's forecast, per provider
// in time order) and the unreadable index (grants whose answers no rule
// reads, Unreadable ≥ UnreadableAfter). putGrant keeps both in step with
// every write of a grant, as it keeps the due index, so that status, the
// metrics and `grants list --expiring` read them instead of the fleet.

// putWatch moves g's watch index entries from what old called for to what g
// calls for; nil old: none yet, nil g: none any more (removal).
func (b *bkts) putWatch(row uint64, old, g *Grant) error {
	var oldExp, newExp, oldUnread, newUnread []byte
	if old != nil {
		oldExp, oldUnread = watchKeys(old, row)
	}
	if g != nil {
		newExp, newUnread = watchKeys(g, row)
	}
	for _, m := range []struct {
		bk       *bolt.Bucket
		from, to []byte
	}{{b.expiry, oldExp, newExp}, {b.unread, oldUnread, newUnread}} {
		if bytes.Equal(m.from, m.to) {
			continue
		}
		if m.from != nil {
			if err := m.bk.Delete(m.from); err != nil {
				return fmt.Errorf("update watch index: %w", err)
			}
		}
		if m.to != nil {
			if err := m.bk.Put(m.to, nil); err != nil {
				return fmt.Errorf("update watch index: %w", err)
			}
		}
	}
	return nil
}

// watchKeys are the entries g, stored in row, calls for (nil: none).
func watchKeys(g *Grant, row uint64) (expiry, unread []byte) {
	if !g.ExpiresAt.IsZero() {
		expiry = expiryKey(g.Provider, g.ExpiresAt, row)
	}
	if g.Unreadable >= UnreadableAfter {
		unread = unreadKey(g.Provider, row)
	}
	return expiry, unread
}

// ExpiringCounts returns, per provider, how many grants are forecast to die
// at or before t (Grant.ExpiresAt). It walks the expiry index: for each
// provider only the entries up to t, then it seeks past the provider, so its
// cost is O(providers + matching grants), whatever the size of the fleet:
// in the worst case, 10⁶ grants all within the window (a fleet imported at
// once reaching its absolute lifetime), about 0.1 s
// (BenchmarkExpiringCounts). Providers with none are absent.
func (db *DB) ExpiringCounts(t time.Time) (map[string]int, error) {
	out := map[string]int{}
	end := timeNanos(t)
	err := db.view(func(b *bkts) error {
		c := b.expiry.Cursor()
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return nil // not an index key; Check reports it
			}
			prov := string(k[:i])
			for ; k != nil && len(k) == i+17 && string(k[:i]) == prov && k[i] == 0; k, _ = c.Next() {
				if binary.BigEndian.Uint64(k[i+1:]) > end {
					break
				}
				out[prov]++
			}
			k, _ = c.Seek(append([]byte(prov), 1)) // the next provider
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count expiring grants in %s: %w", db.path, err)
	}
	return out, nil
}

// EachExpiring calls fn for every grant forecast to die at or before t, of
// provider unless it is "", through the expiry index: provider by provider,
// soonest first. The cost is O(providers + matching grants). Paging and
// fn's freedom as for Each.
func (db *DB) EachExpiring(t time.Time, provider string, fn func(Grant) error) error {
	end := timeNanos(t)
	return db.eachIndexed(func(b *bkts) *bolt.Bucket { return b.expiry }, provider,
		func(k []byte, i int) (uint64, bool) {
			if len(k) != i+17 || binary.BigEndian.Uint64(k[i+1:]) > end {
				return 0, false
			}
			return rowOf(k[i+9:]), true
		}, fn)
}

// UnreadableCounts returns, per provider, how many grants are in the
// unreadable index (Unreadable ≥ UnreadableAfter): O(such grants).
func (db *DB) UnreadableCounts() (map[string]int, error) {
	out := map[string]int{}
	err := db.view(func(b *bkts) error {
		return b.unread.ForEach(func(k, _ []byte) error {
			if i := bytes.IndexByte(k, 0); i >= 0 {
				out[string(k[:i])]++
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("count unreadable grants in %s: %w", db.path, err)
	}
	return out, nil
}

// EachUnreadable calls fn for every grant in the unreadable index, of
// provider unless it is "", in provider then row order. Paging and fn's
// freedom as for Each.
func (db *DB) EachUnreadable(provider string, fn func(Grant) error) error {
	return db.eachIndexed(func(b *bkts) *bolt.Bucket { return b.unread }, provider,
		func(k []byte, i int) (uint64, bool) {
			if len(k) != i+9 {
				return 0, false
			}
			return rowOf(k[i+1:]), true
		}, fn)
}

// eachIndexed walks a provider-keyed index (provider ‖ 0 ‖ …), one
// provider's entries or every provider's, a page at a time. row reads an
// entry's row given the index i of its 0 byte; false ends that provider's
// entries (the rest are past what the caller asked for), and the walk seeks
// to the next provider.
func (db *DB) eachIndexed(bucket func(*bkts) *bolt.Bucket, provider string, row func(k []byte, i int) (uint64, bool), fn func(Grant) error) error {
	var after []byte // the last key read; nil: start
	for {
		page := make([]Grant, 0, eachPage)
		n := 0
		done := false
		err := db.view(func(b *bkts) error {
			c := bucket(b).Cursor()
			var k []byte
			switch {
			case after != nil:
				k, _ = c.Seek(after)
				if bytes.Equal(k, after) {
					k, _ = c.Next()
				}
			case provider != "":
				k, _ = c.Seek(providerPrefix(provider))
			default:
				k, _ = c.First()
			}
			for k != nil && n < eachPage {
				i := bytes.IndexByte(k, 0)
				if i < 0 || provider != "" && string(k[:i]) != provider {
					k = nil
					break
				}
				r, ok := row(k, i)
				if !ok {
					if provider != "" {
						k = nil
						break
					}
					next := append(clone(k[:i]), 1) // past this provider
					after = next
					k, _ = c.Seek(next)
					continue
				}
				n++
				after = clone(k)
				g, found, err := b.getRow(r)
				if err != nil {
					return err
				}
				if found {
					page = append(page, g)
				}
				k, _ = c.Next()
			}
			done = k == nil
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
		if done {
			return nil
		}
	}
}

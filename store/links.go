package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Hosted reconnect links (grantwatch grants link, issue 16): a URL that
// lets a grant's user consent again from their own browser. Only the
// SHA-256 of a link's secret is stored: the secret is 130 random bits, so a
// fast hash is as safe as a slow one, and a copy of the database opens no
// link. A link is bound to one grant (its id and row: a grant removed and
// imported again is another grant), single-use and expires.
//
// Layout:
//
//	links    SHA-256 of the secret → Link as JSON
//	linkexp  8-byte big-endian expiry (unix nanos) ‖ SHA-256 → empty, so
//	         that old links are found without a scan
//
// A link is kept for LinkKeep past its expiry, so that opening it tells
// "expired" rather than "unknown"; CreateLink deletes older ones.

var (
	bucketLinks   = []byte("links")
	bucketLinkExp = []byte("linkexp")
)

// LinkKeep is how long a link's record outlives its expiry.
const LinkKeep = 7 * 24 * time.Hour

// Sentinels of UseLink, for callers that branch (the link's error pages).
var (
	// ErrLinkExpired: the link's TTL has passed.
	ErrLinkExpired = errors.New("reconnect link expired")
	// ErrLinkUsed: the link already reconnected its grant once.
	ErrLinkUsed = errors.New("reconnect link already used")
)

// Link is one reconnect link's record, never its secret.
type Link struct {
	GrantID   string    `json:"grant_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// UsedAt is when the link reconnected its grant; zero while unused.
	UsedAt time.Time `json:"used_at,omitzero"`
	// By says who asked for it: "cli", "app:<key name>",
	// "notify:<receiver>".
	By string `json:"by,omitempty"`
	// Row is the grant's row when the link was made.
	Row uint64 `json:"row"`
}

// LinkHash is the hash a link is stored and looked up by.
func LinkHash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// CreateLink stores a link for l.GrantID under hash (LinkHash of its
// secret), and deletes the records of links expired more than LinkKeep
// before now. The grant must exist (ErrNotFound); a hash already stored is
// refused.
func (db *DB) CreateLink(hash []byte, l Link, now time.Time) error {
	if len(hash) != sha256.Size {
		return fmt.Errorf("reconnect link: hash is %d bytes, want %d", len(hash), sha256.Size)
	}
	if !l.ExpiresAt.After(l.CreatedAt) {
		return fmt.Errorf("reconnect link for %q: expires at %s, not after its creation", l.GrantID, l.ExpiresAt.Format(time.RFC3339))
	}
	err := db.update(func(b *bkts) error {
		row, _, ok, err := b.lookup(l.GrantID)
		if err != nil {
			return err
		}
		if !ok {
			return notFound(l.GrantID)
		}
		l.Row = row
		links := b.tx.Bucket(bucketLinks)
		if links.Get(hash) != nil {
			return errors.New("a link with this secret exists already")
		}
		v, err := json.Marshal(l)
		if err != nil {
			return err
		}
		if err := links.Put(hash, v); err != nil {
			return err
		}
		if err := b.tx.Bucket(bucketLinkExp).Put(linkExpKey(l.ExpiresAt, hash), nil); err != nil {
			return err
		}
		_, err = pruneLinks(b.tx, now.Add(-LinkKeep), 1000)
		return err
	})
	if err != nil {
		return fmt.Errorf("create reconnect link: %w", err)
	}
	return nil
}

// Link returns the link stored under hash: an error wrapping ErrNotFound
// when there is none or its grant is gone, ErrLinkUsed or ErrLinkExpired
// (with the record) when it cannot be used at now.
func (db *DB) Link(hash []byte, now time.Time) (Link, error) {
	var l Link
	err := db.view(func(b *bkts) error {
		var err error
		l, err = b.link(hash, now)
		return err
	})
	return l, err
}

// UseLink marks the link under hash used at now, atomically: of two
// callers only one gets it. It fails as Link does, and leaves the link
// unused then.
func (db *DB) UseLink(hash []byte, now time.Time) (Link, error) {
	var l Link
	err := db.update(func(b *bkts) error {
		var err error
		if l, err = b.link(hash, now); err != nil {
			return err
		}
		l.UsedAt = now
		v, err := json.Marshal(l)
		if err != nil {
			return err
		}
		return b.tx.Bucket(bucketLinks).Put(hash, v)
	})
	return l, err
}

// link reads and checks the link under hash.
func (b *bkts) link(hash []byte, now time.Time) (Link, error) {
	v := b.tx.Bucket(bucketLinks).Get(hash)
	if v == nil {
		return Link{}, fmt.Errorf("reconnect link: %w", ErrNotFound)
	}
	var l Link
	if err := json.Unmarshal(v, &l); err != nil {
		return Link{}, fmt.Errorf("decode reconnect link: %w", err)
	}
	if row, _, ok, err := b.lookup(l.GrantID); err != nil {
		return Link{}, err
	} else if !ok || row != l.Row {
		return Link{}, fmt.Errorf("reconnect link of %w", notFound(l.GrantID))
	}
	switch {
	case !l.UsedAt.IsZero():
		return l, fmt.Errorf("%w (at %s)", ErrLinkUsed, l.UsedAt.UTC().Format(time.RFC3339))
	case !now.Before(l.ExpiresAt):
		return l, fmt.Errorf("%w (at %s)", ErrLinkExpired, l.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return l, nil
}

// PruneLinks deletes the records of links that expired before before and
// returns how many.
func (db *DB) PruneLinks(before time.Time) (int, error) {
	var n int
	err := db.update(func(b *bkts) error {
		var err error
		n, err = pruneLinks(b.tx, before, 0)
		return err
	})
	return n, err
}

// pruneLinks deletes up to limit (0: all) links expired before before.
func pruneLinks(tx *bolt.Tx, before time.Time, limit int) (int, error) {
	exp, links := tx.Bucket(bucketLinkExp), tx.Bucket(bucketLinks)
	end := linkExpKey(before, nil)
	var keys [][]byte
	c := exp.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, end) < 0 && (limit == 0 || len(keys) < limit); k, _ = c.Next() {
		keys = append(keys, clone(k))
	}
	for _, k := range keys {
		if err := exp.Delete(k); err != nil {
			return 0, err
		}
		if err := links.Delete(k[8:]); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

func linkExpKey(t time.Time, hash []byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(hash)), timeNanos(t))
	return append(k, hash...)
}

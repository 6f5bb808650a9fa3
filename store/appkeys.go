package store

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// App keys: the keys apps present to the broker and the TCP API
// (`grantwatch keys create`). Only a key's SHA-256 is stored: a key is 130
// random bits, so a fast hash is as safe as a slow one and lets every
// request be checked in microseconds; a copy of the database gives no key.
//
// Layout: appkeys  name → AppKey as JSON.

var bucketAppKeys = []byte("appkeys")

// ErrExists is returned when a name is taken.
var ErrExists = errors.New("already exists")

// AppKey is one app key without the key: its name, the SHA-256 of the key,
// the label selector and the scopes it was given. The store keeps scopes as
// given; what they mean is the API's.
type AppKey struct {
	Name string `json:"name"`
	// Hash is the SHA-256 of the key (HashAppKey).
	Hash []byte `json:"hash"`
	// Labels is the selector: the key reaches only grants that carry every
	// one of these labels with the same value. Empty reaches every grant.
	Labels    map[string]string `json:"labels,omitempty"`
	Scopes    []string          `json:"scopes"`
	CreatedAt time.Time         `json:"created_at"`
}

// HashAppKey is the hash an app key is stored and looked up by.
func HashAppKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// CreateAppKey stores k. A name already taken is refused with an error
// wrapping ErrExists (revoke the old key first); so is a hash already
// stored, which would make one key two.
func (db *DB) CreateAppKey(k AppKey) error {
	if err := checkName("app key name", k.Name); err != nil {
		return err
	}
	if len(k.Hash) != sha256.Size {
		return fmt.Errorf("app key %q: hash is %d bytes, want %d", k.Name, len(k.Hash), sha256.Size)
	}
	v, err := json.Marshal(k)
	if err != nil {
		return err
	}
	err = db.update(func(b *bkts) error {
		kb := b.tx.Bucket(bucketAppKeys)
		if kb.Get([]byte(k.Name)) != nil {
			return fmt.Errorf("app key %q %w: revoke it first (grantwatch keys revoke %s)", k.Name, ErrExists, k.Name)
		}
		if dup, err := eachAppKey(kb, func(o AppKey) bool { return string(o.Hash) == string(k.Hash) }); err != nil || dup != "" {
			if err == nil {
				err = fmt.Errorf("app key %q: the same key is stored as %q: %w", k.Name, dup, ErrExists)
			}
			return err
		}
		return kb.Put([]byte(k.Name), v)
	})
	if err != nil {
		return fmt.Errorf("create app key in %s: %w", db.path, err)
	}
	return nil
}

// AppKeys returns every app key, by name.
func (db *DB) AppKeys() ([]AppKey, error) {
	var out []AppKey
	err := db.view(func(b *bkts) error {
		_, err := eachAppKey(b.tx.Bucket(bucketAppKeys), func(k AppKey) bool {
			out = append(out, k)
			return false
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read app keys of %s: %w", db.path, err)
	}
	return out, nil
}

// RevokeAppKey deletes the named key; an error wraps ErrNotFound when there
// is none.
func (db *DB) RevokeAppKey(name string) error {
	return db.update(func(b *bkts) error {
		kb := b.tx.Bucket(bucketAppKeys)
		if kb.Get([]byte(name)) == nil {
			return fmt.Errorf("app key %q: %w", name, ErrNotFound)
		}
		return kb.Delete([]byte(name))
	})
}

// eachAppKey decodes the keys of kb in name order until stop reports true,
// and returns the name it stopped at.
func eachAppKey(kb *bolt.Bucket, stop func(AppKey) bool) (string, error) {
	c := kb.Cursor()
	for name, v := c.First(); name != nil; name, v = c.Next() {
		var k AppKey
		if err := json.Unmarshal(v, &k); err != nil {
			return "", fmt.Errorf("app key %q: %w", name, err)
		}
		if stop(k) {
			return k.Name, nil
		}
	}
	return "", nil
}

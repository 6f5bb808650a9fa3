package etcd

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/grantwatch/grantwatch/store"
)

// App keys as in bbolt (store/appkeys.go): ak/<name> → AppKey as JSON,
// the key's hash, never the key.

func (s *Store) appKeyPrefix() string { return s.prefix + "ak/" }

// CreateAppKey stores k; a name or a hash already stored is ErrExists.
func (s *Store) CreateAppKey(k store.AppKey) error {
	if err := store.CheckName("app key name", k.Name); err != nil {
		return err
	}
	if len(k.Hash) != sha256.Size {
		return fmt.Errorf("app key %q: hash is %d bytes, want %d", k.Name, len(k.Hash), sha256.Size)
	}
	val, err := json.Marshal(k)
	if err != nil {
		return err
	}
	key := s.appKeyPrefix() + k.Name
	_, err = write(s, "create app key", []int{0}, func([]int) []string { return nil }, []string{s.appKeyPrefix()},
		func(v *view, _ []int, _ []*unit) ([]*unit, error) {
			if v.get(key).rev != 0 {
				return nil, fmt.Errorf("app key %q %w: revoke it first (grantwatch keys revoke %s)", k.Name, store.ErrExists, k.Name)
			}
			u := newUnit()
			u.items = []int{0}
			// Every key is compared: none added meanwhile has this hash.
			for name, x := range v.under(s.appKeyPrefix()) {
				var o store.AppKey
				if err := json.Unmarshal(x.val, &o); err != nil {
					return nil, fmt.Errorf("app key %q: %w", name, err)
				}
				if string(o.Hash) == string(k.Hash) {
					return nil, fmt.Errorf("app key %q: the same key is stored as %q: %w", k.Name, o.Name, store.ErrExists)
				}
				u.deps = append(u.deps, name)
			}
			u.deps = append(u.deps, key)
			u.put(key, string(val))
			return []*unit{u}, nil
		})
	if err != nil {
		return fmt.Errorf("create app key in %s: %w", s.where, err)
	}
	return nil
}

// AppKeys returns every app key, by name.
func (s *Store) AppKeys() ([]store.AppKey, error) {
	var out []store.AppKey
	p := s.appKeyPrefix()
	err := s.scan(p, clientv3.GetPrefixRangeEnd(p), page, func(name string, val []byte) error {
		var k store.AppKey
		if err := json.Unmarshal(val, &k); err != nil {
			return fmt.Errorf("app key %q: %w", name, err)
		}
		out = append(out, k)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read app keys of %s: %w", s.where, err)
	}
	return out, nil
}

// RevokeAppKey deletes the named key; ErrNotFound when there is none.
func (s *Store) RevokeAppKey(name string) error {
	key := s.appKeyPrefix() + name
	_, err := write(s, "revoke app key", []int{0}, func([]int) []string { return []string{key} }, nil,
		func(v *view, _ []int, _ []*unit) ([]*unit, error) {
			if v.get(key).rev == 0 {
				return nil, fmt.Errorf("app key %q: %w", name, store.ErrNotFound)
			}
			u := newUnit()
			u.items = []int{0}
			u.deps = []string{key}
			u.del(key)
			return []*unit{u}, nil
		})
	return err
}

package etcd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/grantwatch/grantwatch/store"
)

// Hosted reconnect links as in bbolt (store/links.go): ln/<hash hex> →
// Link as JSON, lx/<ns><hash hex> → empty, the links by expiry for
// pruning. Only a link's hash is stored.

func (s *Store) linkKey(hash []byte) string { return s.prefix + "ln/" + hex.EncodeToString(hash) }
func (s *Store) linkExpKey(t time.Time, hash []byte) string {
	return s.prefix + "lx/" + hex16(nanos(t)) + hex.EncodeToString(hash)
}

// pruneMax is how many expired links one CreateLink removes.
const pruneMax = 100

// CreateLink stores a link for l.GrantID under hash; ErrNotFound when the
// grant does not exist. Up to pruneMax records of links expired more than
// store.LinkKeep before now go with it.
func (s *Store) CreateLink(hash []byte, l store.Link, now time.Time) error {
	if len(hash) != sha256.Size {
		return fmt.Errorf("reconnect link: hash is %d bytes, want %d", len(hash), sha256.Size)
	}
	if !l.ExpiresAt.After(l.CreatedAt) {
		return fmt.Errorf("reconnect link for %q: expires at %s, not after its creation", l.GrantID, l.ExpiresAt.Format(time.RFC3339))
	}
	key, gk := s.linkKey(hash), s.grantKey(l.GrantID)
	lx := s.prefix + "lx/"
	ctx, cancel := s.ctx()
	old, err := s.cli.Get(ctx, lx, clientv3.WithRange(lx+hex16(nanos(now.Add(-store.LinkKeep)))), clientv3.WithLimit(pruneMax), clientv3.WithKeysOnly())
	cancel()
	if err != nil {
		return s.unreachable("create reconnect link in", err)
	}
	_, err = write(s, "create reconnect link", []int{0}, func([]int) []string { return []string{key, gk} }, nil,
		func(v *view, _ []int, _ []*unit) ([]*unit, error) {
			r, ok, err := s.recordIn(v, l.GrantID)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, notFound(l.GrantID)
			}
			if v.get(key).rev != 0 {
				return nil, errors.New("a link with this secret exists already")
			}
			l.Row = r.g.Row
			val, err := json.Marshal(l)
			if err != nil {
				return nil, err
			}
			u := newUnit()
			u.items = []int{0}
			u.deps = []string{key}
			u.put(key, string(val))
			u.put(s.linkExpKey(l.ExpiresAt, hash), "")
			for _, x := range old.Kvs {
				k := string(x.Key)
				u.del(k)
				u.del(s.prefix + "ln/" + k[len(lx)+16:])
			}
			return []*unit{u}, nil
		})
	if err != nil {
		return fmt.Errorf("create reconnect link: %w", err)
	}
	return nil
}

// link is the link under hash in v, checked as Link does.
func (s *Store) link(v *view, hash []byte, now time.Time) (store.Link, error) {
	x := v.get(s.linkKey(hash))
	if x.rev == 0 {
		return store.Link{}, fmt.Errorf("reconnect link: %w", store.ErrNotFound)
	}
	var l store.Link
	if err := json.Unmarshal(x.val, &l); err != nil {
		return store.Link{}, fmt.Errorf("decode reconnect link: %w", err)
	}
	r, ok, err := s.recordIn(v, l.GrantID)
	if err != nil {
		return store.Link{}, err
	}
	if !ok || r.g.Row != l.Row {
		return store.Link{}, fmt.Errorf("reconnect link of %w", notFound(l.GrantID))
	}
	switch {
	case !l.UsedAt.IsZero():
		return l, fmt.Errorf("%w (at %s)", store.ErrLinkUsed, l.UsedAt.UTC().Format(time.RFC3339))
	case !now.Before(l.ExpiresAt):
		return l, fmt.Errorf("%w (at %s)", store.ErrLinkExpired, l.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return l, nil
}

// linkView reads the link under hash and its grant.
func (s *Store) linkView(hash []byte) (*view, error) {
	v, err := s.read([]string{s.linkKey(hash)})
	if err != nil {
		return nil, err
	}
	var l store.Link
	if x := v.get(s.linkKey(hash)); x.rev != 0 && json.Unmarshal(x.val, &l) == nil {
		g, err := s.read([]string{s.grantKey(l.GrantID)})
		if err != nil {
			return nil, err
		}
		v.set(s.grantKey(l.GrantID), g.get(s.grantKey(l.GrantID)))
	}
	return v, nil
}

// Link returns the link under hash (store.Store.Link).
func (s *Store) Link(hash []byte, now time.Time) (store.Link, error) {
	v, err := s.linkView(hash)
	if err != nil {
		return store.Link{}, err
	}
	return s.link(v, hash, now)
}

// UseLink marks the link used at now; of concurrent callers one succeeds
// (the write compares the link's revision), the others get ErrLinkUsed.
func (s *Store) UseLink(hash []byte, now time.Time) (store.Link, error) {
	key := s.linkKey(hash)
	for attempt := 0; ; attempt++ {
		v, err := s.linkView(hash)
		if err != nil {
			return store.Link{}, err
		}
		l, err := s.link(v, hash, now)
		if err != nil {
			return l, err
		}
		l.UsedAt = now
		val, err := json.Marshal(l)
		if err != nil {
			return store.Link{}, err
		}
		_, err = s.txn([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", v.get(key).rev)}, []clientv3.Op{clientv3.OpPut(key, string(val))})
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, errConflict) || attempt == maxAttempts {
			return store.Link{}, fmt.Errorf("use reconnect link: %w", err)
		}
	}
}

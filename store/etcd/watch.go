package etcd

import (
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/grantwatch/grantwatch/store"
)

// The watch indexes, kept by every write of a grant as the due index is
// (writeGrant): exp/<provider>\0<ns><row> → id, a grant's forecast in time
// order per provider; unr/<provider>\0<row> → id, the grants whose answers
// no rule reads (store.Watched).

func (s *Store) watchKeys(g *store.Grant) (exp, unread string) {
	at, un := store.Watched(g)
	if !at.IsZero() {
		exp = s.prefix + "exp/" + g.Provider + "\x00" + hex16(nanos(at)) + hex16(g.Row)
	}
	if un {
		unread = s.prefix + "unr/" + g.Provider + "\x00" + hex16(g.Row)
	}
	return exp, unread
}

// providersUnder returns the providers that have keys under p (p ‖
// provider ‖ 0 ‖ …), one read each.
func (s *Store) providersUnder(p string) ([]string, error) {
	var out []string
	from, end := p, clientv3.GetPrefixRangeEnd(p)
	for {
		ctx, cancel := s.ctx()
		resp, err := s.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(1), clientv3.WithKeysOnly())
		cancel()
		if err != nil {
			return nil, s.unreachable("read from", err)
		}
		if len(resp.Kvs) == 0 {
			return out, nil
		}
		name, _, ok := strings.Cut(strings.TrimPrefix(string(resp.Kvs[0].Key), p), "\x00")
		if !ok {
			return out, nil
		}
		out = append(out, name)
		from = p + name + "\x01"
	}
}

// counted counts the keys in [from, end).
func (s *Store) counted(from, end string) (int, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithCountOnly())
	if err != nil {
		return 0, s.unreachable("read from", err)
	}
	return int(resp.Count), nil
}

// perProvider calls fn with each provider's key range of index p (only
// provider's when it is not "").
func (s *Store) perProvider(p, provider string, fn func(name, from, end string) error) error {
	names := []string{provider}
	if provider == "" {
		var err error
		if names, err = s.providersUnder(p); err != nil {
			return err
		}
	}
	for _, name := range names {
		from := p + name + "\x00"
		if err := fn(name, from, clientv3.GetPrefixRangeEnd(from)); err != nil {
			return err
		}
	}
	return nil
}

// ExpiringCounts returns provider → grants forecast to die at or before t:
// a count per provider.
func (s *Store) ExpiringCounts(t time.Time) (map[string]int, error) {
	out := map[string]int{}
	err := s.perProvider(s.prefix+"exp/", "", func(name, from, _ string) error {
		n, err := s.counted(from, from+hex16(nanos(t)+1))
		if n > 0 {
			out[name] = n
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("count expiring grants: %w", err)
	}
	return out, nil
}

// EachExpiring calls fn for every grant forecast to die at or before t (of
// provider, unless ""), provider by provider, soonest first.
func (s *Store) EachExpiring(t time.Time, provider string, fn func(store.Grant) error) error {
	return s.perProvider(s.prefix+"exp/", provider, func(_, from, _ string) error {
		return s.eachListed(from, from+hex16(nanos(t)+1), fn)
	})
}

// UnreadableCounts returns provider → grants in the unreadable index.
func (s *Store) UnreadableCounts() (map[string]int, error) {
	out := map[string]int{}
	err := s.perProvider(s.prefix+"unr/", "", func(name, from, end string) error {
		n, err := s.counted(from, end)
		if n > 0 {
			out[name] = n
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("count unreadable grants: %w", err)
	}
	return out, nil
}

// EachUnreadable calls fn for every grant in the unreadable index (of
// provider, unless ""), by provider.
func (s *Store) EachUnreadable(provider string, fn func(store.Grant) error) error {
	return s.perProvider(s.prefix+"unr/", provider, func(_, from, end string) error {
		return s.eachListed(from, end, fn)
	})
}

// eachListed calls fn, a page at a time, for the grants named by the
// values of [from, end) (index entries → ids), in key order.
func (s *Store) eachListed(from, end string, fn func(store.Grant) error) error {
	var ids []string
	flush := func() error {
		gs, err := s.grants(ids)
		ids = ids[:0]
		if err != nil {
			return err
		}
		for _, g := range gs {
			if err := fn(g); err != nil {
				return err
			}
		}
		return nil
	}
	err := s.scan(from, end, page, func(_ string, val []byte) error {
		ids = append(ids, string(val))
		if len(ids) == page {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

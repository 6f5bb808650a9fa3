package etcd

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

// page is how many keys one range read returns; duePage, of the due index.
const (
	page    = 1024
	duePage = 8192
)

func notFound(id string) error { return fmt.Errorf("grant %q: %w", id, store.ErrNotFound) }

func (s *Store) corrupt(id string, err error) error {
	return fmt.Errorf("grant %q in %s: %w: %w", id, s.where, store.ErrCorrupt, err)
}

// recordIn is id's record in v; ok is false when there is none.
func (s *Store) recordIn(v *view, id string) (record, bool, error) {
	x := v.get(s.grantKey(id))
	if x.rev == 0 {
		return record{}, false, nil
	}
	r, err := decodeRecord(x.val)
	if err != nil {
		return record{}, false, s.corrupt(id, err)
	}
	return r, true, nil
}

func (s *Store) getRecord(id string) (record, error) {
	v, err := s.read([]string{s.grantKey(id)})
	if err != nil {
		return record{}, err
	}
	r, ok, err := s.recordIn(v, id)
	if err == nil && !ok {
		err = notFound(id)
	}
	return r, err
}

// Get returns the grant with the given id.
func (s *Store) Get(id string) (store.Grant, error) {
	r, err := s.getRecord(id)
	return r.g, err
}

// GetLease returns the grant with its unsealed token.
func (s *Store) GetLease(id string) (store.Lease, error) {
	r, err := s.getRecord(id)
	if err != nil {
		return store.Lease{}, err
	}
	return s.lease(&r)
}

func (s *Store) lease(r *record) (store.Lease, error) {
	pt, err := s.sealer.OpenToken(&r.g, r.sealed)
	if err != nil {
		return store.Lease{}, fmt.Errorf("open token of %q in %s: %w", r.g.ID, s.where, err)
	}
	return store.Lease{Grant: r.g, Token: secret.Secret(pt)}, nil
}

// History returns id's history, oldest first.
func (s *Store) History(id string) ([]store.HistoryEntry, error) {
	r, err := s.getRecord(id)
	if err != nil {
		return nil, err
	}
	hs := make([]store.HistoryEntry, 0, len(r.hist))
	for _, b := range r.hist {
		var h store.HistoryEntry
		if err := store.DecodeHistory(b, &h); err != nil {
			return nil, fmt.Errorf("decode history of %q: %w", id, err)
		}
		hs = append(hs, h)
	}
	return hs, nil
}

// scan calls fn for each key from..end (exclusive), size keys a read, with
// fn outside the read; fn's error stops it.
func (s *Store) scan(from, end string, size int, fn func(key string, val []byte) error) error {
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(int64(size))}
		ctx, cancel := s.ctx()
		resp, err := s.cli.Get(ctx, from, opts...)
		cancel()
		if err != nil {
			return s.unreachable("read from", err)
		}
		for _, x := range resp.Kvs {
			if err := fn(string(x.Key), x.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Each calls fn for every grant in id order, a page at a time.
func (s *Store) Each(fn func(store.Grant) error) error {
	p := s.grantPrefix()
	var pageOf []store.Grant
	flush := func() error {
		for _, g := range pageOf {
			if err := fn(g); err != nil {
				return err
			}
		}
		pageOf = pageOf[:0]
		return nil
	}
	err := s.scan(p, clientv3.GetPrefixRangeEnd(p), page, func(key string, val []byte) error {
		r, err := decodeRecord(val)
		if err != nil {
			return s.corrupt(strings.TrimPrefix(key, p), err)
		}
		pageOf = append(pageOf, r.g)
		if len(pageOf) == page {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// EachInState calls fn for every grant in state (of provider, unless ""),
// through the state index: provider, then creation order.
func (s *Store) EachInState(state store.State, provider string, fn func(store.Grant) error) error {
	if !indexed(state) {
		return s.eachScanned(state, provider, fn)
	}
	p := s.statePrefix(state, provider)
	return s.eachListed(p, clientv3.GetPrefixRangeEnd(p), func(g store.Grant) error {
		if g.State != state || (provider != "" && g.Provider != provider) {
			return nil // changed since the index was read
		}
		return fn(g)
	})
}

// eachScanned is EachInState for a state without index entries: a read of
// every grant, the matching ones sorted by provider and creation.
func (s *Store) eachScanned(state store.State, provider string, fn func(store.Grant) error) error {
	var gs []store.Grant
	err := s.Each(func(g store.Grant) error {
		if g.State == state && (provider == "" || g.Provider == provider) {
			gs = append(gs, g)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(gs, func(a, b store.Grant) int {
		return cmp.Or(strings.Compare(a.Provider, b.Provider), cmp.Compare(a.Row, b.Row))
	})
	for _, g := range gs {
		if err := fn(g); err != nil {
			return err
		}
	}
	return nil
}

// grants reads the records of ids, in their order, passing over those gone.
func (s *Store) grants(ids []string) ([]store.Grant, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.grantKey(id)
	}
	v, err := s.read(keys)
	if err != nil {
		return nil, err
	}
	out := make([]store.Grant, 0, len(ids))
	for _, id := range ids {
		r, ok, err := s.recordIn(v, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r.g)
		}
	}
	return out, nil
}

// Counts returns provider → state → number of grants, from the counters.
func (s *Store) Counts() (map[string]map[store.State]int, error) {
	v, err := s.read(nil, s.countPrefix())
	if err != nil {
		return nil, err
	}
	out := map[string]map[store.State]int{}
	for k, x := range v.under(s.countPrefix()) {
		// provider ‖ 0 ‖ state ‖ 0 ‖ shard
		parts := strings.Split(strings.TrimPrefix(k, s.countPrefix()), "\x00")
		n, err := strconv.Atoi(string(x.val))
		if len(parts) != 3 || err != nil {
			continue
		}
		if out[parts[0]] == nil {
			out[parts[0]] = map[store.State]int{}
		}
		out[parts[0]][store.State(parts[1])] += n
	}
	for p, m := range out {
		for st, n := range m {
			if n == 0 {
				delete(m, st)
			}
		}
		if len(m) == 0 {
			delete(out, p)
		}
	}
	return out, nil
}

// Due returns up to limit grants due at or before now, earliest first, with
// their unsealed tokens; take is asked first for each (by row, from the
// due key), so that the records of grants the caller holds are not read.
func (s *Store) Due(now time.Time, limit int, take func(row uint64) bool) ([]store.Lease, error) {
	p := s.duePrefix()
	end := p + hex16(nanos(now)+1)
	type due struct {
		id  string
		ns  uint64
		row uint64
	}
	var got []due
	errFull := errors.New("full")
	// Pages of duePage keys: a scan during a round passes over the
	// grants in flight, thousands, before it finds those to hand out.
	err := s.scan(p, end, duePage, func(key string, val []byte) error {
		ns, row, ok := parseDue(strings.TrimPrefix(key, p))
		if !ok {
			return nil
		}
		if take != nil && !take(row) {
			return nil
		}
		got = append(got, due{id: string(val), ns: ns, row: row})
		if limit > 0 && len(got) >= limit {
			return errFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		return nil, fmt.Errorf("scan due grants: %w", err)
	}
	keys := make([]string, len(got))
	for i, d := range got {
		keys[i] = s.grantKey(d.id)
	}
	v, err := s.read(keys)
	if err != nil {
		return nil, fmt.Errorf("scan due grants: %w", err)
	}
	out := make([]store.Lease, 0, len(got))
	var bad []error
	for _, d := range got {
		r, ok, err := s.recordIn(v, d.id)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		if !ok || r.g.Row != d.row || nanos(r.g.NextDueAt) != d.ns || r.g.NextDueAt.IsZero() {
			continue // written meanwhile: its own entry, if any, is where it belongs
		}
		l, err := s.lease(&r)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		s.seen.put(s.grantKey(d.id), v.get(s.grantKey(d.id)))
		out = append(out, l)
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("scan due grants in %s: %w", s.where, errors.Join(bad...))
	}
	return out, nil
}

// NextDue returns the earliest due time of any grant.
func (s *Store) NextDue() (time.Time, bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	p := s.duePrefix()
	resp, err := s.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithLimit(1), clientv3.WithKeysOnly())
	if err != nil {
		return time.Time{}, false, s.unreachable("read from", err)
	}
	if len(resp.Kvs) == 0 {
		return time.Time{}, false, nil
	}
	ns, _, ok := parseDue(strings.TrimPrefix(string(resp.Kvs[0].Key), p))
	if !ok {
		return time.Time{}, false, nil
	}
	return time.Unix(0, int64(ns)), true, nil
}

// indexed reports whether grants in state have state index entries: the
// states of the few grants something must be done about (reconnect,
// held, degraded), which status, alerts and releases list. Healthy and
// pending grants, most of a fleet or all of a new import, have none: a
// probe of one writes no index entry, and a listing of them reads the
// fleet anyway.
func indexed(state store.State) bool {
	return state != store.StateHealthy && state != store.StatePending
}

// writeGrant adds to u the writes of record r over orig (nil: a new
// grant): its history entries appended (the oldest dropped beyond the
// limit), the record, its due and state index entries and the counters.
func (s *Store) writeGrant(u *unit, orig, r *record, hist []store.HistoryEntry) {
	id := r.g.ID
	gk := s.grantKey(id)
	u.deps = append(u.deps, gk)
	if len(hist) > 0 {
		all := append([][]byte(nil), r.hist...)
		for i := range hist {
			all = append(all, store.EncodeHistory(&hist[i]))
		}
		r.hist = all[max(0, len(all)-s.historyLimit):]
	}
	val := r.encode()
	u.put(gk, val)
	u.writes[gk] = []byte(val)

	var oldDue, oldState string
	if orig != nil {
		oldDue = s.dueKey(orig.g.NextDueAt, orig.g.Row)
		if indexed(orig.g.State) {
			oldState = s.stateKey(&orig.g)
		}
	}
	if newDue := s.dueKey(r.g.NextDueAt, r.g.Row); newDue != oldDue {
		if oldDue != "" {
			u.del(oldDue)
		}
		if newDue != "" {
			u.put(newDue, id)
		}
	}
	var oldExp, oldUnread string
	if orig != nil {
		oldExp, oldUnread = s.watchKeys(&orig.g)
	}
	newExp, newUnread := s.watchKeys(&r.g)
	for _, m := range [][2]string{{oldExp, newExp}, {oldUnread, newUnread}} {
		if m[0] == m[1] {
			continue
		}
		if m[0] != "" {
			u.del(m[0])
		}
		if m[1] != "" {
			u.put(m[1], id)
		}
	}
	newState := ""
	if indexed(r.g.State) {
		newState = s.stateKey(&r.g)
	}
	if newState != oldState {
		if oldState != "" {
			u.del(oldState)
		}
		if newState != "" {
			u.put(newState, id)
		}
	}
	if orig == nil || orig.g.State != r.g.State || orig.g.Provider != r.g.Provider {
		if orig != nil {
			u.delta(s.countKey(orig.g.Provider, orig.g.State), -1)
		}
		u.delta(s.countKey(r.g.Provider, r.g.State), 1)
	}
}

// removeGrant adds to u the removal of r and everything stored for it.
func (s *Store) removeGrant(u *unit, r *record) {
	gk := s.grantKey(r.g.ID)
	u.deps = append(u.deps, gk)
	u.del(gk)
	u.writes[gk] = nil
	if k := s.dueKey(r.g.NextDueAt, r.g.Row); k != "" {
		u.del(k)
	}
	if indexed(r.g.State) {
		u.del(s.stateKey(&r.g))
	}
	exp, unread := s.watchKeys(&r.g)
	for _, k := range []string{exp, unread} {
		if k != "" {
			u.del(k)
		}
	}
	u.delta(s.countKey(r.g.Provider, r.g.State), -1)
}

// write writes items: it reads the keys keys(rest) names (and every key
// under prefixes) into a view, has build make the units of the items not
// yet written (each unit's items are indexes into rest; an item without a
// unit has nothing to write), and commits them. After a conflict it reads
// again and rebuilds the items of the units not committed. It returns the
// committed units, also with an error (those landed).
func write[T any](s *Store, what string, items []T, keys func(rest []T) []string, prefixes []string,
	build func(v *view, rest []T, committed []*unit) ([]*unit, error)) ([]*unit, error) {
	rest := items
	var committed []*unit
	for attempt := 0; ; attempt++ {
		if len(rest) == 0 {
			return committed, nil
		}
		v, err := s.read(keys(rest), prefixes...)
		if err != nil {
			return committed, fmt.Errorf("%s: %w", what, err)
		}
		units, err := build(v, rest, committed)
		if err != nil {
			return committed, fmt.Errorf("%s: %w", what, err)
		}
		landed, err := s.commit(v, units)
		var left []T
		for i, u := range units {
			if landed[i] {
				committed = append(committed, u)
				continue
			}
			for _, j := range u.items {
				left = append(left, rest[j])
			}
		}
		if err == nil {
			return committed, nil
		}
		if !errors.Is(err, errConflict) {
			return committed, fmt.Errorf("%s: %w", what, err)
		}
		if attempt == maxAttempts {
			return committed, fmt.Errorf("%s in %s: %d attempts met concurrent writes: %w", what, s.where, attempt+1, err)
		}
		rest = left
	}
}

// Import stores new grants and replaces the tokens of existing ones
// (store.DB.Import). In etcd an import lands in transactions of a few
// dozen grants, in order: on an error the earlier ones stay imported, and
// are counted in created and replaced.
func (s *Store) Import(gs []store.NewGrant, now time.Time, opts store.ImportOptions) (created, replaced int, err error) {
	if err := store.CheckImport(gs); err != nil {
		return 0, 0, err
	}
	units, err := s.importGrants(gs, now, opts, nil)
	created, replaced = countImported(units)
	if err != nil {
		return created, replaced, fmt.Errorf("import into %s: %w", s.where, err)
	}
	return created, replaced, nil
}

func countImported(units []*unit) (created, replaced int) {
	for _, u := range units {
		created += u.created
		replaced += u.replaced
	}
	return created, replaced
}

// importItem is a grant to import, or (ng nil) the job unit that follows
// them.
type importItem struct{ ng *store.NewGrant }

// importGrants imports gs, a unit per grant (an id given twice is one
// unit, the later import over the earlier, as in bbolt). job, when set,
// builds a last unit (an import job's progress), committed once every
// grant landed: its keys are read with the grants', and it is given the
// counts of the grants.
func (s *Store) importGrants(gs []store.NewGrant, now time.Time, opts store.ImportOptions, job *jobUnit) ([]*unit, error) {
	items := make([]importItem, 0, len(gs)+1)
	for i := range gs {
		items = append(items, importItem{&gs[i]})
	}
	var done []*unit
	if len(items) > 0 {
		var err error
		done, err = write(s, "import", items,
			func(rest []importItem) []string {
				keys := []string{s.removedGenKey()}
				for _, it := range rest {
					keys = append(keys, s.grantKey(it.ng.ID))
				}
				return keys
			},
			[]string{s.countPrefix()},
			func(v *view, rest []importItem, committed []*unit) ([]*unit, error) {
				if len(committed) == 0 {
					// What opts refuse is refused before anything is
					// written (a conflict met later, by a write
					// meanwhile, leaves the transactions before it).
					if err := s.conflicts(v, rest).Refused(opts); err != nil {
						return nil, err
					}
				}
				return s.buildImport(v, rest, now)
			})
		if err != nil {
			return done, err
		}
	}
	if job == nil {
		return done, nil
	}
	c, r := countImported(done)
	units, err := write(s, "import", []int{0}, func([]int) []string { return job.keys }, nil,
		func(v *view, _ []int, _ []*unit) ([]*unit, error) {
			u := newUnit()
			u.items = []int{0}
			return []*unit{u}, job.build(v, u, c, r)
		})
	return append(done, units...), err
}

// conflicts are the grants of rest that exist in v.
func (s *Store) conflicts(v *view, rest []importItem) *store.Conflicts {
	c := &store.Conflicts{}
	for _, it := range rest {
		if r, ok, err := s.recordIn(v, it.ng.ID); err == nil && ok {
			c.AddConflict(it.ng.ID, r.g)
		}
	}
	return c
}

// ImportConflicts names which of gs exist and which of those have a token
// rotated since it was stored from outside, without writing.
func (s *Store) ImportConflicts(gs []store.NewGrant) (store.Conflicts, error) {
	items := make([]importItem, len(gs))
	keys := make([]string, len(gs))
	for i := range gs {
		items[i], keys[i] = importItem{&gs[i]}, s.grantKey(gs[i].ID)
	}
	v, err := s.read(keys)
	if err != nil {
		return store.Conflicts{}, fmt.Errorf("look up grants to import: %w", err)
	}
	return *s.conflicts(v, items), nil
}

// buildImport makes the units of an import.
func (s *Store) buildImport(v *view, rest []importItem, now time.Time) ([]*unit, error) {
	firstGen := parseUint(v.get(s.removedGenKey()).val) + 1
	var order []string
	byID := map[string][]int{}
	for i, it := range rest {
		if byID[it.ng.ID] == nil {
			order = append(order, it.ng.ID)
		}
		byID[it.ng.ID] = append(byID[it.ng.ID], i)
	}
	// Rows for the new grants, taken before anything is written.
	news := 0
	for _, id := range order {
		if v.get(s.grantKey(id)).rev == 0 {
			news++
		}
	}
	var row uint64
	if news > 0 {
		first, err := s.reserve(s.seqKey("row"), news, 0)
		if err != nil {
			return nil, err
		}
		row = first - 1
	}
	units := make([]*unit, 0, len(order))
	for _, id := range order {
		stored, exists, err := s.recordIn(v, id)
		if err != nil {
			return nil, err
		}
		u := newUnit()
		u.items = byID[id]
		var orig *record
		r := record{}
		if exists {
			orig, r = &stored, stored
		} else {
			row++
			r.g.Row = row
			// A removal meanwhile raises removedgen, on which the new
			// grant's TokenGen rests.
			u.deps = append(u.deps, s.removedGenKey())
		}
		var hist []store.HistoryEntry
		for n, i := range u.items {
			ng := rest[i].ng
			var old *store.Grant
			if exists || n > 0 {
				old = &r.g
				u.replaced++
			} else {
				u.created++
			}
			g, h := store.ImportedGrant(old, ng, r.g.Row, now, firstGen)
			r.g = g
			r.sealed = s.sealer.SealToken(&r.g, []byte(ng.RefreshToken.Reveal()))
			hist = append(hist, h)
		}
		s.writeGrant(u, orig, &r, hist)
		units = append(units, u)
	}
	return units, nil
}

// SetToken stores a new token for id and resets the grant to pending, due
// at now.
func (s *Store) SetToken(id string, tok secret.Secret, now time.Time) (store.Grant, error) {
	if tok.IsZero() {
		return store.Grant{}, fmt.Errorf("set token of %q: token is empty", id)
	}
	var g store.Grant
	_, err := write(s, "set token", []string{id}, s.grantKeys, []string{s.countPrefix()},
		func(v *view, _ []string, _ []*unit) ([]*unit, error) {
			orig, ok, err := s.recordIn(v, id)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, notFound(id)
			}
			r := orig
			var h store.HistoryEntry
			r.g, h = store.TokenReplaced(orig.g, now)
			r.sealed = s.sealer.SealToken(&r.g, []byte(tok.Reveal()))
			u := newUnit()
			u.items = []int{0}
			s.writeGrant(u, &orig, &r, []store.HistoryEntry{h})
			g = r.g
			return []*unit{u}, nil
		})
	if err != nil {
		return store.Grant{}, err
	}
	return g, nil
}

// grantKeys are the keys of ids' records.
func (s *Store) grantKeys(ids []string) []string {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.grantKey(id)
	}
	return keys
}

// Remove deletes a grant and everything stored for it.
func (s *Store) Remove(id string) error {
	n, err := s.RemoveIDs([]string{id})
	if err == nil && n == 0 {
		err = notFound(id)
	}
	return err
}

// RemoveIDs removes the grants with the given ids, passing over unknown
// ones, and returns how many it removed.
func (s *Store) RemoveIDs(ids []string) (int, error) {
	return s.removeIf(ids, func(store.Grant) bool { return true })
}

// removeIf removes those of ids whose grant matches, in transactions of a
// few dozen grants.
func (s *Store) removeIf(ids []string, match func(store.Grant) bool) (int, error) {
	units, err := write(s, "remove grants", ids,
		func(rest []string) []string { return append(s.grantKeys(rest), s.removedGenKey()) },
		[]string{s.countPrefix()},
		func(v *view, rest []string, _ []*unit) ([]*unit, error) {
			seen := map[string]bool{}
			var units []*unit
			var gen uint64
			for i, id := range rest {
				r, ok, err := s.recordIn(v, id)
				if err != nil {
					return nil, err
				}
				if !ok || seen[id] || !match(r.g) {
					continue
				}
				seen[id] = true
				u := newUnit()
				u.items = []int{i}
				s.removeGrant(u, &r)
				gen = max(gen, r.g.TokenGen)
				units = append(units, u)
			}
			// removedgen is raised before the grants go: an import that
			// finds one gone finds its TokenGen counted.
			if gen > parseUint(v.get(s.removedGenKey()).val) {
				if err := s.raise(s.removedGenKey(), gen); err != nil {
					return nil, err
				}
			}
			return units, nil
		})
	return len(units), err
}

// RemoveWhere removes every grant in state (any when "") of provider (any
// when ""); at least one must be given.
func (s *Store) RemoveWhere(state store.State, provider string) (int, error) {
	if state == "" && provider == "" {
		return 0, errors.New("remove grants: name a state or a provider (refusing to remove every grant)")
	}
	if state != "" && !state.Valid() {
		return 0, fmt.Errorf("remove grants: unknown state %q", state)
	}
	states := store.States()
	if state != "" {
		states = []store.State{state}
	}
	n := 0
	for _, st := range states {
		var ids []string
		err := s.EachInState(st, provider, func(g store.Grant) error { ids = append(ids, g.ID); return nil })
		if err != nil {
			return n, err
		}
		m, err := s.removeIf(ids, func(g store.Grant) bool {
			return g.State == st && (provider == "" || g.Provider == provider)
		})
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Reschedule makes every grant in state (of provider and with cause, when
// non-empty) due at at.
func (s *Store) Reschedule(at time.Time, state store.State, provider, cause string) (int, error) {
	var ids []string
	err := s.EachInState(state, provider, func(g store.Grant) error {
		if cause == "" || g.Cause == cause {
			ids = append(ids, g.ID)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reschedule %s grants: %w", state, err)
	}
	units, err := write(s, "reschedule", ids, s.grantKeys, nil,
		func(v *view, rest []string, _ []*unit) ([]*unit, error) {
			var units []*unit
			for i, id := range rest {
				orig, ok, err := s.recordIn(v, id)
				if err != nil {
					return nil, err
				}
				if !ok || orig.g.State != state || (provider != "" && orig.g.Provider != provider) || (cause != "" && orig.g.Cause != cause) {
					continue
				}
				r := orig
				r.g.NextDueAt = at
				u := newUnit()
				u.items = []int{i}
				s.writeGrant(u, &orig, &r, nil)
				units = append(units, u)
			}
			return units, nil
		})
	if err != nil {
		return len(units), fmt.Errorf("reschedule %s grants: %w", state, err)
	}
	return len(units), nil
}

package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/store"
	"github.com/grantwatch/grantwatch/store/etcd"
	"github.com/grantwatch/grantwatch/store/storetest"
)

func revision(t *testing.T, s *etcd.Store) int64 {
	t.Helper()
	resp, err := s.Client().Get(context.Background(), "rev")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func importN(t *testing.T, s *etcd.Store, n int) []string {
	t.Helper()
	gs := make([]store.NewGrant, n)
	ids := make([]string, n)
	for i := range gs {
		ids[i] = fmt.Sprintf("g%04d", i)
		gs[i] = store.NewGrant{ID: ids[i], Provider: "p", RefreshToken: "t"}
	}
	if created, _, err := s.Import(gs, storetest.T0, store.ImportOptions{}); err != nil || created != n {
		t.Fatalf("Import = %d, %v", created, err)
	}
	return ids
}

// TestGroupsSplitAtTheOperationLimit: a group of 300 results, each a
// transition with a rotated token, history and an outbox entry, is more
// than etcd's 128 operations a transaction: it lands in transactions of
// whole results, all of it.
func TestGroupsSplitAtTheOperationLimit(t *testing.T) {
	s := openTest(t)
	ids := importN(t, s, 300)
	before := revision(t, s)
	items := make([]store.ApplyItem, len(ids))
	for i, id := range ids {
		items[i] = store.ApplyItem{ID: id, Fn: func(cur store.Grant) (store.Change, error) {
			cur.State, cur.NextDueAt = store.StateHealthy, storetest.T0.Add(time.Hour)
			return store.Change{Grant: cur, NewToken: secretOf("r-" + id),
				History: &store.HistoryEntry{At: storetest.T0, From: store.StatePending, To: store.StateHealthy},
				Outbox:  []store.OutboxEntry{{Receiver: "hook", Payload: []byte(`"` + id + `"`)}}}, nil
		}}
	}
	errs, err := s.ApplyAll(items)
	if err != nil || errors.Join(errs...) != nil {
		t.Fatalf("ApplyAll = %v, %v", errors.Join(errs...), err)
	}
	// Each result: record, due entry moved, an outbox entry (4
	// operations), and the counters.
	txns := revision(t, s) - before
	if txns < 300*4/128 || txns > 300/8 {
		t.Errorf("%d transactions for 300 results of 4 operations, want about %d", txns, 300*4/120)
	}
	c, _ := s.Counts()
	if c["p"][store.StateHealthy] != 300 {
		t.Errorf("Counts = %v, want 300 healthy", c)
	}
	if es, _ := s.PendingOutbox("hook", 0); len(es) != 300 {
		t.Errorf("%d outbox entries, want 300", len(es))
	}
	for _, id := range []string{ids[0], ids[299]} {
		if l, _ := s.GetLease(id); l.Token.Reveal() != "r-"+id {
			t.Errorf("%s's token = %q", id, l.Token.Reveal())
		}
	}
}

// TestGroupsSplitAtTheRequestSize: 20 results of 100 KiB each fit etcd's
// operation limit but not its request size (1.5 MiB): they land in
// transactions of at most 1 MiB.
func TestGroupsSplitAtTheRequestSize(t *testing.T) {
	s := openTest(t)
	ids := importN(t, s, 20)
	payload := []byte(`"` + strings.Repeat("x", 100<<10) + `"`)
	before := revision(t, s)
	items := make([]store.ApplyItem, len(ids))
	for i, id := range ids {
		items[i] = store.ApplyItem{ID: id, Fn: func(cur store.Grant) (store.Change, error) {
			return store.Change{Grant: cur, Outbox: []store.OutboxEntry{{Receiver: "hook", Payload: payload}}}, nil
		}}
	}
	errs, err := s.ApplyAll(items)
	if err != nil || errors.Join(errs...) != nil {
		t.Fatalf("ApplyAll = %v, %v", errors.Join(errs...), err)
	}
	if txns := revision(t, s) - before; txns < 2 {
		t.Errorf("%d transaction(s) for 2 MiB of results, want at least 2", txns)
	}
	if es, _ := s.PendingOutbox("hook", 0); len(es) != 20 {
		t.Errorf("%d outbox entries, want 20", len(es))
	}
}

// TestResultTooLargeForATransaction: one result no transaction holds (200
// outbox entries) fails alone; the others of its group land.
func TestResultTooLargeForATransaction(t *testing.T) {
	s := openTest(t)
	ids := importN(t, s, 2)
	var many []store.OutboxEntry
	for range 200 {
		many = append(many, store.OutboxEntry{Receiver: "hook", Payload: []byte(`1`)})
	}
	errs, err := s.ApplyAll([]store.ApplyItem{
		{ID: ids[0], Fn: func(cur store.Grant) (store.Change, error) { return store.Change{Grant: cur, Outbox: many}, nil }},
		{ID: ids[1], Fn: func(cur store.Grant) (store.Change, error) {
			cur.State = store.StateHealthy
			return store.Change{Grant: cur}, nil
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] == nil || !strings.Contains(errs[0].Error(), "etcd transaction") || errs[1] != nil {
		t.Errorf("errs = %v; want the first item alone refused", errs)
	}
	if g, _ := s.Get(ids[1]); g.State != store.StateHealthy {
		t.Errorf("the other result was not written: %v", g.State)
	}
	if es, _ := s.PendingOutbox("hook", 0); len(es) != 0 {
		t.Errorf("%d entries of the refused result enqueued", len(es))
	}
}

// TestOpenChecksKeyAndSchema: a prefix sealed with another key is refused
// with ErrWrongKey, one of a newer schema with ErrNewerSchema, and nothing
// is written to either.
func TestOpenChecksKeyAndSchema(t *testing.T) {
	prefix := newPrefix()
	openAt(t, cluster.Endpoints, prefix).Close()
	other := make([]byte, store.KeySize)
	if _, err := etcd.Open(context.Background(), etcd.Options{Endpoints: cluster.Endpoints, Prefix: prefix, Key: other}); !errors.Is(err, store.ErrWrongKey) {
		t.Errorf("Open with another key = %v, want ErrWrongKey", err)
	}
	s := openAt(t, cluster.Endpoints, prefix)
	if _, err := s.Client().Put(context.Background(), prefix+"schema", "99"); err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.Open(context.Background(), etcd.Options{Endpoints: cluster.Endpoints, Prefix: prefix, Key: testKey}); !errors.Is(err, store.ErrNewerSchema) {
		t.Errorf("Open of schema 99 = %v, want ErrNewerSchema", err)
	}
}

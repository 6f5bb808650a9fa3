package etcd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/etcdtest"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/store"
	"github.com/grantwatch/grantwatch/store/etcd"
	"github.com/grantwatch/grantwatch/store/storetest"
)

func join(t *testing.T, s *etcd.Store, name string, ttl time.Duration) *etcd.Session {
	t.Helper()
	m, err := s.Join(context.Background(), etcd.Member{Name: name}, ttl)
	if err != nil {
		t.Fatalf("Join(%s): %v", name, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestFenceRefusesDeposedLeader: once a leader's election key is gone (its
// lease revoked, as when it expires), its fenced writes fail with
// ErrFenced and write nothing, while the new leader's land.
func TestFenceRefusesDeposedLeader(t *testing.T) {
	prefix := newPrefix()
	a, b := openAt(t, cluster.Endpoints, prefix), openAt(t, cluster.Endpoints, prefix)
	if _, _, err := a.Import([]store.NewGrant{{ID: "g", Provider: "p", RefreshToken: "t0"}}, storetest.T0, store.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	ma := join(t, a, "a", 5*time.Second)
	ta, err := ma.Campaign(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	a.SetFence(ta.Fence())
	rotate := func(s *etcd.Store, tok string) error {
		return s.Apply("g", func(cur store.Grant) (store.Change, error) {
			return store.Change{Grant: cur, NewToken: secretOf(tok)}, nil
		})
	}
	if err := rotate(a, "t1"); err != nil {
		t.Fatalf("the leader's fenced write: %v", err)
	}
	mb := join(t, b, "b", 5*time.Second)
	won := make(chan *etcd.Term, 1)
	go func() {
		tb, err := mb.Campaign(context.Background())
		if err != nil {
			t.Error(err)
		}
		won <- tb
	}()
	// a's lease ends (Close revokes it, as expiry would delete its keys).
	ma.Close()
	var tb *etcd.Term
	select {
	case tb = <-won:
	case <-time.After(10 * time.Second):
		t.Fatal("b did not win the election after a's lease ended")
	}
	select {
	case <-ta.Done():
	case <-time.After(5 * time.Second):
		t.Error("a's term is not done after its session closed")
	}
	if err := rotate(a, "late"); !errors.Is(err, etcd.ErrFenced) {
		t.Errorf("the deposed leader's write = %v, want ErrFenced", err)
	}
	b.SetFence(tb.Fence())
	if err := rotate(b, "t2"); err != nil {
		t.Errorf("the new leader's write: %v", err)
	}
	if l, _ := b.GetLease("g"); l.Token.Reveal() != "t2" {
		t.Errorf("token = %q, want t2 (the deposed leader's late write must not land)", l.Token.Reveal())
	}
	if m, ok, err := b.Leader(context.Background()); err != nil || !ok || m.Name != "b" {
		t.Errorf("Leader = %+v, %v, %v; want b", m, ok, err)
	}
}

// TestCampaignEndsWithItsSession: a candidate waiting behind a leader
// whose own lease expires meanwhile returns ErrSessionLost instead of
// waiting for ever (the zombie candidate of etcd's Campaign).
func TestCampaignEndsWithItsSession(t *testing.T) {
	prefix := newPrefix()
	a := openAt(t, cluster.Endpoints, prefix)
	if _, err := join(t, a, "a", 5*time.Second).Campaign(context.Background()); err != nil {
		t.Fatal(err)
	}
	px := etcdtest.NewProxy(t, cluster)
	b := openAt(t, px.Endpoints, prefix)
	mb := join(t, b, "b", 2*time.Second)
	errc := make(chan error, 1)
	go func() {
		_, err := mb.Campaign(context.Background())
		errc <- err
	}()
	time.Sleep(500 * time.Millisecond) // b waits behind a
	px.Cut()
	select {
	case err := <-errc:
		if !errors.Is(err, etcd.ErrSessionLost) {
			t.Errorf("Campaign = %v, want ErrSessionLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Campaign still waits 10s after its session's lease could no longer be kept")
	}
}

// TestMarginDropsAtMissedKeepAlive: cut off from the cluster, a session's
// margin falls to zero as soon as a keep-alive is overdue (a third of the
// TTL and a twelfth), long before the lease runs out; while keep-alives
// arrive it never falls below MinMargin.
func TestMarginDropsAtMissedKeepAlive(t *testing.T) {
	px := etcdtest.NewProxy(t, cluster)
	s := openAt(t, px.Endpoints, newPrefix())
	// Long enough that a keep-alive answer the race detector and a busy
	// machine delay (by up to ttl/12, 750ms) is not taken for a missed one.
	ttl := 9 * time.Second
	m := join(t, s, "a", ttl)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got := m.Margin(); got < etcd.MinMargin(ttl) {
			t.Fatalf("healthy session's margin %s, below MinMargin %s", got, etcd.MinMargin(ttl))
		}
	}
	cut := time.Now()
	px.Cut()
	testutil.WaitFor(t, ttl, "margin 0", func() bool { return m.Margin() == 0 })
	if since := time.Since(cut); since > ttl/3+ttl/12+time.Second {
		t.Errorf("margin fell to 0 %s after the cut, want within a keep-alive interval (%s)", since, ttl/3+ttl/12)
	}
	select {
	case <-m.Done():
	case <-time.After(2 * ttl):
		t.Error("session not done two TTLs after the cut")
	}
}

package etcd

// Leadership. Every instance joins with a session: one lease, kept alive
// by the client, that holds its heartbeat key (members/<name>) and, once
// it campaigns, its election key (leader/<lease>). The instance whose
// election key is the oldest leads; its Term's Fence (the key and its
// create revision) is compared by every write it makes, so a write sent
// after its lease expired (and another took over) fails instead of
// landing.
//
// The lease is watched on this side too (Session.Margin): a leader may
// start a refresh only while the lease surely outlives it, because a
// refresh cannot be fenced at the provider. The margin counts from the
// arrival of the last keep-alive answer (etcd renewed the lease when it
// got the request, a round trip earlier: an error of milliseconds against
// seconds, which marginSafety more than covers), and drops to zero as soon
// as a keep-alive is overdue.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Fence is a leader's right to write: its election key and the revision
// that created it. Compared with CreateRevision, it fails once the key is
// gone (the lease expired or was revoked), whoever leads then.
type Fence struct {
	Key string
	Rev int64
}

func (f *Fence) cmp() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(f.Key), "=", f.Rev)
}

// holds reports whether a read of the fence key shows it in place.
func (f *Fence) holds(r *pb.RangeResponse) bool {
	return r != nil && len(r.Kvs) == 1 && r.Kvs[0].CreateRevision == f.Rev
}

// SetFence makes every later write of s compare f; nil removes the fence.
// A daemon sets it when it starts to lead and keeps it until it exits.
func (s *Store) SetFence(f *Fence) { s.fence.Store(f) }

// ErrSessionLost is a session whose lease expired or could not be kept
// alive: its keys are gone, and with them any leadership.
var ErrSessionLost = errors.New("etcd session lost (lease expired or unreachable)")

// Member is one grantwatch instance as its heartbeat key says.
type Member struct {
	// Name identifies the instance ([store] name; the host name by default).
	Name string `json:"name"`
	// URL is where it serves daemon.listen, for redirects ("" when none
	// was advertised).
	URL string `json:"url,omitempty"`
	// Leader is true while it leads.
	Leader bool `json:"leader"`
	// Started is when it joined; Heartbeat when it last wrote its key.
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"`
}

// Session is this instance's membership: a lease kept alive, its
// heartbeat, and the campaign.
type Session struct {
	s    *Store
	sess *concurrency.Session
	ttl  time.Duration

	mu   sync.Mutex
	self Member

	kaMono atomic.Pointer[time.Time]
	done   chan struct{}
	once   sync.Once
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

// Join starts a session with a lease of ttl (whole seconds, at least 1s):
// self's heartbeat key lives as long as the lease, refreshed every third of
// ttl.
func (s *Store) Join(ctx context.Context, self Member, ttl time.Duration) (*Session, error) {
	secs := max(1, int64((ttl+time.Second-1)/time.Second))
	ttl = time.Duration(secs) * time.Second
	before := time.Now()
	gctx, cancel := context.WithTimeout(ctx, s.timeout)
	lease, err := s.cli.Grant(gctx, secs)
	cancel()
	if err != nil {
		return nil, s.unreachable("join", err)
	}
	bg, stop := context.WithCancel(context.Background())
	ka, err := s.cli.KeepAlive(bg, lease.ID)
	if err != nil {
		stop()
		return nil, s.unreachable("join", err)
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(int(secs)), concurrency.WithContext(bg))
	if err != nil {
		stop()
		return nil, s.unreachable("join", err)
	}
	m := &Session{s: s, sess: sess, ttl: ttl, done: make(chan struct{}), stop: stop}
	m.kaMono.Store(&before)
	now := time.Now()
	self.Started, self.Heartbeat, self.Leader = now, now, false
	m.self = self
	m.wg.Go(func() {
		for range ka {
			t := time.Now()
			m.kaMono.Store(&t)
		}
		m.end()
	})
	m.wg.Go(func() {
		select {
		case <-sess.Done():
			m.end()
		case <-m.done:
		}
	})
	if err := m.heartbeat(ctx); err != nil {
		m.Close()
		return nil, err
	}
	m.wg.Go(func() { m.beat(bg) })
	return m, nil
}

func (m *Session) end() { m.once.Do(func() { close(m.done) }) }

// Done is closed when the session's lease is lost.
func (m *Session) Done() <-chan struct{} { return m.done }

// TTL is the lease's time to live.
func (m *Session) TTL() time.Duration { return m.ttl }

// overdue is when a keep-alive answer is late (the client asks every
// third of the TTL; a twelfth is slack); marginSafety is taken off the
// margin for the keep-alive's round trip and the clocks' rates, so that
// the margin of a healthy session is at least MinMargin.
func (m *Session) overdue() time.Duration      { return m.ttl/3 + m.ttl/12 }
func (m *Session) marginSafety() time.Duration { return m.ttl - MinMargin(m.ttl) - m.overdue() }

// Margin is how long the lease surely lives without another keep-alive:
// 0 once the session is lost or a keep-alive answer is overdue (the client
// asks every third of the TTL).
func (m *Session) Margin() time.Duration {
	select {
	case <-m.done:
		return 0
	default:
	}
	since := time.Since(*m.kaMono.Load())
	if since > m.overdue() {
		return 0
	}
	return max(0, m.ttl-since-m.marginSafety())
}

// MinMargin is the least Margin a healthy session has, half the TTL: a
// refresh of up to this long can always start while keep-alives arrive.
func MinMargin(ttl time.Duration) time.Duration { return ttl / 2 }

func (m *Session) memberKey() string { return m.s.prefix + "members/" + m.self.Name }

// heartbeat writes this member's key, attached to the lease.
func (m *Session) heartbeat(ctx context.Context) error {
	m.mu.Lock()
	m.self.Heartbeat = time.Now().UTC()
	val, err := json.Marshal(&m.self)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.s.timeout)
	defer cancel()
	if _, err := m.s.cli.Put(ctx, m.memberKey(), string(val), clientv3.WithLease(m.sess.Lease())); err != nil {
		return m.s.unreachable("heartbeat to", err)
	}
	return nil
}

func (m *Session) beat(ctx context.Context) {
	t := time.NewTicker(m.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.done:
			return
		case <-t.C:
			_ = m.heartbeat(ctx) // a missed beat shows as an old heartbeat
		}
	}
}

// Term is a leadership won by Campaign. It ends with the session.
type Term struct {
	m     *Session
	elec  *concurrency.Election
	fence Fence
}

// Fence is the term's fence (Store.SetFence).
func (t *Term) Fence() *Fence { f := t.fence; return &f }

// Done is closed when the term ended: the session's lease was lost.
func (t *Term) Done() <-chan struct{} { return t.m.done }

// Campaign blocks until this instance leads, ctx ends, or the session is
// lost (ErrSessionLost). Campaign of etcd's concurrency package waits for
// the older candidates' keys to go and does not notice that its own
// session expired meanwhile (the "zombie candidate"): the wait is cut
// when the session ends, and the election key is checked once it returns.
func (m *Session) Campaign(ctx context.Context) (*Term, error) {
	elec := concurrency.NewElection(m.sess, m.s.prefix+"leader/")
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.mu.Lock()
	val, _ := json.Marshal(Member{Name: m.self.Name, URL: m.self.URL, Leader: true, Started: m.self.Started})
	m.mu.Unlock()
	// Campaign resigns on its way out with the client's own context, which
	// does not end while the cluster is unreachable: it runs on its own,
	// and the wait for it ends with the session.
	errc := make(chan error, 1)
	go func() { errc <- elec.Campaign(cctx, string(val)) }()
	var err error
	select {
	case err = <-errc:
	case <-m.done:
		cancel()
		return nil, fmt.Errorf("campaign in %s: %w", m.s.where, ErrSessionLost)
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	}
	select {
	case <-m.done:
		return nil, fmt.Errorf("campaign in %s: %w", m.s.where, ErrSessionLost)
	default:
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, m.s.unreachable("campaign in", err)
	}
	t := &Term{m: m, elec: elec, fence: Fence{Key: elec.Key(), Rev: elec.Rev()}}
	// The key must still be ours: a lease that expired while Campaign
	// returned took it along.
	gctx, gcancel := context.WithTimeout(ctx, m.s.timeout)
	resp, err := m.s.cli.Get(gctx, t.fence.Key)
	gcancel()
	if err != nil {
		return nil, m.s.unreachable("campaign in", err)
	}
	if !t.fence.holds(&pb.RangeResponse{Kvs: resp.Kvs}) {
		return nil, fmt.Errorf("campaign in %s: %w", m.s.where, ErrSessionLost)
	}
	m.mu.Lock()
	m.self.Leader = true
	m.mu.Unlock()
	_ = m.heartbeat(ctx)
	return t, nil
}

// Close resigns (if leading), revokes the lease (its keys go at once, so a
// standby takes over without waiting for the TTL) and stops the
// keep-alives.
func (m *Session) Close() error {
	var err error
	select {
	case <-m.done: // lost: nothing to revoke
	default:
		ctx, cancel := m.s.ctx() // at once after Abort: the lease runs out anyway
		_, err = m.s.cli.Revoke(ctx, m.sess.Lease())
		cancel()
	}
	m.sess.Orphan()
	m.stop()
	m.end()
	m.wg.Wait()
	return err
}

// Leader returns the instance that leads now; ok is false when none does.
func (s *Store) Leader(ctx context.Context) (Member, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+"leader/", append([]clientv3.OpOption{clientv3.WithPrefix()}, clientv3.WithFirstCreate()...)...)
	if err != nil {
		return Member{}, false, s.unreachable("read leader from", err)
	}
	if len(resp.Kvs) == 0 {
		return Member{}, false, nil
	}
	var m Member
	if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil {
		return Member{}, false, fmt.Errorf("leader key in %s: %w", s.where, err)
	}
	return m, true, nil
}

// Members returns the instances whose session lives, by name.
func (s *Store) Members(ctx context.Context) ([]Member, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+"members/", clientv3.WithPrefix())
	if err != nil {
		return nil, s.unreachable("read members from", err)
	}
	var out []Member
	for _, x := range resp.Kvs {
		var m Member
		if json.Unmarshal(x.Value, &m) == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

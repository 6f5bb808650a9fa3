package daemon

// Leadership in a fleet that shares an etcd store ([store] backend =
// "etcd"). Every instance serves the read API from etcd; only the leader
// schedules probes, refreshes tokens, announces the clock and dispatches
// the outbox. The leader's writes are fenced (store/etcd: each compares its
// election key's create revision), and it starts a refresh only while its
// lease surely outlives it (refreshAllowed), since a refresh cannot be
// fenced at the provider. A leader that loses its lease stops at once: Run
// returns errLeadershipLost after the normal shutdown, the process exits
// and its supervisor (systemd's Restart=) starts it again as a standby,
// with nothing of the old term left in memory.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lmittmann/tint"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/store"
	"github.com/grantwatch/grantwatch/store/etcd"
)

// errLeadershipLost ends Run when this instance's term ended.
var errLeadershipLost = errors.New("leadership lost (etcd lease expired or unreachable): stopped probing; exiting so that the supervisor restarts this instance as a standby")

// errLeaseMargin refuses a refresh while the lease has less than
// probe_timeout left.
var errLeaseMargin = errors.New("lease margin below daemon.probe_timeout")

// cluster is this daemon's part in the fleet.
type cluster struct {
	st  *etcd.Store
	cfg config.StoreConfig
	log *slog.Logger

	mu   sync.Mutex
	sess *etcd.Session
	term atomic.Pointer[etcd.Term]
	// elected is closed when this instance starts to lead.
	elected chan struct{}
	// lost is set when the term ended.
	lost atomic.Bool
}

func newCluster(st *etcd.Store, cfg config.StoreConfig, log *slog.Logger) *cluster {
	return &cluster{st: st, cfg: cfg, log: log.With("instance", cfg.Name), elected: make(chan struct{})}
}

func (c *cluster) session() *etcd.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// leading reports whether this instance leads now.
func (c *cluster) leading() bool {
	t := c.term.Load()
	if t == nil {
		return false
	}
	select {
	case <-t.Done():
		return false
	default:
		return true
	}
}

// run joins the fleet and campaigns until ctx ends or, once leading, the
// term ends (errLeadershipLost). onElected runs when the term begins,
// after the fence is set.
func (c *cluster) run(ctx context.Context, url string, onElected func()) error {
	self := etcd.Member{Name: c.cfg.Name, URL: url}
	retry := c.cfg.LeaseTTL / 3
	for {
		sess, err := c.st.Join(ctx, self, c.cfg.LeaseTTL)
		if err != nil {
			c.log.Warn("cannot join the fleet; retrying", tint.Err(err), "retry_in", retry.String())
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(retry):
				continue
			}
		}
		c.mu.Lock()
		c.sess = sess
		c.mu.Unlock()
		c.log.Info("joined the fleet as a standby", "lease_ttl", c.cfg.LeaseTTL.String())
		term, err := sess.Campaign(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			c.log.Warn("campaign ended without leadership; joining again", tint.Err(err))
			sess.Close()
			continue
		}
		c.st.SetFence(term.Fence())
		c.term.Store(term)
		close(c.elected)
		c.log.Info("leading the fleet", "fence_revision", term.Fence().Rev)
		onElected()
		select {
		case <-ctx.Done():
			return nil
		case <-term.Done():
			c.lost.Store(true)
			// Nothing this instance still writes could land (fenced):
			// fail its requests now rather than at their timeout, so
			// that it stops at once.
			c.st.Abort()
			c.log.Error("leadership lost: no refresh starts from here on", "fix", "check this host's connection to the etcd members; the supervisor restarts grantwatch as a standby")
			return errLeadershipLost
		}
	}
}

// leave resigns and ends the session: its keys go at once, so a standby
// takes over without waiting for the lease to run out. Run calls it last,
// once nothing of this term writes any more.
func (c *cluster) leave() {
	if s := c.session(); s != nil {
		if err := s.Close(); err != nil {
			c.log.Debug("leave the fleet", tint.Err(err))
		}
	}
}

// joinCluster starts the campaign of an etcd-backed daemon and returns the
// context Run goes on with: cancelled, with errLeadershipLost as its cause,
// when the term ends. stop ends the campaign; leave (after the shutdown)
// gives up the session. Without a cluster it returns ctx itself.
func (d *Daemon) joinCluster(ctx context.Context) (context.Context, func()) {
	c := d.cluster
	if c == nil {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.run(ctx, c.cfg.AdvertiseURL, d.onElected); err != nil {
			cancel(err)
		}
	}()
	return ctx, func() {
		cancel(nil)
		<-done
		c.leave()
	}
}

// onElected takes up what the leader alone does, from the state in etcd:
// provider health as last announced (a standby starts none: no probe of
// its own judged a provider), the clock's announcement, a due scan.
func (d *Daemon) onElected() {
	d.healthMu.Lock()
	d.mu.RLock()
	d.initHealth()
	d.mu.RUnlock()
	d.healthMu.Unlock()
	d.onClockChange(ClockSnapshot{}, d.clock.Snapshot())
	d.Kick()
}

// leads reports whether this instance does the leader's work: always with
// bbolt; with etcd while its term lasts.
func (d *Daemon) leads() bool { return d.cluster == nil || d.cluster.leading() }

// awaitLead waits until this instance leads; false when ctx ended first.
func (d *Daemon) awaitLead(ctx context.Context) bool {
	if d.cluster == nil {
		return true
	}
	select {
	case <-d.cluster.elected:
		return true
	case <-ctx.Done():
		return false
	}
}

// refreshAllowed is nil when this instance may start a refresh now: with
// etcd only while it leads and its lease has at least probe_timeout left
// (none once a keep-alive is overdue).
func (d *Daemon) refreshAllowed() error {
	c := d.cluster
	if c == nil {
		return nil
	}
	if !c.leading() {
		return d.notLeader()
	}
	if m := c.session().Margin(); m < d.Config().Daemon.ProbeTimeout {
		return fmt.Errorf("no refresh starts now: %w (%s left)", errLeaseMargin, m.Round(time.Millisecond))
	}
	return nil
}

// notLeader is a standby's refusal, naming the leader.
func (d *Daemon) notLeader() error {
	e := &api.NotLeaderError{RetryAfter: d.cluster.cfg.LeaseTTL}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if m, ok, err := d.cluster.st.Leader(ctx); err == nil && ok {
		e.Leader, e.LeaderURL = m.Name, m.URL
	}
	return api.Unavailable(e, e.RetryAfter)
}

// leaderOnly are the TCP routes only the leader serves (they refresh).
func leaderOnly(r *http.Request) bool {
	p := r.URL.Path
	return tokenRoute(r) || strings.HasSuffix(p, "/probe") || strings.HasSuffix(p, "/observations")
}

// tokenRoute: the broker's routes.
func tokenRoute(r *http.Request) bool {
	p := r.URL.Path
	return strings.HasSuffix(p, "/token") || strings.HasSuffix(p, "/token/refresh")
}

// redirectToLeader wraps the TCP handler of a standby: a request only the
// leader serves is redirected there (307 keeps the method and body) when it
// advertises a URL, else answered 503 naming it (on the token routes, as
// the broker's busy: {"error": "busy", …} with Retry-After).
func (d *Daemon) redirectToLeader(next http.Handler) http.Handler {
	if d.cluster == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !leaderOnly(r) || d.leads() {
			next.ServeHTTP(w, r)
			return
		}
		var nl *api.NotLeaderError
		if errors.As(d.notLeader(), &nl) && nl.LeaderURL != "" {
			http.Redirect(w, r, strings.TrimSuffix(nl.LeaderURL, "/")+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			return
		}
		if tokenRoute(r) {
			// The broker's refusal, as a leader busy elsewhere gives it.
			api.WriteTokenError(w, &api.TokenError{Code: api.CodeBusy, RetryAfter: d.cluster.cfg.LeaseTTL, Message: nl.Error()})
			return
		}
		w.Header().Set("Retry-After", fmt.Sprint(max(1, int(d.cluster.cfg.LeaseTTL.Seconds()))))
		http.Error(w, nl.Error(), http.StatusServiceUnavailable)
	})
}

// clusterStatus is status's view of the fleet; nil with bbolt.
func (d *Daemon) clusterStatus() *api.ClusterStatus {
	c := d.cluster
	if c == nil {
		return nil
	}
	cs := &api.ClusterStatus{Name: c.cfg.Name, Role: "standby", Members: []api.ClusterMember{}}
	if c.leading() {
		cs.Role = "leader"
	}
	if s := c.session(); s != nil {
		cs.LeaseMarginSeconds = s.Margin().Seconds()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if m, ok, err := c.st.Leader(ctx); err == nil && ok {
		cs.Leader, cs.LeaderURL = m.Name, m.URL
	}
	if ms, err := c.st.Members(ctx); err == nil {
		for _, m := range ms {
			cs.Members = append(cs.Members, api.ClusterMember{Name: m.Name, URL: m.URL, Leader: m.Name == cs.Leader,
				Started: m.Started, Heartbeat: m.Heartbeat})
		}
	}
	return cs
}

// openEtcd opens the fleet's etcd store with the configured key. The key
// file is created when missing (the first instance of a new fleet); an
// instance joining a fleet needs a copy of the first one's, and one it
// created that does not open the fleet's store is removed again.
func openEtcd(cfg *config.Config) (*etcd.Store, error) {
	s := cfg.Store
	var tlsCfg *tls.Config
	https := false
	for _, e := range s.Endpoints {
		https = https || strings.HasPrefix(e, "https://")
	}
	if https || s.TLSCAFile != "" || s.TLSCertFile != "" {
		var err error
		if tlsCfg, err = etcd.TLSConfig(s.TLSCAFile, s.TLSCertFile, s.TLSKeyFile); err != nil {
			return nil, err
		}
	}
	_, statErr := os.Stat(cfg.Secrets.KeyFile)
	created := errors.Is(statErr, os.ErrNotExist)
	key, err := store.LoadKey(cfg.Secrets.KeyFile, true)
	if err != nil {
		return nil, fmt.Errorf("secrets.key_file: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.DialTimeout+10*time.Second)
	defer cancel()
	st, err := etcd.Open(ctx, etcd.Options{Endpoints: s.Endpoints, Prefix: s.Prefix, DialTimeout: s.DialTimeout, TLS: tlsCfg, Key: key})
	if errors.Is(err, store.ErrWrongKey) {
		if created {
			os.Remove(cfg.Secrets.KeyFile)
		}
		return nil, fmt.Errorf("%w (secrets.key_file is %s: every instance of a fleet seals with the same key; copy the key file of the instance that created the fleet)", err, cfg.Secrets.KeyFile)
	}
	return st, err
}

// StoreLocation is where cfg keeps its state, as the store's Path (and
// status's db) names it: daemon.db, or the etcd endpoints and prefix.
func StoreLocation(cfg *config.Config) string {
	if cfg.Store.Backend == config.BackendEtcd {
		return etcd.Where(cfg.Store.Endpoints, cfg.Store.Prefix)
	}
	return cfg.Daemon.DB
}

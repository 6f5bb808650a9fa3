package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/etcdtest"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
	"github.com/grantwatch/grantwatch/tokensource"
)

// clusterLease is the tests' lease_ttl: takeover within 8s, refreshes up to
// 2s long allowed (probe_timeout is 500ms).
const clusterLease = 4 * time.Second

// clusterConfig is testConfig for instance name of a fleet on endpoints,
// sealing with the fleet's key file in shared.
func clusterConfig(t *testing.T, shared, name string, endpoints []string, extra string) *config.Config {
	t.Helper()
	return testConfig(t, t.TempDir(), fmt.Sprintf("\n[secrets]\nkey_file = %q\n", filepath.Join(shared, "grantwatch.key"))+
		etcdtest.StoreConfig(endpoints, "/fleet/", name, clusterLease)+extra)
}

// countingClient counts the refreshes an instance sends.
type countingClient struct {
	n    atomic.Int64
	last atomic.Int64 // UnixNano of the last request
}

func (c *countingClient) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	c.last.Store(time.Now().UnixNano())
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingClient) client() *http.Client { return &http.Client{Transport: c} }

// startInstance runs a daemon of the fleet whose refreshes c counts.
func startInstance(t *testing.T, cfg *config.Config, c *countingClient) *testDaemon {
	t.Helper()
	return startDaemon(t, cfg, &testutil.LogBuffer{}, func(o *Options) { o.HTTPClient = c.client() })
}

func waitLeading(t *testing.T, td *testDaemon) {
	t.Helper()
	testutil.WaitFor(t, 3*clusterLease, "instance leads", func() bool { return td.d.cluster.leading() })
}

// fleet is two instances of one fleet, a leading and b standing by, and
// the refreshes each sent.
type fleet struct {
	a, b   *testDaemon
	ca, cb *countingClient
}

// startFleet imports lines into a fleet of instances a and b on endpoints
// with provider config prov (mod, when set, changes their configs first),
// starts a, waits until it leads, then starts b.
func startFleet(t *testing.T, endpoints []string, prov string, lines []string, mod func(a, b *config.Config)) fleet {
	t.Helper()
	shared := t.TempDir()
	cfgA := clusterConfig(t, shared, "a", endpoints, prov)
	cfgB := clusterConfig(t, shared, "b", endpoints, prov)
	if mod != nil {
		mod(cfgA, cfgB)
	}
	importLines(t, cfgA, lines)
	f := fleet{ca: &countingClient{}, cb: &countingClient{}}
	f.a = startInstance(t, cfgA, f.ca)
	waitLeading(t, f.a)
	f.b = startInstance(t, cfgB, f.cb)
	return f
}

// TestClusterOnlyTheLeaderRefreshes: two instances share a 3-member etcd
// cluster; every grant is probed, by the leader only, and no rotated token
// is lost. The standby serves reads from etcd, refuses a probe naming the
// leader, and stores a new token for the leader to probe.
func TestClusterOnlyTheLeaderRefreshes(t *testing.T) {
	ec := etcdtest.Start(t, 3, etcdtest.Options{})
	sb := testutil.Sandbox(t)
	var lines []string
	first := map[string]string{}
	for i := range 20 {
		id, tok := fmt.Sprintf("g%02d", i), sb.Issue(sandbox.Rotate)
		first[id] = tok
		lines = append(lines, fmt.Sprintf(`{"id":%q,"provider":"acme","refresh_token":%q}`, id, tok))
	}
	f := startFleet(t, ec.Endpoints, sandboxProvider("acme", "google", sb), lines, nil)
	a, b, ca, cb := f.a, f.b, f.ca, f.cb
	testutil.WaitFor(t, 20*time.Second, "every grant probed twice", func() bool {
		gs := grantsByID(t, b.d.DB())
		for id := range first {
			if g := gs[id]; g.State != store.StateHealthy || sb.Current(first[id]) == first[id] {
				return false
			}
		}
		return ca.n.Load() >= 40
	})
	if n := cb.n.Load(); n != 0 {
		t.Errorf("the standby sent %d refreshes, want 0", n)
	}
	if st := sb.Stats(); st.Reused != 0 {
		t.Errorf("sandbox saw %d reuses of rotated-away tokens", st.Reused)
	}

	st, err := b.d.Status()
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Cluster; c == nil || c.Role != "standby" || c.Leader != "a" || len(c.Members) != 2 || st.ByState["healthy"] != 20 {
		t.Errorf("standby's status: %+v cluster %+v", st.ByState, st.Cluster)
	}
	if st, _ := a.d.Status(); st.Cluster == nil || st.Cluster.Role != "leader" || st.Cluster.LeaseMarginSeconds <= 0 {
		t.Errorf("leader's status: cluster %+v", st.Cluster)
	}
	var nl *api.NotLeaderError
	if _, err := b.d.ProbeNow(context.Background(), "g00"); !errors.As(err, &nl) || nl.Leader != "a" {
		t.Errorf("standby's ProbeNow = %v, want a NotLeaderError naming a", err)
	}
	fresh := sb.Issue(sandbox.Rotate)
	rep, err := b.d.SetToken(context.Background(), "g00", secret.Secret(fresh))
	if err != nil || !rep.Deferred {
		t.Fatalf("standby's SetToken = %+v, %v; want stored, deferred", rep, err)
	}
	testutil.WaitFor(t, 20*time.Second, "the leader probes the new token", func() bool {
		return sb.Current(fresh) != fresh
	})
	if n := cb.n.Load(); n != 0 {
		t.Errorf("the standby sent %d refreshes, want 0", n)
	}
}

// TestClusterPartitionedLeaderStopsRefreshing: the leader is cut off from
// etcd (its connections through a proxy closed). It starts no refresh from
// the first missed keep-alive on, well within one lease TTL, and stops
// with errLeadershipLost; the standby takes over within two TTLs of the
// cut and probes.
func TestClusterPartitionedLeaderStopsRefreshing(t *testing.T) {
	ec := etcdtest.Start(t, 3, etcdtest.Options{})
	px := etcdtest.NewProxy(t, ec)
	sb := testutil.Sandbox(t)
	// Results in flight at the cut cannot be stored: the provider's
	// grace lets the old token be presented again by the new leader.
	sb.SetRotationGrace(time.Minute)
	shared := t.TempDir()
	prov := sandboxProvider("acme", "google", sb)
	cfgA := clusterConfig(t, shared, "a", px.Endpoints, prov)
	cfgB := clusterConfig(t, shared, "b", ec.Endpoints, prov)
	var lines []string
	for i := range 50 {
		lines = append(lines, fmt.Sprintf(`{"id":"g%02d","provider":"acme","refresh_token":%q}`, i, sb.Issue(sandbox.Rotate)))
	}
	importLines(t, cfgB, lines)

	var ca, cb countingClient
	a := startInstance(t, cfgA, &ca)
	waitLeading(t, a)
	b := startInstance(t, cfgB, &cb)
	testutil.WaitFor(t, 10*time.Second, "the leader refreshes", func() bool { return ca.n.Load() > 60 })

	cut := time.Now()
	px.Cut()
	t.Logf("cut at %s", cut.UTC().Format(time.RFC3339Nano))
	select {
	case err := <-a.done:
		a.cancel = nil // stopped on its own
		if !errors.Is(err, errLeadershipLost) {
			t.Errorf("partitioned leader's Run = %v, want errLeadershipLost", err)
		}
	case <-time.After(3 * clusterLease):
		t.Fatalf("the partitioned leader did not stop within three lease TTLs; its log:\n%s", tail(a.logs.String(), 6000))
	}
	if last := time.Unix(0, ca.last.Load()); last.Sub(cut) > clusterLease {
		t.Errorf("the partitioned leader started a refresh %s after the cut, want none after one lease TTL (%s)", last.Sub(cut), clusterLease)
	} else {
		t.Logf("last refresh of the cut-off leader: %s after the cut", last.Sub(cut).Round(time.Millisecond))
	}
	testutil.WaitFor(t, 2*clusterLease+2*time.Second, "the standby takes over", func() bool { return b.d.cluster.leading() })
	t.Logf("failover: the standby leads %s after the cut (lease_ttl %s)", time.Since(cut).Round(time.Millisecond), clusterLease)
	before := cb.n.Load()
	testutil.WaitFor(t, 10*time.Second, "the new leader refreshes", func() bool { return cb.n.Load() > before+20 })
	if st := sb.Stats(); st.Reused != 0 {
		t.Errorf("sandbox saw %d reuses of rotated-away tokens", st.Reused)
	}
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }

// TestClusterLeavesAnotherInstancesImport: an import job in etcd whose
// spool is on another instance's disk (it runs there) is left alone by an
// instance that starts: it neither resumes nor ends it.
func TestClusterLeavesAnotherInstancesImport(t *testing.T) {
	ec := etcdtest.Start(t, 3, etcdtest.Options{})
	sb := testutil.Sandbox(t)
	cfg := clusterConfig(t, t.TempDir(), "a", ec.Endpoints, sandboxProvider("acme", "google", sb))
	db, err := OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	job, err := db.BeginImport(store.ImportJob{Source: "grants.jsonl", Spool: "/on/another/host/grantwatch.db.import-1", Total: 10})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	var c countingClient
	a := startInstance(t, cfg, &c)
	if err := a.d.ResumeImports(context.Background()); err != nil {
		t.Fatal(err)
	}
	jobs, err := a.d.DB().PendingImports()
	if err != nil || len(jobs) != 1 || jobs[0].ID != job.ID {
		t.Errorf("pending imports after a start beside them: %+v, %v; want %s left alone", jobs, err, job.ID)
	}
}

// TestClusterBrokerThroughAStandby: an app that asks a standby for a token
// is redirected to the leader's advertise_url, and the Go token source
// follows with its key and gets the leader's token; where the leader
// advertises no URL the standby answers as the broker does when it cannot
// refresh now: 503, {"error": "busy", …}, Retry-After.
func TestClusterBrokerThroughAStandby(t *testing.T) {
	ec := etcdtest.Start(t, 3, etcdtest.Options{})
	sb := testutil.Sandbox(t)
	prov := sandboxProvider("acme", "google", sb)
	// fleetAt starts a leader and a standby under prefix, both listening
	// on loopback, the leader advertising its URL if advertise; it returns
	// the standby's URL, an app key and the standby's refreshes.
	fleetAt := func(prefix string, advertise bool) (standbyURL, key string, refreshes *countingClient) {
		addrA, addrB := testutil.FreeAddr(t), testutil.FreeAddr(t)
		f := startFleet(t, ec.Endpoints, prov, []string{fmt.Sprintf(`{"id":"g1","provider":"acme","refresh_token":%q}`, sb.Issue(sandbox.Rotate))},
			func(a, b *config.Config) {
				a.Daemon.Listen, b.Daemon.Listen = addrA, addrB
				a.Store.Prefix, b.Store.Prefix = prefix, prefix
				if advertise {
					a.Store.AdvertiseURL = "http://" + addrA
				}
			})
		_, key, err := f.a.d.CreateKey(api.Key{Name: "app", Scopes: []api.Scope{api.ScopeToken}})
		if err != nil {
			t.Fatal(err)
		}
		return "http://" + addrB, key, f.cb
	}

	url, key, standby := fleetAt("/advertised/", true)
	tok, err := tokensource.Config{URL: url, GrantID: "g1", Key: key}.TokenSource(t.Context()).Token()
	if err != nil {
		t.Fatalf("token through the standby: %v", err)
	}
	if !sb.AccessTokenLive(tok.AccessToken) {
		t.Error("the token served through the standby is not live at the provider")
	}
	if n := standby.n.Load(); n != 0 {
		t.Errorf("the standby sent %d refreshes, want 0", n)
	}

	url, key, _ = fleetAt("/unadvertised/", false)
	_, err = tokensource.Config{URL: url, GrantID: "g1", Key: key}.TokenSource(t.Context()).Token()
	var e *tokensource.Error
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || e.Code != api.CodeBusy || e.RetryAfter <= 0 ||
		!strings.Contains(e.Message, "a leads") {
		t.Errorf("standby of a leader without advertise_url: %v (%+v), want 503 busy with Retry-After naming the leader", err, e)
	}
}

// TestClusterStandbyShowsTheLeadersProviderStates: a standby judges no
// provider (it probes nothing); its status and metrics show the provider
// state the leader announced, not a health of its own that never changes.
func TestClusterStandbyShowsTheLeadersProviderStates(t *testing.T) {
	ec := etcdtest.Start(t, 3, etcdtest.Options{})
	sb := testutil.Sandbox(t)
	var lines []string
	for i := range 5 {
		lines = append(lines, fmt.Sprintf(`{"id":"g%d","provider":"acme","refresh_token":%q}`, i, sb.Issue(sandbox.ServerError)))
	}
	f := startFleet(t, ec.Endpoints, sandboxProvider("acme", "google", sb)+"\n[health]\ncanary_period = \"200ms\"\n", lines, nil)
	a, b := f.a, f.b
	state := func(td *testDaemon) string {
		st, err := td.d.Status()
		if err != nil || len(st.Providers) != 1 {
			t.Fatalf("status: %+v %v", st.Providers, err)
		}
		return st.Providers[0].State + "/" + st.Providers[0].Cause
	}
	testutil.WaitFor(t, 20*time.Second, "the leader declares the outage", func() bool { return state(a) == "outage/server_error" })
	if got := state(b); got != "outage/server_error" {
		t.Errorf("the standby shows the provider %s, the leader announced outage/server_error", got)
	}
}

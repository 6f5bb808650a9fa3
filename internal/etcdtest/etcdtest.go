// Package etcdtest starts an embedded etcd cluster on loopback for tests
// (go.etcd.io/etcd/server/v3/embed): no external service. Production code
// never imports it.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is an embedded cluster of n members.
type Cluster struct {
	// Endpoints are the members' client URLs.
	Endpoints []string
	members   []*embed.Etcd
	cfgs      []*embed.Config
	mu        sync.Mutex
}

// Options tune the cluster. Zero values are etcd's defaults.
type Options struct {
	// QuotaBackendBytes is each member's database quota.
	QuotaBackendBytes int64
}

// Start starts an n-member cluster in t's temp dir, waits until it has a
// leader, and stops it at t's cleanup.
func Start(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	c, err := New(t.TempDir(), n, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// New starts an n-member cluster with its data in dir and waits until it
// has a leader (TestMain's; the caller closes it).
func New(dir string, n int, opts Options) (*Cluster, error) {
	c := &Cluster{}
	peers := make([]string, n)
	clients := make([]string, n)
	for i := range n {
		var err error
		if peers[i], err = freeURL(); err != nil {
			return nil, err
		}
		if clients[i], err = freeURL(); err != nil {
			return nil, err
		}
	}
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peers[i]))
	}
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		pu, _ := url.Parse(peers[i])
		cu, _ := url.Parse(clients[i])
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "grantwatch-test"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.ListenMetricsUrls = nil
		// A loaded test machine (the race detector, parallel packages)
		// must not make the members elect a new leader every second.
		cfg.TickMs, cfg.ElectionMs = 100, 2000
		if opts.QuotaBackendBytes > 0 {
			cfg.QuotaBackendBytes = opts.QuotaBackendBytes
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	errs := make([]error, n)
	c.members = make([]*embed.Etcd, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { c.members[i], errs[i] = embed.StartEtcd(c.cfgs[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("start etcd member %d: %w", i, err)
		}
	}
	for i, m := range c.members {
		select {
		case <-m.Server.ReadyNotify():
		case <-time.After(60 * time.Second):
			c.Close()
			return nil, fmt.Errorf("etcd member %d not ready within 60s", i)
		}
	}
	c.Endpoints = clients
	return c, nil
}

// Close stops every member still running.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if m != nil {
			m.Close()
			c.members[i] = nil
		}
	}
}

// Client returns a client of the cluster, closed at t's cleanup.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// freeURL is a loopback URL on a port free a moment ago.
func freeURL() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return "http://" + l.Addr().String(), nil
}

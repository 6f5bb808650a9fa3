package config

import (
	"testing"
	"time"
)

// TestStoreEtcd: an etcd [store] gets its defaults; daemon.db stays the
// bbolt setting, unused.
func TestStoreEtcd(t *testing.T) {
	c, err := Parse("/tmp/x/grantwatch.toml", []byte(`
[daemon]
probe_timeout = "5s"
[store]
backend = "etcd"
endpoints = ["https://etcd1:2379", "http://127.0.0.1:2379"]
tls_ca_file = "ca.pem"
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Store
	if s.Prefix != "/grantwatch/" || s.DialTimeout != 5*time.Second || s.LeaseTTL != 10*time.Second || s.Name == "" {
		t.Errorf("defaults: %+v", s)
	}
	if s.TLSCAFile != "/tmp/x/ca.pem" {
		t.Errorf("tls_ca_file = %q, want it resolved against the config's directory", s.TLSCAFile)
	}
	if c, err := Parse("/tmp/x/grantwatch.toml", nil); err != nil || c.Store.Backend != BackendBbolt {
		t.Errorf("empty config: backend %q, %v; want bbolt", c.Store.Backend, err)
	}
}

// TestEtcdProbeTimeoutDefault: with the etcd backend an unset
// daemon.probe_timeout is half of store.lease_ttl, so backend = "etcd" with
// the defaults is a valid config; a set one is kept, and bbolt keeps 30s.
func TestEtcdProbeTimeoutDefault(t *testing.T) {
	for _, tt := range []struct {
		toml string
		want time.Duration
	}{
		{"[store]\nbackend = \"etcd\"\nendpoints = [\"https://e:2379\"]\n", 5 * time.Second},
		{"[store]\nbackend = \"etcd\"\nendpoints = [\"https://e:2379\"]\nlease_ttl = \"30s\"\n", 15 * time.Second},
		{"[daemon]\nprobe_timeout = \"2s\"\n[store]\nbackend = \"etcd\"\nendpoints = [\"https://e:2379\"]\n", 2 * time.Second},
		{"", 30 * time.Second},
	} {
		c, err := Parse("/tmp/x/grantwatch.toml", []byte(tt.toml))
		if err != nil {
			t.Errorf("%q: %v", tt.toml, err)
			continue
		}
		if got := c.Daemon.ProbeTimeout; got != tt.want {
			t.Errorf("%q: probe_timeout %s, want %s", tt.toml, got, tt.want)
		}
	}
}

func TestStoreErrorsNameTheirKey(t *testing.T) {
	for _, tt := range []struct {
		name, toml string
		want       []string
	}{
		{"unknown backend", "[store]\nbackend = \"consul\"\n", []string{`store.backend: must be "bbolt" or "etcd", not "consul"`}},
		{"etcd key with bbolt", "[store]\nendpoints = [\"https://e:2379\"]\nlease_ttl = \"20s\"\n", []string{"store.endpoints: is an etcd setting", "store.lease_ttl: is an etcd setting"}},
		{"no endpoints", "[daemon]\nprobe_timeout = \"5s\"\n[store]\nbackend = \"etcd\"\n", []string{"store.endpoints: is required with backend etcd"}},
		{"plain http to another host", "[daemon]\nprobe_timeout = \"5s\"\n[store]\nbackend = \"etcd\"\nendpoints = [\"http://etcd1:2379\", \"etcd2:2379\"]\n",
			[]string{"store.endpoints[0]: \"http://etcd1:2379\" is plain http", "store.endpoints[1]: must be an http:// or https:// URL"}},
		// A probe_timeout of 30s leaves a 10s lease too little.
		{"lease shorter than two probes", "[daemon]\nprobe_timeout = \"30s\"\n[store]\nbackend = \"etcd\"\nendpoints = [\"https://e:2379\"]\n",
			[]string{"store.lease_ttl: 10s leaves 5s of lease margin, less than daemon.probe_timeout (30s)", "at least 1m0s"}},
		{"lease not whole seconds", "[daemon]\nprobe_timeout = \"1s\"\n[store]\nbackend = \"etcd\"\nendpoints = [\"https://e:2379\"]\nlease_ttl = \"2500ms\"\n", []string{"store.lease_ttl: must be whole seconds"}},
		{"certificate without key", "[daemon]\nprobe_timeout = \"5s\"\n[store]\nbackend = \"etcd\"\nendpoints = [\"https://e:2379\"]\ntls_cert_file = \"c.pem\"\n", []string{"store.tls_cert_file: set tls_cert_file and tls_key_file together"}},
		{"prefix", "[daemon]\nprobe_timeout = \"5s\"\n[store]\nbackend = \"etcd\"\nendpoints = [\"https://e:2379\"]\nprefix = \"gw\"\nadvertise_url = \"gw1:9464\"\n",
			[]string{`store.prefix: must start with "/"`, "store.advertise_url: must be an http:// or https:// URL"}},
	} {
		t.Run(tt.name, func(t *testing.T) { wantErrors(t, tt.toml, tt.want...) })
	}
}

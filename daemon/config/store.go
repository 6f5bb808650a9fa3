package config

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Store backends.
const (
	BackendBbolt = "bbolt"
	BackendEtcd  = "etcd"
)

// StoreConfig is the [store] table: where grantwatch keeps its state. The
// default is bbolt, one file (daemon.db) and one daemon; etcd lets several
// daemons share one state, one of them leading (README, "Running more than
// one instance").
type StoreConfig struct {
	// Backend is "bbolt" (default) or "etcd".
	Backend string `toml:"backend"`
	// Endpoints are the etcd members' client URLs (etcd only).
	Endpoints []string `toml:"endpoints"`
	// Prefix is the etcd key prefix of this fleet's records. Default
	// "/grantwatch/".
	Prefix string `toml:"prefix"`
	// TLSCAFile, TLSCertFile and TLSKeyFile are PEM files: the CA of the
	// members' certificates, and the client certificate and key (both or
	// neither).
	TLSCAFile   string `toml:"tls_ca_file"`
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// DialTimeout bounds connecting to the cluster. Default 5s.
	DialTimeout time.Duration `toml:"dial_timeout"`
	// LeaseTTL is the session lease: a leader that stops renewing it is
	// replaced after it runs out, and a refresh starts only while at
	// least daemon.probe_timeout of it is left. Whole seconds; default 10s.
	LeaseTTL time.Duration `toml:"lease_ttl"`
	// Name names this instance in status and the election. Default: the
	// host name.
	Name string `toml:"name"`
	// AdvertiseURL is where the other instances redirect broker and
	// write requests while this one leads: the URL of daemon.listen as
	// apps reach it. Default "": standbys then answer 503 naming the
	// leader.
	AdvertiseURL string `toml:"advertise_url"`
}

// Defaults of [store].
const (
	DefaultStorePrefix = "/grantwatch/"
	defaultDialTimeout = 5 * time.Second
	defaultLeaseTTL    = 10 * time.Second
)

func (c *Config) applyStoreDefaults() {
	s := &c.Store
	if s.Backend == "" {
		s.Backend = BackendBbolt
	}
	if s.Backend != BackendEtcd {
		return
	}
	if s.Prefix == "" {
		s.Prefix = DefaultStorePrefix
	}
	if !strings.HasSuffix(s.Prefix, "/") {
		s.Prefix += "/"
	}
	if s.DialTimeout == 0 {
		s.DialTimeout = defaultDialTimeout
	}
	if s.LeaseTTL == 0 {
		s.LeaseTTL = defaultLeaseTTL
	}
	if s.Name == "" {
		s.Name, _ = os.Hostname()
	}
	s.TLSCAFile, s.TLSCertFile, s.TLSKeyFile = c.resolve(s.TLSCAFile), c.resolve(s.TLSCertFile), c.resolve(s.TLSKeyFile)
}

// minMargin is store/etcd's MinMargin: the least lease margin a healthy
// session has, half the TTL.
func minMargin(ttl time.Duration) time.Duration { return ttl / 2 }

func (c *Config) validateStore() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("store.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	s := c.Store
	switch s.Backend {
	case BackendBbolt:
		for _, k := range []struct {
			key string
			set bool
		}{
			{"endpoints", len(s.Endpoints) > 0}, {"prefix", s.Prefix != ""}, {"tls_ca_file", s.TLSCAFile != ""},
			{"tls_cert_file", s.TLSCertFile != ""}, {"tls_key_file", s.TLSKeyFile != ""},
			{"dial_timeout", s.DialTimeout != 0}, {"lease_ttl", s.LeaseTTL != 0}, {"name", s.Name != ""},
			{"advertise_url", s.AdvertiseURL != ""},
		} {
			if k.set {
				bad(k.key, "is an etcd setting: set store.backend = \"etcd\", or remove it")
			}
		}
		return errs
	case BackendEtcd:
	default:
		bad("backend", "must be \"bbolt\" or \"etcd\", not %q", s.Backend)
		return errs
	}
	if len(s.Endpoints) == 0 {
		bad("endpoints", "is required with backend etcd: the members' client URLs, for example [\"https://etcd1:2379\"]")
	}
	for i, e := range s.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(fmt.Sprintf("endpoints[%d]", i), "must be an http:// or https:// URL, not %q", e)
			continue
		}
		if u.Scheme == "http" && !IsLoopback(u.Hostname()) {
			bad(fmt.Sprintf("endpoints[%d]", i), "%q is plain http to another host: etcd holds the sealed tokens and the leader's fence; use https (and store.tls_ca_file)", e)
		}
	}
	if !strings.HasPrefix(s.Prefix, "/") || strings.ContainsRune(s.Prefix, 0) {
		bad("prefix", "must start with \"/\" (for example \"/grantwatch/\"), not %q", s.Prefix)
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		bad("tls_cert_file", "set tls_cert_file and tls_key_file together")
	}
	if s.DialTimeout < 100*time.Millisecond {
		bad("dial_timeout", "must be at least 100ms, not %s", s.DialTimeout)
	}
	if s.LeaseTTL < 2*time.Second || s.LeaseTTL%time.Second != 0 {
		bad("lease_ttl", "must be whole seconds, at least 2s, not %s", s.LeaseTTL)
	} else if m := minMargin(s.LeaseTTL); m < c.Daemon.ProbeTimeout {
		need := (2*c.Daemon.ProbeTimeout + time.Second - 1).Truncate(time.Second)
		for minMargin(need) < c.Daemon.ProbeTimeout {
			need += time.Second
		}
		bad("lease_ttl", "%s leaves %s of lease margin, less than daemon.probe_timeout (%s): a refresh starts only with probe_timeout of lease left; set lease_ttl to at least %s, or daemon.probe_timeout to at most %s",
			s.LeaseTTL, m, c.Daemon.ProbeTimeout, need, m)
	}
	if s.Name == "" || strings.ContainsAny(s.Name, "/\x00") {
		bad("name", "must be a name without '/' (it names this instance's key), not %q", s.Name)
	}
	if s.AdvertiseURL != "" {
		if u, err := url.Parse(s.AdvertiseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("advertise_url", "must be an http:// or https:// URL, not %q", s.AdvertiseURL)
		}
	}
	return errs
}

package etcdtest

import (
	"fmt"
	"strings"
	"time"
)

// StoreConfig is grantwatch's [store] section for an instance on endpoints
// (a Cluster's or a Proxy's): backend etcd, lease_ttl, and prefix and name
// unless "" (then grantwatch's defaults).
func StoreConfig(endpoints []string, prefix, name string, leaseTTL time.Duration) string {
	s := fmt.Sprintf("\n[store]\nbackend = \"etcd\"\nendpoints = [\"%s\"]\nlease_ttl = %q\n", strings.Join(endpoints, `", "`), leaseTTL)
	if prefix != "" {
		s += fmt.Sprintf("prefix = %q\n", prefix)
	}
	if name != "" {
		s += fmt.Sprintf("name = %q\n", name)
	}
	return s
}

package config

import "reflect"

// RestartOnly names the changed settings a reload does not apply: a reload
// rebuilds the providers (endpoints, secrets, limits, schedules) and the
// per-probe settings; the rest is built once at start.
func RestartOnly(old, cfg *Config) []string {
	var keys []string
	o, n := old.Daemon, cfg.Daemon
	for _, c := range []struct {
		key     string
		changed bool
	}{
		{"daemon.db", o.DB != n.DB},
		{"daemon.socket", o.Socket != n.Socket},
		{"daemon.listen", o.Listen != n.Listen},
		{"daemon.api_token_file", o.APITokenFile != n.APITokenFile},
		{"daemon.tls_cert_file", o.TLSCertFile != n.TLSCertFile},
		{"daemon.tls_key_file", o.TLSKeyFile != n.TLSKeyFile},
		{"daemon.tls_client_ca_file", o.TLSClientCAFile != n.TLSClientCAFile},
		{"daemon.tick", o.Tick != n.Tick},
		{"daemon.workers", o.Workers != n.Workers},
		{"daemon.max_connections", o.MaxConnections != n.MaxConnections},
		{"daemon.socket_max_connections", o.SocketMaxConnections != n.SocketMaxConnections},
		{"daemon.max_api_probes", o.MaxAPIProbes != n.MaxAPIProbes},
		{"secrets", old.Secrets != cfg.Secrets},
		{"log", old.Log != cfg.Log},
		{"clock", !reflect.DeepEqual(old.Clock, cfg.Clock)},
		{"health", old.Health != cfg.Health},
		{"notify", !reflect.DeepEqual(old.Notify, cfg.Notify)},
	} {
		if c.changed {
			keys = append(keys, c.key)
		}
	}
	return keys
}

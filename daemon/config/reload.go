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
		{"daemon.tick", o.Tick != n.Tick},
		{"daemon.workers", o.Workers != n.Workers},
		{"secrets", old.Secrets != cfg.Secrets},
		{"log", old.Log != cfg.Log},
		{"clock", !reflect.DeepEqual(old.Clock, cfg.Clock)},
		{"health", old.Health != cfg.Health},
		{"notify", !reflect.DeepEqual(old.Notify, cfg.Notify)},
		{"store", !reflect.DeepEqual(old.Store, cfg.Store)},
	} {
		if c.changed {
			keys = append(keys, c.key)
		}
	}
	return keys
}

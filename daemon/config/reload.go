package config

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"reflect"
)

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
		{"store", !reflect.DeepEqual(old.Store, cfg.Store)},
	} {
		if c.changed {
			keys = append(keys, c.key)
		}
	}
	return keys
}

// Fingerprint is a digest of the files c was loaded from as they are now:
// the config file and each provider's client_secret_file, the ones a reload
// reads. A daemon keeps the fingerprint taken when it loaded c and compares
// it with a fresh one to tell that the files differ from the config it
// runs (an edit or a rotated secret not reloaded yet). A missing or
// unreadable file has a fingerprint of its own. The digest is never shown:
// it would let a guessed secret be checked.
func Fingerprint(c *Config) string {
	h := sha256.New()
	files := []string{c.Path()}
	for _, p := range c.Providers {
		if p.ClientSecretFile != "" {
			files = append(files, p.ClientSecretFile)
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			b = []byte("\x00unreadable")
		}
		h.Write(binary.BigEndian.AppendUint64([]byte(f+"\x00"), uint64(len(b))))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

package daemon

// App keys (api.Keys, api.KeyAdmin): stored hashed in the store, held in
// memory as an immutable map from hash to key that every request on the TCP
// listener reads without a lock.

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/store"
)

// keySet is the daemon's app keys, by the SHA-256 of the key.
type keySet struct {
	mu sync.Mutex // serializes loads
	m  atomic.Pointer[map[[sha256.Size]byte]api.Key]
	// legacy is the key that daemon.api_token_file holds, if any.
	legacy *legacyKey
}

type legacyKey struct {
	hash [sha256.Size]byte
	key  api.Key
}

// legacyKeyName names the key daemon.api_token_file holds. It keeps the
// scopes the bearer token had before app keys (GET a grant, PUT its
// refresh token) on every grant, and no more: a secret handed out for
// set-token does not start to serve access tokens by an upgrade.
const legacyKeyName = "api_token_file"

// keyPrefix starts every key grantwatch makes, so that secret scanners and
// people can tell one.
const keyPrefix = "gwk_"

var keyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// loadKeys reads the app keys from the store (and api_token_file's, when
// set) into memory.
func (d *Daemon) loadKeys() error {
	ks := &d.keys
	ks.mu.Lock()
	defer ks.mu.Unlock()
	stored, err := d.db.AppKeys()
	if err != nil {
		return err
	}
	m := make(map[[sha256.Size]byte]api.Key, len(stored)+1)
	for _, k := range stored {
		var h [sha256.Size]byte
		copy(h[:], k.Hash)
		m[h] = apiKey(k)
	}
	if l := ks.legacy; l != nil {
		m[l.hash] = l.key
	}
	ks.m.Store(&m)
	return nil
}

// readLegacyKey reads daemon.api_token_file, when set, as the key named
// api_token_file.
func (d *Daemon) readLegacyKey(path string) error {
	if path == "" {
		d.keys.legacy = nil
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("daemon.api_token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return fmt.Errorf("daemon.api_token_file: %s holds a token shorter than 16 characters", path)
	}
	d.keys.legacy = &legacyKey{hash: sha256.Sum256([]byte(tok)),
		key: api.Key{Name: legacyKeyName, Scopes: []api.Scope{api.ScopeRead, api.ScopeSetToken}}}
	d.log.Warn("daemon.api_token_file is deprecated: it works as an app key named api_token_file (scopes read, set-token, every grant); "+
		"make the app its own key (grantwatch keys create NAME --scope read --scope set-token) and remove api_token_file",
		"file", path)
	return nil
}

func apiKey(k store.AppKey) api.Key {
	scopes := make([]api.Scope, len(k.Scopes))
	for i, s := range k.Scopes {
		scopes[i] = api.Scope(s)
	}
	return api.Key{Name: k.Name, Labels: k.Labels, Scopes: scopes, CreatedAt: k.CreatedAt}
}

// LookupKey finds the key presented: one SHA-256 and one map read.
func (d *Daemon) LookupKey(presented string) (api.Key, bool) {
	m := d.keys.m.Load()
	if m == nil {
		return api.Key{}, false
	}
	k, ok := (*m)[sha256.Sum256([]byte(presented))]
	return k, ok
}

// CreateKey makes a key for k, stores its hash and returns the key: the
// only copy there will be.
func (d *Daemon) CreateKey(k api.Key) (api.Key, string, error) {
	if !keyName.MatchString(k.Name) {
		return api.Key{}, "", api.Invalid(fmt.Errorf("key name %q: use letters, digits, '.', '_' or '-' (at most 64), starting with a letter or digit", k.Name))
	}
	if k.Name == legacyKeyName {
		return api.Key{}, "", api.Invalid(fmt.Errorf("key name %q is the key of daemon.api_token_file; choose another", k.Name))
	}
	for name, v := range k.Labels {
		if name == "" || v == "" {
			return api.Key{}, "", api.Invalid(fmt.Errorf("label %q=%q: a selector label needs a name and a value", name, v))
		}
	}
	secret := keyPrefix + rand.Text()
	scopes := make([]string, len(k.Scopes))
	for i, s := range k.Scopes {
		scopes[i] = string(s)
	}
	sk := store.AppKey{Name: k.Name, Hash: store.HashAppKey(secret), Labels: k.Labels, Scopes: scopes, CreatedAt: d.now().UTC()}
	if err := d.db.CreateAppKey(sk); err != nil {
		if errors.Is(err, store.ErrExists) {
			return api.Key{}, "", api.Invalid(err)
		}
		return api.Key{}, "", err
	}
	if err := d.loadKeys(); err != nil {
		return api.Key{}, "", err
	}
	d.log.Info("app key created", "key", k.Name, "scopes", scopes, "labels", k.Labels)
	return apiKey(sk), secret, nil
}

// ListKeys returns the stored keys (and api_token_file's), by name.
func (d *Daemon) ListKeys() ([]api.Key, error) {
	stored, err := d.db.AppKeys()
	if err != nil {
		return nil, err
	}
	out := make([]api.Key, 0, len(stored)+1)
	for _, k := range stored {
		out = append(out, apiKey(k))
	}
	if l := d.keys.legacy; l != nil {
		out = append(out, l.key)
	}
	return out, nil
}

// RevokeKey deletes a stored key; requests presenting it are refused from
// now on.
func (d *Daemon) RevokeKey(name string) error {
	if name == legacyKeyName && d.keys.legacy != nil {
		return api.Invalid(errors.New("the api_token_file key is revoked by removing daemon.api_token_file from the config and restarting"))
	}
	if err := d.db.RevokeAppKey(name); err != nil {
		return err
	}
	if err := d.loadKeys(); err != nil {
		return err
	}
	d.log.Info("app key revoked", "key", name)
	return nil
}

package daemon

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/lmittmann/tint"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
)

// reloadLoop reloads the config on request: the new one is built and
// validated completely before it replaces the old; a bad file keeps the old
// config running, logs one error naming the problem, and says so to systemd
// (STATUS=), to the metrics and to status and doctor.
func (d *Daemon) reloadLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.opts.Reload:
		}
		sdNotify(sdReloadingNow())
		err := d.reload()
		d.reloads.tried(d.Config(), d.now(), err)
		if err != nil {
			d.log.Error("config reload failed; the previous config stays in force", tint.Err(err))
		}
		sdNotify(sdReady + "\n" + sdReloadStatus(err))
	}
}

func (d *Daemon) reload() error {
	if d.opts.ConfigPath == "" {
		return errors.New("no config file to reload")
	}
	cfg, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		return err
	}
	provs, err := buildProviders(cfg)
	if err != nil {
		return err
	}
	if err := secretErrors(provs); err != nil {
		return err
	}
	old := d.Config()
	if keys := config.RestartOnly(old, cfg); len(keys) > 0 {
		d.log.Warn("some changes apply only on restart (systemctl restart grantwatch)", "keys", strings.Join(keys, ", "))
	}
	// Swap first, settle after: no probe or release under the old config
	// may judge the new one (held grants are released by a canary of the
	// new config, not by the reload), and no health change of the old
	// providers can slip in between the hand-over and the swap.
	d.healthMu.Lock()
	defer d.healthMu.Unlock()
	d.mu.RLock()
	oldProvs := d.providers
	d.mu.RUnlock()
	d.carryHealth(oldProvs, provs)
	d.mu.Lock()
	d.cfg = cfg
	d.providers = provs
	d.mu.Unlock()
	for _, p := range provs {
		d.settle(p)
	}
	d.log.Info("config reloaded", "providers", len(cfg.Providers))
	d.syncModes()
	d.Kick()
	return nil
}

// reloadState is what the last config load did, for the metrics, status,
// doctor and systemd.
type reloadState struct {
	mu       sync.Mutex
	loadedAt time.Time // the running config's load: at start or the last good reload
	sum      string    // config.Fingerprint when it was loaded
	lastAt   time.Time // the last reload tried; zero when none was
	lastErr  error     // why it failed; nil when it succeeded
}

// loaded records the config the daemon starts with.
func (r *reloadState) loaded(cfg *config.Config, now time.Time) {
	sum := config.Fingerprint(cfg)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loadedAt, r.sum = now, sum
}

// tried records a reload: cfg is the config in force after it.
func (r *reloadState) tried(cfg *config.Config, now time.Time, err error) {
	if err == nil {
		r.loaded(cfg, now)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastAt, r.lastErr = now, err
}

// lastGood reports whether the last load succeeded and when the running
// config was loaded.
func (r *reloadState) lastGood() (ok bool, loadedAt time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr == nil, r.loadedAt
}

// configStatus compares the running config with its files now.
func (d *Daemon) configStatus() *api.ConfigStatus {
	cfg := d.Config()
	if cfg.Path() == "" {
		return nil
	}
	sum := config.Fingerprint(cfg)
	r := &d.reloads
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := &api.ConfigStatus{
		Path: cfg.Path(), LoadedAt: r.loadedAt, LastReloadAt: r.lastAt,
		LastReloadOK: r.lastErr == nil, FileChanged: sum != r.sum,
	}
	if r.lastErr != nil {
		cs.LastReloadError = r.lastErr.Error()
	}
	return cs
}

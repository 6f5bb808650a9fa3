package daemon

import (
	"context"
	"errors"
	"strings"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/lmittmann/tint"
)

// reloadLoop reloads the config on request: the new one is built and
// validated completely before it replaces the old; a bad file keeps the old
// config running and logs one error naming the problem.
func (d *Daemon) reloadLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.opts.Reload:
		}
		sdNotify(sdReloading)
		if err := d.reload(); err != nil {
			d.log.Error("config reload failed; the previous config stays in force", tint.Err(err))
		}
		sdNotify(sdReady)
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
	d.mu.RLock()
	oldProvs := d.providers
	d.mu.RUnlock()
	if keys := config.RestartOnly(old, cfg); len(keys) > 0 {
		d.log.Warn("some changes apply only on restart (systemctl restart grantwatch)", "keys", strings.Join(keys, ", "))
	}
	d.carryHealth(oldProvs, provs)
	d.mu.Lock()
	d.cfg = cfg
	d.providers = provs
	d.mu.Unlock()
	d.log.Info("config reloaded", "providers", len(cfg.Providers))
	d.syncModes()
	d.Kick()
	return nil
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/store"
)

// Connect reaches the daemon on cfg's control socket; when no daemon runs it
// opens the database itself and serves the control API in-process, so that
// every command takes the same path either way.
func Connect(ctx context.Context, cfg *config.Config, log *slog.Logger) (*api.Client, error) {
	return connect(ctx, cfg, log, true)
}

// ConnectExisting is Connect for commands that only read: with no daemon
// running it refuses to create a database that does not exist yet.
func ConnectExisting(ctx context.Context, cfg *config.Config, log *slog.Logger) (*api.Client, error) {
	return connect(ctx, cfg, log, false)
}

func connect(ctx context.Context, cfg *config.Config, log *slog.Logger, create bool) (*api.Client, error) {
	// The slowest answer (a probe) is bounded by probe_timeout; a daemon
	// that stops answering mid-command is reported.
	c, err := api.DialSocket(ctx, cfg.Daemon.Socket, cfg.Daemon.ProbeTimeout+2*time.Minute)
	if err == nil {
		return c, nil
	}
	if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EACCES) {
		return nil, fmt.Errorf("daemon.socket %s: permission denied: run as the daemon's user or with sudo", cfg.Daemon.Socket)
	}
	var ne *net.OpError
	if !errors.As(err, &ne) {
		return nil, err // it accepts but does not answer
	}
	// No daemon: open the database (its lock tells if a daemon runs after all).
	if _, err := os.Stat(cfg.Daemon.DB); !create && errors.Is(err, os.ErrNotExist) && cfg.Store.Backend != config.BackendEtcd {
		return nil, fmt.Errorf("no daemon answers on %s and there is no database at %s yet: start the daemon (grantwatch run) or import grants (grantwatch grants import)", cfg.Daemon.Socket, cfg.Daemon.DB)
	}
	d, err := Open(Options{Config: cfg, Logger: log})
	if err != nil {
		if errors.Is(err, store.ErrInUse) {
			return nil, fmt.Errorf("%w, but its control socket %s does not answer: is daemon.socket the same in both configs?", err, cfg.Daemon.Socket)
		}
		return nil, err
	}
	// A command that writes (an import) finishes an import a crash
	// interrupted before it runs, as a daemon does at start. Read commands
	// do not: they must not hold the database for long, or a daemon
	// starting meanwhile would find it in use. A failure is the command's
	// to meet (a damaged file).
	if create {
		if err := d.ResumeImports(ctx); err != nil {
			log.Warn("interrupted import not finished", "err", err)
		}
	}
	return InProcess(d, true), nil
}

// InProcess serves d's control API to a client without a socket. With
// own, closing the client closes d.
func InProcess(d *Daemon, own bool) *api.Client {
	var closeFn func() error
	if own {
		closeFn = d.Close
	}
	return api.InProcess(d.Handler(), own, closeFn)
}

// Handler is the control API on d.
func (d *Daemon) Handler() http.Handler { return api.Handler(d, d.log) }

package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/daemon"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/store"
)

// exitDamaged is run's exit status when the database is damaged: it does
// not start on it, and a restart would not help.
const exitDamaged = 3

func (a *app) runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the daemon in the foreground (systemd Type=notify)",
		Long: `Run probes every grant on schedule until SIGTERM or SIGINT. SIGHUP reloads the
config: the new one replaces the old only when it is valid as a whole.

It first checks the whole database (as db check does; about 1 s per 200,000 grants)
and does not start on a damaged one: exit status 3, which the systemd unit does not
restart (restore a backup: README "Backups and restore").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			log := daemon.NewLogger(cfg.Log, a.errw)
			tuneGC()
			// SIGHUP becomes a request on a 1-buffered channel: signals
			// that arrive during a reload coalesce into one more.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			reload := make(chan struct{}, 1)
			go func() {
				for range hup {
					select {
					case reload <- struct{}{}:
					default:
					}
				}
			}()
			err = daemon.Run(cmd.Context(), daemon.Options{
				Config:     cfg,
				Logger:     log,
				ConfigPath: config.Locate(a.configFlag),
				Reload:     reload,
				TCPHandler: webPages(log),
			})
			if errors.Is(err, store.ErrCorrupt) {
				// A damaged database stays damaged: exit status 3 tells
				// systemd not to restart (RestartPreventExitStatus=3).
				return &exitError{code: exitDamaged, err: err}
			}
			return err
		},
	}
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print grantwatch's version",
		Long: `version prints the version a release build was given (go build -ldflags
"-X github.com/grantwatch/grantwatch/daemon.Version=v1.2.3"), else the module
version or VCS revision the binary was built from (+dirty or -dirty for
uncommitted changes), and the Go version.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "grantwatch %s (%s)\n", daemon.BuildVersion(), runtime.Version())
			return err
		},
	}
}

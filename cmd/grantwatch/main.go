// Command grantwatch watches a fleet of OAuth 2.0 grants and tells on-call
// the moment one dies, with its cause and its fix.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/daemon"
	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/store"
)

// exitCode is an error that only sets the process's exit code: the command
// already printed what the user needs.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := newRoot(os.Stdin, os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	var ec exitCode
	switch {
	case err == nil:
	case errors.As(err, &ec):
		os.Exit(int(ec))
	default:
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%w (`grantwatch grants list` shows the grant ids there are)", err)
		}
		fmt.Fprintln(os.Stderr, "grantwatch:", err)
		os.Exit(1)
	}
}

// app carries what every command shares.
type app struct {
	configFlag string
	in         io.Reader
	out, errw  io.Writer
}

func newRoot(in io.Reader, out, errw io.Writer) *cobra.Command {
	a := &app{in: in, out: out, errw: errw}
	root := &cobra.Command{
		Use:   "grantwatch",
		Short: "Watch OAuth 2.0 grants and tell on-call when one dies, with its cause and its fix",
		Long: `grantwatch probes stored OAuth 2.0 refresh tokens on a schedule, classifies every
failure (revoked, password changed, expired, clock skew, provider outage, ...), and
notifies on-call exactly once when a grant needs its user to reconnect.

The config is read from --config, else $GRANTWATCH_CONFIG, else ` + config.DefaultPath + `.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errw)
	root.PersistentFlags().StringVar(&a.configFlag, "config", "", "config file (default $GRANTWATCH_CONFIG, else "+config.DefaultPath+")")
	root.AddCommand(a.runCmd(), a.explainCmd(), a.grantsCmd(), a.statusCmd(), a.notifyCmd(), a.versionCmd())
	for _, c := range a.extraCmds() {
		root.AddCommand(c)
	}
	// Each Use line already names its flags: no trailing "[flags]".
	var noFlagsInUse func(*cobra.Command)
	noFlagsInUse = func(c *cobra.Command) {
		c.DisableFlagsInUseLine = true
		for _, sub := range c.Commands() {
			noFlagsInUse(sub)
		}
	}
	noFlagsInUse(root)
	return root
}

// config loads the config the flags name.
func (a *app) config() (*config.Config, error) {
	return config.Load(config.Locate(a.configFlag))
}

// logger is the CLI's logger: warnings and errors only, on stderr.
func (a *app) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(a.errw, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// client connects to the daemon, or opens the database when none runs.
// Only commands that write (import) may create a database that does not
// exist yet.
func (a *app) client(ctx context.Context) (*api.Client, *config.Config, error) {
	return a.connect(ctx, daemon.ConnectExisting)
}

func (a *app) clientCreating(ctx context.Context) (*api.Client, *config.Config, error) {
	return a.connect(ctx, daemon.Connect)
}

func (a *app) connect(ctx context.Context, dial func(context.Context, *config.Config, *slog.Logger) (*api.Client, error)) (*api.Client, *config.Config, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, nil, err
	}
	c, err := dial(ctx, cfg, a.logger())
	if err != nil {
		return nil, nil, err
	}
	return c, cfg, nil
}

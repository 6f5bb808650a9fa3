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
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/daemon"
	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/termtext"
	"github.com/grantwatch/grantwatch/store"
)

// exitCode is an error that only sets the process's exit code: the command
// already printed what the user needs.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// exitError is an error to print that exits with its own code rather than 1:
// 2 for a command line that cannot run (usageError) and for a status that
// could not be told.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError is a command line c cannot run: exit status 2, with c's usage
// line, as for an unknown command or flag.
func usageError(c *cobra.Command, format string, args ...any) error {
	use := c.UseLine()
	if c.HasAvailableSubCommands() {
		use = c.CommandPath() + " COMMAND (" + c.CommandPath() + " --help lists them)"
	}
	return &exitError{code: 2, err: fmt.Errorf("%s\nusage: %s", fmt.Sprintf(format, args...), use)}
}

// exitStatus is the process's exit status after err.
func exitStatus(err error) int {
	var ec exitCode
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return int(ec)
	case errors.As(err, &ee):
		return ee.code
	}
	return 1
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := newRoot(os.Stdin, os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	var ec exitCode
	if err != nil && !errors.As(err, &ec) {
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%w (`grantwatch grants list` shows the grant ids there are)", err)
		}
		// An error may quote what came from outside (a grant id, a
		// provider's answer): no control character reaches the terminal.
		fmt.Fprintln(os.Stderr, "grantwatch:", termtext.EscapeText(err.Error()))
	}
	os.Exit(exitStatus(err))
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
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError(c, "%v", err) })
	var strict func(*cobra.Command)
	strict = func(c *cobra.Command) {
		// Each Use line already names its flags: no trailing "[flags]".
		c.DisableFlagsInUseLine = true
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args, c.RunE = cobra.ArbitraryArgs, requireSubcommand
			c.SuggestionsMinimumDistance = 2
		}
		if args := c.Args; args != nil {
			c.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					return argsError(c, a, err)
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			strict(sub)
		}
	}
	strict(root)
	return root
}

// requireSubcommand runs for a command group: bare, or with a command it
// does not have (a typo), it fails with exit status 2 rather than print
// its help and exit 0, so that a script notices. Bare grantwatch prints its
// help.
func requireSubcommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		if !c.HasParent() {
			return c.Help()
		}
		var names []string
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		return usageError(c, "which command? one of %s", strings.Join(names, ", "))
	}
	if args[0] == "help" && len(args) == 1 {
		return c.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError(c, "%s", msg)
}

// argsError replaces cobra's "accepts 1 arg(s), received 0" with what is
// missing or extra, named as c's Use line names it ("show ID [--json]":
// ID is required; "[RECEIVER]" optional).
func argsError(c *cobra.Command, args []string, err error) error {
	var required []string
	allowed, depth, flagDepth := 0, 0, -1
	for _, w := range strings.Fields(c.Use)[1:] {
		if flagDepth < 0 && strings.HasPrefix(w, "[-") {
			flagDepth = depth // a flag's group: "[--state S]"
		}
		name := strings.Trim(w, "[]")
		if flagDepth < 0 && name != "" && name[0] >= 'A' && name[0] <= 'Z' {
			if depth == 0 && !strings.HasPrefix(w, "[") {
				required = append(required, name)
			}
			allowed++
			if strings.HasSuffix(name, "...") {
				allowed = len(args)
			}
		}
		depth += strings.Count(w, "[") - strings.Count(w, "]")
		if depth <= flagDepth {
			flagDepth = -1
		}
	}
	switch {
	case len(args) < len(required):
		return usageError(c, "missing %s", strings.Join(required[len(args):], " "))
	case len(args) > allowed:
		return usageError(c, "unexpected argument %q", args[allowed])
	}
	return usageError(c, "%v", err)
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

// conn is a connection call made: the client and the config it connected
// with.
type conn struct {
	*api.Client
	cfg *config.Config
}

// call is what most commands do: connect with dial (a.client, or
// a.clientCreating for a command that may create the database), make one
// request and print its answer on stdout, then close the connection. An
// error returns as it came (a command's own exitCode or exitError
// included), for main to print and map to an exit status.
func call[T any](cmd *cobra.Command, dial func(context.Context) (*api.Client, *config.Config, error),
	req func(context.Context, conn) (T, error), print func(io.Writer, T) error) error {
	c, cfg, err := dial(cmd.Context())
	if err != nil {
		return err
	}
	defer c.Close()
	v, err := req(cmd.Context(), conn{c, cfg})
	if err != nil {
		return err
	}
	return print(cmd.OutOrStdout(), v)
}

// jsonOr prints an answer as JSON (printJSON) when asJSON, else with text.
func jsonOr[T any](asJSON bool, text func(io.Writer, T) error) func(io.Writer, T) error {
	return func(w io.Writer, v T) error {
		if asJSON {
			return printJSON(w, v)
		}
		return text(w, v)
	}
}

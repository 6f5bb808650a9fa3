package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/store"
)

// compactHint is how many removed grants make `grants rm` suggest
// `db compact`: the file keeps the space of what was removed.
const compactHint = 1000

func (a *app) grantsRmCmd() *cobra.Command {
	var (
		state, provider string
		yes             bool
	)
	cmd := &cobra.Command{
		Use:   "rm ID... | rm - | rm --state S [--provider P] | rm --provider P   [--yes]",
		Short: "Remove grants and their sealed tokens: by id, ids on stdin, or by state and provider",
		Long: `rm removes grants and everything stored for them (token, history).

  grantwatch grants rm u42-gmail                         one grant, at once
  grantwatch grants rm u1 u2 u3                          several
  grantwatch grants list --state reconnect_required --json | jq -r '.[].id' | grantwatch grants rm - --yes
  grantwatch grants rm --state reconnect_required --provider google

More than one grant is removed only after it says how many and you answer y, or
with --yes. When stdin is not a terminal (a pipe, a script) there is no one to
ask: then --yes is required.

The database file keeps its size after a large removal (the space is reused by
later writes): grantwatch db compact, with the daemon stopped, gives it back.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			filter := state != "" || provider != ""
			switch {
			case filter && len(args) > 0:
				return usageError(cmd, "name ids or --state/--provider, not both")
			case !filter && len(args) == 0:
				return usageError(cmd, "name the grants to remove: rm ID..., rm - (ids on stdin, one a line), or rm --state S / --provider P")
			case state != "" && !store.State(state).Valid():
				return fmt.Errorf("--state: unknown state %q (one of: %s)", state, stateNames())
			}
			var ids []string
			fromStdin := len(args) == 1 && args[0] == "-"
			if fromStdin {
				var err error
				if ids, err = readIDs(a.in); err != nil {
					return err
				}
				if len(ids) == 0 {
					return errors.New("no ids on stdin: pipe them one a line")
				}
			} else {
				ids = args
			}
			c, _, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			out := cmd.OutOrStdout()
			if len(ids) == 1 && !fromStdin {
				// One grant by name: no question, as always.
				if err := c.Remove(cmd.Context(), ids[0]); err != nil {
					return err
				}
				fmt.Fprintf(out, "removed %s\n", ids[0])
				return nil
			}

			var what string
			var n int
			if filter {
				st, err := c.Status(cmd.Context())
				if err != nil {
					return err
				}
				n, what = matching(st, state, provider)
				if n == 0 {
					fmt.Fprintf(out, "no grants %s\n", what)
					return nil
				}
			} else {
				n, what = len(ids), "named"
				if fromStdin {
					what = "named on stdin"
				}
			}
			if !yes {
				if err := a.confirm(fmt.Sprintf("remove %d grant(s) %s?", n, what)); err != nil {
					return err
				}
			}
			var res api.RemoveResult
			if filter {
				res, err = c.RemoveWhere(cmd.Context(), state, provider)
			} else {
				res, err = c.RemoveIDs(cmd.Context(), strings.NewReader(strings.Join(ids, "\n")+"\n"))
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "removed %d grant(s)", res.Removed)
			if res.Missing > 0 {
				fmt.Fprintf(out, " (%d of the ids named no grant)", res.Missing)
			}
			fmt.Fprintln(out)
			if res.Removed >= compactHint {
				fmt.Fprintln(a.errw, "the database file keeps its size; to give the space back, stop the daemon and run grantwatch db compact")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "remove every grant in this state (pending, healthy, degraded, reconnect_required, on_hold)")
	cmd.Flags().StringVar(&provider, "provider", "", "remove every grant of this provider (with --state: only those in the state)")
	cmd.Flags().BoolVar(&yes, "yes", false, "remove without asking")
	return cmd
}

// matching is how many grants the filter selects, from status's counts, and
// the filter in words.
func matching(st api.Status, state, provider string) (int, string) {
	switch {
	case state != "" && provider != "":
		return st.ByProvider[provider][state], fmt.Sprintf("in state %s of provider %s", state, provider)
	case state != "":
		return st.ByState[state], "in state " + state
	}
	n := 0
	for _, v := range st.ByProvider[provider] {
		n += v
	}
	return n, "of provider " + provider
}

// readIDs reads grant ids, one a line; blank lines and lines starting with
// # are skipped.
func readIDs(r io.Reader) ([]string, error) {
	var ids []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 4<<10)
	for sc.Scan() {
		id := strings.TrimSpace(sc.Text())
		if id != "" && !strings.HasPrefix(id, "#") {
			ids = append(ids, id)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read ids from stdin: %w", err)
	}
	return ids, nil
}

// errNotAsked is a confirmation that could not be asked for.
var errNotAsked = errors.New("stdin is not a terminal, so there is no one to ask: add --yes to go ahead")

// confirm asks question on the terminal and returns nil for y or yes. With
// no terminal on stdin it does not ask: it returns an error saying --yes is
// needed.
func (a *app) confirm(question string) error {
	if !isTerminal(a.in) {
		return fmt.Errorf("%s %w", question, errNotAsked)
	}
	fmt.Fprintf(a.errw, "%s [y/N] ", question)
	answer, _ := bufio.NewReader(a.in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	fmt.Fprintln(a.errw, "nothing removed")
	return exitCode(1)
}

func stateNames() string {
	var names []string
	for _, s := range store.States() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

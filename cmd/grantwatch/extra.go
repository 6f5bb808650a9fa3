package main

import "github.com/spf13/cobra"

// extraCommands are the commands that live in files of their own (doctor,
// reconnect, demo, bench); each file registers its constructor in an init
// function.
var extraCommands []func(*app) *cobra.Command

func (a *app) extraCmds() []*cobra.Command {
	var cmds []*cobra.Command
	for _, f := range extraCommands {
		cmds = append(cmds, f(a))
	}
	return cmds
}

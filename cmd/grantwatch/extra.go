package main

import "github.com/spf13/cobra"

// extraCmds are the commands of later issues (doctor, reconnect, demo,
// bench), each in its own file.
func (a *app) extraCmds() []*cobra.Command { return nil }

package main

import (
	"context"
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/internal/termtext"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// Shell completion (grantwatch completion bash|zsh|fish|powershell, from
// cobra) of what the CLI's arguments and flags name: grant ids, states,
// providers, presets and receivers. A completion that cannot be had (no
// config, no daemon and no database) offers nothing rather than files.

// completeMax bounds the grant ids offered at once: a fleet of 10⁶ is not
// a menu.
const completeMax = 200

const noFiles = cobra.ShellCompDirectiveNoFileComp

// completeGrantID completes a command's first argument, a grant id, from the
// daemon (or the database when none runs) through the API client. Ids a
// terminal would act on (control characters) are not offered.
func (a *app) completeGrantID(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, noFiles
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	c, _, err := a.client(ctx)
	if err != nil {
		return nil, noFiles
	}
	defer c.Close()
	var ids []string
	errEnough := errors.New("enough")
	err = c.List(ctx, "", "", func(g store.Grant) error {
		if strings.HasPrefix(g.ID, toComplete) && termtext.Check(g.ID) == nil {
			ids = append(ids, g.ID)
		}
		if len(ids) >= completeMax {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) && len(ids) == 0 {
		return nil, noFiles
	}
	return ids, noFiles
}

// completeStates completes --state.
func completeStates(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	var out []string
	for _, s := range store.States() {
		out = append(out, string(s))
	}
	return out, noFiles
}

// completeProviders completes --provider with the configured providers.
func (a *app) completeProviders(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	cfg, err := a.config()
	if err != nil {
		return nil, noFiles
	}
	return cfg.ProviderNames(), noFiles
}

// completeProvidersAndPresets completes explain --provider: configured
// providers, then presets.
func (a *app) completeProvidersAndPresets(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	names, _ := a.completeProviders(cmd, args, toComplete)
	return append(names, probes.PresetNames()...), noFiles
}

// completeReceiver completes a command's first argument, a [[notify]]
// entry's name.
func (a *app) completeReceiver(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, noFiles
	}
	cfg, err := a.config()
	if err != nil {
		return nil, noFiles
	}
	var names []string
	for _, n := range cfg.Notify {
		names = append(names, n.Name)
	}
	return names, noFiles
}

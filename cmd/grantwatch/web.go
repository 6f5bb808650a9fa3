package main

import (
	"log/slog"
	"net/http"

	"github.com/grantwatch/grantwatch/daemon"
	"github.com/grantwatch/grantwatch/daemon/web"
)

// webPages adds the pages of daemon/web (the status page, hosted reconnect
// links) to daemon.listen, in front of the API, metrics and health routes.
func webPages(log *slog.Logger) func(*daemon.Daemon, http.Handler) http.Handler {
	return func(d *daemon.Daemon, next http.Handler) http.Handler {
		return web.Handler(web.Options{Service: d, Links: d.DB(), Keys: d, Log: log}, next)
	}
}

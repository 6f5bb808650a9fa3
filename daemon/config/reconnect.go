package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// ReconnectConfig is the [reconnect] table: hosted reconnect links, which
// let a grant's user consent again from their own browser
// (grantwatch grants link; README "Getting the user back").
type ReconnectConfig struct {
	// PublicURL is the base URL the user's browser reaches daemon.listen
	// at: https://host[:port], without a path (a proxy in front, or
	// daemon.tls_cert_file). Links are PublicURL/reconnect/<secret>; the
	// provider's app registration must allow the redirect URI
	// PublicURL/reconnect/callback. Empty turns hosted links off.
	PublicURL string `toml:"public_url"`
	// LinkTTL is how long a link can be used, at most 30 days. Default
	// 72h.
	LinkTTL time.Duration `toml:"link_ttl"`
}

// DefaultLinkTTL is reconnect.link_ttl when the config sets none.
const DefaultLinkTTL = 72 * time.Hour

// maxLinkTTL bounds reconnect.link_ttl: a link is a credential.
const maxLinkTTL = 30 * 24 * time.Hour

// CallbackPath is the path of the hosted flow's redirect URI under
// reconnect.public_url.
const CallbackPath = "/reconnect/callback"

// CallbackURL is the redirect URI of hosted reconnect links, "" when they
// are off.
func (r ReconnectConfig) CallbackURL() string {
	if r.PublicURL == "" {
		return ""
	}
	return r.PublicURL + CallbackPath
}

func (r *ReconnectConfig) applyDefaults() {
	r.PublicURL = strings.TrimSuffix(r.PublicURL, "/")
	if r.LinkTTL == 0 {
		r.LinkTTL = DefaultLinkTTL
	}
}

func (c *Config) validateReconnect() []error {
	var errs []error
	r := c.Reconnect
	if r.PublicURL != "" {
		u, err := url.Parse(r.PublicURL)
		switch {
		case checkURL(r.PublicURL) != nil:
			errs = append(errs, fmt.Errorf("reconnect.public_url: %w", checkURL(r.PublicURL)))
		case err != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			errs = append(errs, fmt.Errorf("reconnect.public_url: must be scheme://host[:port] without a path, query or user, not %q", r.PublicURL))
		case c.Daemon.Listen == "":
			errs = append(errs, fmt.Errorf("reconnect.public_url: needs daemon.listen, which serves the links"))
		}
	}
	if r.LinkTTL < time.Minute || r.LinkTTL > maxLinkTTL {
		errs = append(errs, fmt.Errorf("reconnect.link_ttl: must be between 1m and 720h, not %s", r.LinkTTL))
	}
	return errs
}

package notify

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// Receiver types.
const (
	KindWebhook      = "webhook"
	KindSlack        = "slack"
	KindPagerDuty    = "pagerduty"
	KindAlertmanager = "alertmanager"
	KindExec         = "exec"
)

// Defaults applied by [Config.ApplyDefaults].
const (
	DefaultTimeout        = 10 * time.Second
	DefaultGroupWait      = 30 * time.Second
	DefaultMaxAge         = 24 * time.Hour
	DefaultResendInterval = time.Minute
	// DefaultPagerDutyURL is the Events API v2 endpoint.
	DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"
)

// DefaultEvents is the event filter of a receiver that sets none: problems
// that need a person, and their resolution.
func DefaultEvents() []string {
	return []string{TypeReconnectRequired, TypeRecovered, TypeUnreadable, TypeExpiring, TypeClockSkewed, TypeClockOK, "provider.*"}
}

// DefaultGroupBy is the group_by of a receiver that sets none.
func DefaultGroupBy() []string { return []string{"provider", "cause"} }

// EventTypes lists every event type, problems first.
func EventTypes() []string {
	return []string{TypeReconnectRequired, TypeReuseDetected, TypeDegraded, TypeUnreadable, TypeExpiring, TypeClockSkewed,
		TypeProviderOutage, TypeProviderMisconfigured, TypeSecretExpiring, TypeRecovered, TypeClockOK, TypeProviderOK}
}

// Config is one [[notify]] entry of the configuration file. Keys are
// snake_case; durations are Go duration strings ("30s", "24h").
type Config struct {
	// Name identifies the receiver in logs, the outbox and `notify test`.
	Name string `toml:"name"`
	// Type is one of webhook, slack, pagerduty, alertmanager, exec.
	Type string `toml:"type"`
	// Events lists the event types sent to this receiver; path.Match globs
	// such as "provider.*" are allowed. Default: [DefaultEvents].
	Events []string `toml:"events"`
	// Match restricts the receiver to some providers and grant labels.
	Match Match `toml:"match"`

	// URL is where to send (webhook, slack, alertmanager base URL, pagerduty
	// endpoint override). It may hold a secret (Slack), so it is redacted
	// wherever it could be printed. Exactly one of URL and URLFile is set
	// (pagerduty: at most one).
	URL     secret.Secret `toml:"url"`
	URLFile string        `toml:"url_file"`
	// SecretFile holds the webhook's HMAC-SHA256 signing keys, one per line
	// (Standard Webhooks: whsec_ + base64 is the base64's bytes; another
	// line is the key as written). Two keys while rotating.
	SecretFile string `toml:"secret_file"`
	// RoutingKey is the PagerDuty integration key; exactly one of RoutingKey
	// and RoutingKeyFile is set for type pagerduty.
	RoutingKey     secret.Secret `toml:"routing_key"`
	RoutingKeyFile string        `toml:"routing_key_file"`
	// Command is the argv run by type exec (no shell), the Notification JSON
	// on its standard input.
	Command []string `toml:"command"`

	// Timeout bounds one delivery attempt. Default 10s.
	Timeout time.Duration `toml:"timeout"`
	// GroupWait is how long the first event of a group waits for others
	// before the group is sent. nil means the default, 30s; 0 sends each
	// event at once.
	GroupWait *time.Duration `toml:"group_wait"`
	// GroupBy names the event fields whose values form a group: type,
	// provider, cause, state, grant, or label:NAME. Default: provider, cause.
	GroupBy []string `toml:"group_by"`
	// MaxAge is how long an undelivered event is retried before it moves to
	// the dead-letter bucket. Default 24h.
	MaxAge time.Duration `toml:"max_age"`
	// ResendInterval is how often type alertmanager re-sends every alert
	// whose condition still holds. Default 1m.
	ResendInterval time.Duration `toml:"resend_interval"`
}

// Match restricts a receiver to events about some providers or grants. An
// empty Match matches everything. Clock events concern every grant, so they
// pass every Match; provider events are checked against Providers only.
type Match struct {
	// Providers lists provider names; empty means any.
	Providers []string `toml:"providers"`
	// Labels must all be present on the grant with these values.
	Labels map[string]string `toml:"labels"`
}

// ApplyDefaults fills the keys left unset.
func (c *Config) ApplyDefaults() {
	if c.Events == nil {
		c.Events = DefaultEvents()
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.GroupWait == nil {
		w := DefaultGroupWait
		c.GroupWait = &w
	}
	if c.GroupBy == nil {
		c.GroupBy = DefaultGroupBy()
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.ResendInterval == 0 {
		c.ResendInterval = DefaultResendInterval
	}
	if c.Type == KindPagerDuty && c.URL.IsZero() && c.URLFile == "" {
		c.URL = DefaultPagerDutyURL
	}
}

// wait returns GroupWait, or its default when unset.
func (c *Config) wait() time.Duration {
	if c.GroupWait == nil {
		return DefaultGroupWait
	}
	return *c.GroupWait
}

// ValidateConfigs checks every [[notify]] entry after ApplyDefaults and
// returns all the problems at once (errors.Join), each naming its key as
// notify.<name>.<key>.
func ValidateConfigs(cs []Config) error {
	var errs []error
	seen := map[string]bool{}
	for i, c := range cs {
		key := func(k string) string { return "notify." + c.Name + "." + k }
		if c.Name == "" || !validName(c.Name) {
			// A missing or unusable name cannot stand in a key: the entry
			// is named by its position.
			key = func(k string) string { return fmt.Sprintf("notify[%d].%s", i, k) }
		}
		bad := func(k, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", key(k), fmt.Sprintf(format, args...)))
		}
		if c.Name == "" {
			bad("name", "must be set")
		} else if !validName(c.Name) {
			bad("name", "must be letters, digits, '-', '_' or '.'")
		} else if seen[c.Name] {
			bad("name", "is used by another [[notify]] entry")
		}
		seen[c.Name] = true

		switch c.Type {
		case KindWebhook, KindSlack, KindAlertmanager:
			if c.URL.IsZero() == (c.URLFile == "") {
				bad("url", "exactly one of url and url_file must be set")
			}
		case KindPagerDuty:
			if !c.URL.IsZero() && c.URLFile != "" {
				bad("url", "set url or url_file, not both")
			}
			if c.RoutingKey.IsZero() == (c.RoutingKeyFile == "") {
				bad("routing_key", "exactly one of routing_key and routing_key_file must be set")
			}
		case KindExec:
			if len(c.Command) == 0 || c.Command[0] == "" {
				bad("command", "must name a program (argv list, no shell)")
			}
			if !c.URL.IsZero() || c.URLFile != "" {
				bad("url", "not used by type exec")
			}
		case "":
			bad("type", "must be set (webhook, slack, pagerduty, alertmanager or exec)")
		default:
			bad("type", "unknown type %q (webhook, slack, pagerduty, alertmanager or exec)", c.Type)
		}
		if c.Type != KindWebhook && c.SecretFile != "" {
			bad("secret_file", "only type webhook signs its requests")
		}
		if c.Type != KindPagerDuty && (!c.RoutingKey.IsZero() || c.RoutingKeyFile != "") {
			bad("routing_key", "only type pagerduty uses a routing key")
		}
		if c.Type != KindExec && len(c.Command) > 0 {
			bad("command", "only type exec runs a command")
		}

		if !c.URL.IsZero() {
			if err := checkURL(c.URL.Reveal()); err != nil {
				bad("url", "%s", err.Error())
			}
		}
		// The *_file secrets are read by NewDispatcher, not here: under
		// systemd they are credentials that exist only while the unit runs,
		// and the CLI must load the config when it does not.

		for _, g := range c.Events {
			if !knownGlob(g) {
				bad("events", "%q matches no event type (%s)", g, strings.Join(EventTypes(), ", "))
			}
		}
		if len(c.Events) == 0 && c.Events != nil {
			bad("events", "must list at least one event type")
		}
		for _, p := range c.Match.Providers {
			if p == "" {
				bad("match.providers", "must not contain an empty name")
			}
		}
		for _, g := range c.GroupBy {
			if !validGroupBy(g) {
				bad("group_by", "unknown field %q (type, provider, cause, state, grant or label:NAME)", g)
			}
		}
		if c.Timeout < 0 {
			bad("timeout", "must not be negative")
		}
		if c.GroupWait != nil && *c.GroupWait < 0 {
			bad("group_wait", "must not be negative")
		}
		if c.MaxAge < 0 {
			bad("max_age", "must not be negative")
		} else if c.MaxAge > 0 && c.MaxAge < time.Minute {
			bad("max_age", "must be at least 1m")
		}
		if c.ResendInterval < 0 {
			bad("resend_interval", "must not be negative")
		} else if c.Type == KindAlertmanager && c.ResendInterval > 0 && c.ResendInterval < time.Second {
			bad("resend_interval", "must be at least 1s")
		}
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return s != ""
}

// checkURL accepts absolute http(s) URLs. Its errors never repeat the URL,
// which may be a secret.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an http(s) URL")
	}
	return nil
}

// readSecretFile reads a *_file: its content, trimmed of surrounding white
// space. Its errors name the path, never the content.
// At most maxSecretFile bytes are read, so that a path naming a device or
// a huge file cannot exhaust memory.
func readSecretFile(name string) (secret.Secret, error) {
	b, err := readAtMost(name, maxSecretFile)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("read %s: %w", name, pe.Err)
		}
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("read %s: larger than %d KiB: not a secret", name, maxSecretFile>>10)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("read %s: file is empty", name)
	}
	return secret.Secret(s), nil
}

// knownGlob reports whether the glob matches at least one event type.
func knownGlob(g string) bool {
	for _, t := range EventTypes() {
		if ok, err := path.Match(g, t); err == nil && ok {
			return true
		}
	}
	return false
}

func validGroupBy(g string) bool {
	switch g {
	case "type", "provider", "cause", "state", "grant":
		return true
	}
	name, ok := strings.CutPrefix(g, "label:")
	return ok && name != ""
}

// maxSecretFile bounds a *_file: URLs, keys and secrets are short.
const maxSecretFile = 64 << 10

// readAtMost reads up to limit+1 bytes of name, so that the caller can tell
// a file over the limit.
func readAtMost(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

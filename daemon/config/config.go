// Package config is grantwatch's configuration: the TOML model, its decoding
// (unknown keys refused), defaults, validation (every problem at once, each
// naming its key) and the reload diff. It imports nothing of the runtime: only
// probes (presets) and notify (receiver config types).
//
// config.go (~780 lines) holds the whole model, its defaults and its checks
// in one file on purpose: each key's type, default and validation stand
// together, and config.example.toml is checked against it.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"golang.org/x/oauth2"

	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
)

// DefaultPath is where the config is read from when neither --config
// nor $GRANTWATCH_CONFIG names one.
const DefaultPath = "/etc/grantwatch/grantwatch.toml"

// providerName is what a provider may be called.
var providerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// listenOff marks an explicitly empty daemon.listen while defaults apply.
const listenOff = "\x00off"

// systemDB is the database of a system install (the systemd unit's
// StateDirectory).
const systemDB = "/var/lib/grantwatch/grantwatch.db"

// Config is grantwatch's configuration file. The TOML key names are part of
// grantwatch's interface; config.example.toml shows each with its default.
type Config struct {
	Daemon    DaemonConfig     `toml:"daemon"`
	Broker    BrokerConfig     `toml:"broker"`
	Secrets   SecretsConfig    `toml:"secrets"`
	Log       LogConfig        `toml:"log"`
	Clock     ClockConfig      `toml:"clock"`
	Health    HealthConfig     `toml:"health"`
	Forecast  ForecastConfig   `toml:"forecast"`
	Providers []ProviderConfig `toml:"providers"`
	Notify    []notify.Config  `toml:"notify"`
	Store     StoreConfig      `toml:"store"`
	Reconnect ReconnectConfig  `toml:"reconnect"`

	// path is the file the config was read from; relative paths in it are
	// resolved against its directory.
	path string
}

// DaemonConfig is the [daemon] table.
type DaemonConfig struct {
	// DB is the bbolt database file. Default: $STATE_DIRECTORY/grantwatch.db
	// under systemd, else /var/lib/grantwatch/grantwatch.db.
	DB string `toml:"db"`
	// Socket is the control socket. Default: $RUNTIME_DIRECTORY/grantwatch.sock
	// under systemd, else the database's directory/grantwatch.sock.
	Socket string `toml:"socket"`
	// Listen is the HTTP listener for /metrics, /healthz, /readyz and the
	// grant API; an explicit "" turns it off. Default 127.0.0.1:9464.
	Listen string `toml:"listen"`
	// APITokenFile holds a bearer token from before app keys: it keeps
	// working as a key named "api_token_file" with the scopes it had (read,
	// set-token) on every grant, and the daemon warns at start that it is
	// deprecated. Empty: none.
	APITokenFile string `toml:"api_token_file"`
	// TLSCertFile and TLSKeyFile (PEM) turn the TCP listener into HTTPS
	// (TLS 1.2 or later). Both files are read again on the first
	// connection after either changed, so a renewed certificate is served
	// without a restart. Without them the token and set-token routes are
	// refused on a listener that is not loopback.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// TLSClientCAFile (PEM) requires every client of the TCP listener to
	// present a certificate signed by one of these CAs
	// (RequireAndVerifyClientCert), besides its app key.
	TLSClientCAFile string `toml:"tls_client_ca_file"`
	// Tick is the cron spec of the due scan. Default "@every 5s".
	Tick string `toml:"tick"`
	// Workers bounds concurrent probes across all providers. Default 32.
	Workers int `toml:"workers"`
	// ProbeTimeout bounds one probe, answer included. Default 30s; with
	// the etcd backend, half of store.lease_ttl (5s).
	ProbeTimeout time.Duration `toml:"probe_timeout"`
	// DegradedAfter is how many consecutive transient failures make a grant
	// degraded. Default 3.
	DegradedAfter int `toml:"degraded_after"`
	// BackoffMin and BackoffMax bound the exponential backoff after a
	// transient failure. Defaults 1m and 1h.
	BackoffMin time.Duration `toml:"backoff_min"`
	BackoffMax time.Duration `toml:"backoff_max"`
	// ShutdownTimeout bounds how long in-flight probes may finish after
	// SIGTERM; keep it below systemd's TimeoutStopSec. Default 20s.
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"`
	// ImportMaxBytes bounds the size of one `grants import` input, which is
	// spooled to a file beside the database before anything is written.
	// Default 1 GiB.
	ImportMaxBytes int64 `toml:"import_max_bytes"`
	// MaxConnections bounds the open connections of the TCP listener
	// (listen); further clients wait in the kernel's backlog. Default 256.
	MaxConnections int `toml:"max_connections"`
	// SocketMaxConnections bounds the open connections of the control
	// socket, apart from the TCP listener's, so that the CLI still gets in
	// while the TCP listener is flooded. Default 64.
	SocketMaxConnections int `toml:"socket_max_connections"`
	// MaxAPIProbes bounds the on-demand probes (grants probe, set-token,
	// PUT /v1/grants/{id}/refresh_token) in flight at once; each also waits
	// for its provider's concurrency and rate like a scheduled probe.
	// Default 4.
	MaxAPIProbes int `toml:"max_api_probes"`
}

// BrokerConfig is the [broker] table: how access tokens are served to apps
// (GET /v1/grants/{id}/token).
type BrokerConfig struct {
	// RefreshPace is the shortest time between two refreshes of one grant
	// asked for by apps: within it a forced refresh, or a min_ttl no token
	// held meets, gets the token just obtained, and a refresh that failed
	// is answered with its failure again. Default 10s.
	RefreshPace time.Duration `toml:"refresh_pace"`
	// Wait bounds how long a token request waits for a refresh (its own or
	// one in flight) before it answers 503 busy; the refresh goes on, and
	// its token is served to the next request. Default 10s.
	Wait time.Duration `toml:"wait"`
}

// SecretsConfig is the [secrets] table.
type SecretsConfig struct {
	// KeyFile is the AES-256 key sealing tokens at rest, created (mode 0600)
	// when missing. Default: $CREDENTIALS_DIRECTORY/grantwatch.key under
	// systemd, else grantwatch.key beside the database.
	KeyFile string `toml:"key_file"`
}

// LogConfig is the [log] table.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `toml:"level"`
	// Format is auto (text on a terminal, JSON otherwise), text or json.
	Format string `toml:"format"`
}

// ClockConfig is the [clock] table.
type ClockConfig struct {
	// Servers are NTP servers, host or host:port. An empty list turns NTP
	// checks off (the Date headers of provider answers still count).
	Servers []string `toml:"servers"`
	// Schedule is the cron spec of the NTP check. Default "@every 10m".
	Schedule string `toml:"schedule"`
	// WarnOffset is the offset beyond which the clock state is warn.
	// Default 1s.
	WarnOffset time.Duration `toml:"warn_offset"`
	// MaxOffset is the offset beyond which the clock is skewed and
	// invalid_grant verdicts are held. Default 30s.
	MaxOffset time.Duration `toml:"max_offset"`
}

// HealthConfig is the [health] table: when a provider counts as in outage.
type HealthConfig struct {
	// Window is how many recent probes of a provider are considered.
	// Default 20.
	Window int `toml:"window"`
	// Threshold is the share of transient failures among the probes since
	// the provider became suspect that an outage needs. Default 0.5.
	Threshold float64 `toml:"threshold"`
	// Period is how old a probe may be to count. Default 5m.
	Period time.Duration `toml:"period"`
	// CanaryPeriod is the time between canary probes of a provider that is
	// suspect (a probe failed transiently) or in outage: two failed
	// canaries in a row declare the outage, the first canary that gets an
	// answer ends it. It does not depend on the grants' intervals or
	// backoff, so a fleet of 5 grants is judged as fast as one of 10⁵.
	// Default 5s.
	CanaryPeriod time.Duration `toml:"canary_period"`
}

// ProviderConfig is one [[providers]] entry.
type ProviderConfig struct {
	// Name is what grants refer to in their "provider" field.
	Name string `toml:"name"`
	// Preset fills token_url, auth_url, auth_style and the provider's
	// classification rules (grantwatch explain --help lists them).
	Preset   string `toml:"preset"`
	TokenURL string `toml:"token_url"`
	AuthURL  string `toml:"auth_url"`
	// UserInfoURL is the endpoint the reconnect flows ask, with the new
	// access token, which account signed in when the token answer carries
	// no id_token (UserInfo). Default: the preset's (GitHub, Atlassian,
	// Zoom, Box, Spotify, Bitbucket).
	UserInfoURL      string   `toml:"userinfo_url"`
	ClientID         string   `toml:"client_id"`
	ClientSecret     string   `toml:"client_secret"`
	ClientSecretFile string   `toml:"client_secret_file"`
	AuthStyle        string   `toml:"auth_style"`
	Scopes           []string `toml:"scopes"`
	// Interval is the time between probes of a healthy grant, spread by a
	// per-grant phase. Default 24h.
	Interval time.Duration `toml:"interval"`
	// Schedule is a cron spec used instead of Interval.
	Schedule string `toml:"schedule"`
	// Concurrency bounds concurrent probes of this provider. Default: the
	// worker count.
	Concurrency int `toml:"concurrency"`
	// Rate bounds probes per second to this provider; 0 is unlimited.
	Rate float64 `toml:"rate"`
	// Mode is ModeRefresh (the default: grantwatch refreshes the grants on
	// schedule) or ModeObserve: grantwatch never refreshes them, their app
	// keeps its own tokens and reports each refresh's outcome (POST
	// /v1/grants/{id}/observations); such grants may be imported without a
	// refresh token, and token_url and client_id are not needed.
	Mode string `toml:"mode"`
	// RotationGrace is how long the provider still accepts a rotated-away
	// refresh token (its reuse interval): within it, a refresh whose answer
	// was lost is sent once more with the same token. Unset: the preset's
	// documented grace (Okta 30s, Xero 30m, Atlassian 10m; none for most);
	// "0s" turns it off.
	RotationGrace *time.Duration `toml:"rotation_grace"`

	// The refresh tokens' lifetimes, for the expiry forecast (lifetime.go).
	// IdleLifetime and MaxLifetime replace the preset's documented idle
	// window and maximum lifetime (for self-hosted providers and tenants
	// whose admins set their own policy: Okta, Auth0, Keycloak, Hydra,
	// Salesforce); 0 keeps the preset's. GoogleTesting marks a Google app in
	// "Testing" publishing status, whose refresh tokens die 7 days after
	// consent.
	IdleLifetime  time.Duration `toml:"idle_lifetime"`
	MaxLifetime   time.Duration `toml:"max_lifetime"`
	GoogleTesting bool          `toml:"google_testing"`
	// ClientSecretExpiresAt is when the client secret expires (Entra app
	// secrets live 6 to 24 months), an RFC 3339 date ("2026-03-31") or time:
	// provider.secret_expiring is sent forecast.warn_before ahead.
	ClientSecretExpiresAt string `toml:"client_secret_expires_at"`
}

// Provider modes (ProviderConfig.Mode).
const (
	ModeRefresh = "refresh"
	ModeObserve = "observe"
)

// Observe reports whether p is in observe mode: grantwatch never refreshes
// its grants.
func (p ProviderConfig) Observe() bool { return p.Mode == ModeObserve }

// Grace is p's rotation grace: rotation_grace when set, else its preset's
// RotationGrace (0 when none is documented).
func (p ProviderConfig) Grace() time.Duration {
	if p.RotationGrace != nil {
		return *p.RotationGrace
	}
	pr, _ := probes.LookupPreset(p.Preset)
	return pr.RotationGrace
}

// UserInfo is p's userinfo endpoint: userinfo_url, read with its preset's
// member names (GitHub Enterprise's /api/v3/user reads as GitHub's) or
// else probes.GenericUserInfo's; without userinfo_url, the preset's. A
// zero URL means none.
func (p ProviderConfig) UserInfo() probes.UserInfo {
	pr, _ := probes.LookupPreset(p.Preset)
	ui := pr.UserInfo
	if p.UserInfoURL == "" {
		return ui
	}
	if ui.URL == "" {
		ui = probes.GenericUserInfo
	}
	ui.URL = p.UserInfoURL
	return ui
}

// DefaultInterval is a provider's probe interval when it sets none.
const DefaultInterval = 24 * time.Hour

// DefaultCanaryPeriod is health.canary_period when the config sets none.
const DefaultCanaryPeriod = 5 * time.Second

// Defaults.
const (
	defaultListen        = "127.0.0.1:9464"
	defaultTick          = "@every 5s"
	defaultWorkers       = 32
	defaultProbeTimeout  = 30 * time.Second
	defaultDegradedAfter = 3
	defaultBackoffMin    = time.Minute
	defaultBackoffMax    = time.Hour
	defaultShutdown      = 20 * time.Second
	defaultImportMax     = 1 << 30
	defaultMaxConns      = 256
	defaultSocketConns   = 64
	defaultMaxAPIProbes  = 4
	defaultRefreshPace   = 10 * time.Second
	defaultBrokerWait    = 10 * time.Second
	defaultClockSchedule = "@every 10m"
	defaultWarnOffset    = time.Second
	defaultMaxOffset     = 30 * time.Second
)

var defaultNTPServers = []string{"0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org"}

// Locate chooses the config file: flag, else $GRANTWATCH_CONFIG, else
// DefaultPath.
func Locate(flag string) string {
	if flag != "" {
		return flag
	}
	if p := os.Getenv("GRANTWATCH_CONFIG"); p != "" {
		return p
	}
	return DefaultPath
}

// maxConfigSize bounds what Load reads: a config is a few KiB, and a
// path naming a device or a huge file must not exhaust memory.
const maxConfigSize = 1 << 20

// Load reads, defaults and validates the config at path. Every problem
// is reported at once, each naming its key.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no config at %s: copy config.example.toml there, or name one with --config or $GRANTWATCH_CONFIG (%w)", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("%s: larger than %d KiB: not a grantwatch config", path, maxConfigSize>>10)
	}
	return Parse(path, b)
}

// Parse is Load on bytes already read; path names them in errors
// and anchors relative paths.
func Parse(path string, b []byte) (*Config, error) {
	var c Config
	defined, errs, err := decode(b, &c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.path = path
	if defined("daemon", "listen") && c.Daemon.Listen == "" {
		c.Daemon.Listen = listenOff
	}
	c.applyDefaults()
	if c.Daemon.Listen == listenOff {
		c.Daemon.Listen = ""
	}
	errs = append(errs, c.validate()...)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%s: invalid config:\n%w", path, err)
	}
	return &c, nil
}

// Default is the config of an empty file, for commands that can work
// without one (explain, demo).
func Default() *Config {
	c := &Config{path: "grantwatch.toml"}
	c.applyDefaults()
	return c
}

// Path is the file the config was read from.
func (c *Config) Path() string { return c.path }

// resolve makes a path of the config absolute, relative ones being relative
// to the config file's directory, so logs and errors name the real file.
func (c *Config) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	p = filepath.Join(filepath.Dir(c.path), p)
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func (c *Config) applyDefaults() {
	d := &c.Daemon
	if d.DB == "" {
		if dir := os.Getenv("STATE_DIRECTORY"); dir != "" {
			d.DB = filepath.Join(firstPath(dir), "grantwatch.db")
		} else {
			d.DB = systemDB
		}
	}
	d.DB = c.resolve(d.DB)
	// The CLI runs outside the unit, without systemd's directory variables:
	// with the default database it finds the unit's socket and key at their
	// default places too.
	defaultDB := d.DB == systemDB
	if d.Socket == "" {
		switch dir := os.Getenv("RUNTIME_DIRECTORY"); {
		case dir != "":
			d.Socket = filepath.Join(firstPath(dir), "grantwatch.sock")
		case defaultDB:
			d.Socket = "/run/grantwatch/grantwatch.sock"
		default:
			d.Socket = filepath.Join(filepath.Dir(d.DB), "grantwatch.sock")
		}
	}
	d.Socket = c.resolve(d.Socket)
	if d.Listen == "" {
		d.Listen = defaultListen
	}
	d.APITokenFile = c.resolve(d.APITokenFile)
	d.TLSCertFile = c.resolve(d.TLSCertFile)
	d.TLSKeyFile = c.resolve(d.TLSKeyFile)
	d.TLSClientCAFile = c.resolve(d.TLSClientCAFile)
	if c.Broker.RefreshPace == 0 {
		c.Broker.RefreshPace = defaultRefreshPace
	}
	if c.Broker.Wait == 0 {
		c.Broker.Wait = defaultBrokerWait
	}
	if d.Tick == "" {
		d.Tick = defaultTick
	}
	if d.Workers == 0 {
		d.Workers = defaultWorkers
	}
	if d.ProbeTimeout == 0 {
		d.ProbeTimeout = defaultProbeTimeout
		if c.Store.Backend == BackendEtcd {
			// A refresh starts only with probe_timeout of the session's
			// lease left: by default, as much as the lease always has.
			d.ProbeTimeout = minMargin(cmp.Or(c.Store.LeaseTTL, defaultLeaseTTL))
		}
	}
	if d.DegradedAfter == 0 {
		d.DegradedAfter = defaultDegradedAfter
	}
	if d.BackoffMin == 0 {
		d.BackoffMin = defaultBackoffMin
	}
	if d.BackoffMax == 0 {
		d.BackoffMax = defaultBackoffMax
	}
	if d.ShutdownTimeout == 0 {
		d.ShutdownTimeout = defaultShutdown
	}
	if d.ImportMaxBytes == 0 {
		d.ImportMaxBytes = defaultImportMax
	}
	if d.MaxConnections == 0 {
		d.MaxConnections = defaultMaxConns
	}
	if d.SocketMaxConnections == 0 {
		d.SocketMaxConnections = defaultSocketConns
	}
	if d.MaxAPIProbes == 0 {
		d.MaxAPIProbes = defaultMaxAPIProbes
	}
	if c.Secrets.KeyFile == "" {
		switch dir := os.Getenv("CREDENTIALS_DIRECTORY"); {
		case dir != "":
			c.Secrets.KeyFile = filepath.Join(dir, "grantwatch.key")
		case defaultDB:
			c.Secrets.KeyFile = "/etc/grantwatch/grantwatch.key"
		default:
			c.Secrets.KeyFile = filepath.Join(filepath.Dir(d.DB), "grantwatch.key")
		}
	}
	c.Secrets.KeyFile = c.resolve(c.Secrets.KeyFile)
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "auto"
	}
	if c.Clock.Servers == nil {
		c.Clock.Servers = defaultNTPServers
	}
	if c.Clock.Schedule == "" {
		c.Clock.Schedule = defaultClockSchedule
	}
	if c.Clock.WarnOffset == 0 {
		c.Clock.WarnOffset = defaultWarnOffset
	}
	if c.Clock.MaxOffset == 0 {
		c.Clock.MaxOffset = defaultMaxOffset
	}
	if c.Health.Window == 0 {
		c.Health.Window = 20
	}
	if c.Health.Threshold == 0 {
		c.Health.Threshold = 0.5
	}
	if c.Health.Period == 0 {
		c.Health.Period = 5 * time.Minute
	}
	if c.Health.CanaryPeriod == 0 {
		c.Health.CanaryPeriod = DefaultCanaryPeriod
	}
	if c.Forecast.WarnBefore == 0 {
		c.Forecast.WarnBefore = DefaultWarnBefore
	}
	for i := range c.Providers {
		p := &c.Providers[i]
		if pr, ok := probes.LookupPreset(p.Preset); ok {
			if p.TokenURL == "" {
				p.TokenURL = pr.TokenURL
			}
			if p.AuthURL == "" {
				p.AuthURL = pr.AuthURL
			}
			if p.AuthStyle == "" {
				p.AuthStyle = authStyleName(pr.AuthStyle)
			}
		}
		if p.AuthStyle == "" {
			p.AuthStyle = "auto"
		}
		if p.Mode == "" {
			p.Mode = ModeRefresh
		}
		if p.Interval == 0 && p.Schedule == "" {
			p.Interval = DefaultInterval
		}
		if p.Concurrency == 0 {
			p.Concurrency = d.Workers
		}
		p.ClientSecretFile = c.resolve(p.ClientSecretFile)
	}
	for i := range c.Notify {
		c.Notify[i].ApplyDefaults()
	}
	c.applyStoreDefaults()
	c.Reconnect.applyDefaults()
}

// firstPath takes the first of systemd's colon-separated directory lists.
func firstPath(list string) string {
	p, _, _ := strings.Cut(list, ":")
	return p
}

func (c *Config) validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	d := c.Daemon
	if _, err := cron.ParseStandard(d.Tick); err != nil {
		bad("daemon.tick", "not a cron spec (%v); for example \"@every 5s\"", err)
	}
	if d.Listen != "" {
		if _, _, err := net.SplitHostPort(d.Listen); err != nil {
			bad("daemon.listen", "must be host:port, for example 127.0.0.1:9464 (%v)", err)
		}
	}
	if d.Workers < 1 || d.Workers > 4096 {
		bad("daemon.workers", "must be between 1 and 4096, not %d", d.Workers)
	}
	if d.ProbeTimeout < 100*time.Millisecond {
		bad("daemon.probe_timeout", "must be at least 100ms, not %s", d.ProbeTimeout)
	}
	if d.DegradedAfter < 1 {
		bad("daemon.degraded_after", "must be at least 1")
	}
	if d.BackoffMin < 10*time.Millisecond || d.BackoffMax < d.BackoffMin {
		bad("daemon.backoff_min", "must be at least 10ms and at most backoff_max (%s)", d.BackoffMax)
	}
	if d.ShutdownTimeout < 0 {
		bad("daemon.shutdown_timeout", "must not be negative")
	}
	if d.ImportMaxBytes < 1<<10 {
		bad("daemon.import_max_bytes", "must be at least 1024 (bytes), not %d", d.ImportMaxBytes)
	}
	for _, k := range []struct {
		key string
		n   int
	}{{"daemon.max_connections", d.MaxConnections}, {"daemon.socket_max_connections", d.SocketMaxConnections}, {"daemon.max_api_probes", d.MaxAPIProbes}} {
		if k.n < 1 || k.n > 65536 {
			bad(k.key, "must be between 1 and 65536, not %d", k.n)
		}
	}
	if (d.TLSCertFile == "") != (d.TLSKeyFile == "") {
		bad("daemon.tls_cert_file", "set tls_cert_file and tls_key_file together (the certificate and its private key, PEM)")
	}
	if d.TLSClientCAFile != "" && d.TLSCertFile == "" {
		bad("daemon.tls_client_ca_file", "needs tls_cert_file and tls_key_file: client certificates are checked over TLS only")
	}
	if b := c.Broker; b.RefreshPace < 0 || b.RefreshPace > time.Hour {
		bad("broker.refresh_pace", "must be between 0s and 1h, not %s", b.RefreshPace)
	}
	if b := c.Broker; b.Wait < 100*time.Millisecond || b.Wait > 10*time.Minute {
		bad("broker.wait", "must be between 100ms and 10m, not %s", b.Wait)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		bad("log.format", "must be auto, text or json, not %q", c.Log.Format)
	}
	if _, err := cron.ParseStandard(c.Clock.Schedule); err != nil {
		bad("clock.schedule", "not a cron spec (%v)", err)
	}
	if c.Clock.WarnOffset <= 0 || c.Clock.MaxOffset < c.Clock.WarnOffset {
		bad("clock.max_offset", "must be positive and at least clock.warn_offset (%s)", c.Clock.WarnOffset)
	}
	for i, s := range c.Clock.Servers {
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, "/ ") {
			bad(fmt.Sprintf("clock.servers[%d]", i), "must be host or host:port, not %q", s)
		}
	}
	if c.Health.Window < 1 {
		bad("health.window", "must be at least 1")
	}
	if c.Health.Threshold <= 0 || c.Health.Threshold > 1 {
		bad("health.threshold", "must be in (0, 1], not %g", c.Health.Threshold)
	}
	if c.Health.CanaryPeriod < 10*time.Millisecond {
		bad("health.canary_period", "must be at least 10ms, not %s", c.Health.CanaryPeriod)
	}
	seen := map[string]bool{}
	for i, p := range c.Providers {
		// A name that is no valid key part is reported by position.
		badName := p.Name != "" && !providerName.MatchString(p.Name)
		key := fmt.Sprintf("providers[%d]", i)
		if p.Name != "" && !badName {
			key = "providers." + p.Name
		}
		switch {
		case p.Name == "":
			bad(key+".name", "is required (grants refer to their provider by name)")
		case badName:
			bad(key+".name", "must be letters, digits, '.', '_' or '-' (it names the provider in keys, metrics and URLs)")
		case seen[p.Name]:
			bad(key+".name", "is used by more than one provider")
		}
		seen[p.Name] = true
		if p.Preset != "" {
			if _, ok := probes.LookupPreset(p.Preset); !ok {
				bad(key+".preset", "unknown preset %q (known: %s)", p.Preset, strings.Join(probes.PresetNames(), ", "))
			}
		}
		switch p.Mode {
		case ModeRefresh, ModeObserve:
		default:
			bad(key+".mode", "must be %q or %q, not %q", ModeRefresh, ModeObserve, p.Mode)
		}
		// A provider in observe mode is never sent a request: its app
		// holds the client.
		if p.TokenURL == "" && !p.Observe() {
			bad(key+".token_url", "is required when no preset gives it")
		} else if err := checkURL(p.TokenURL); p.TokenURL != "" && err != nil {
			bad(key+".token_url", "%v", err)
		}
		for _, u := range [...]struct{ key, url string }{{"auth_url", p.AuthURL}, {"userinfo_url", p.UserInfoURL}} {
			if u.url != "" {
				if err := checkURL(u.url); err != nil {
					bad(key+"."+u.key, "%v", err)
				}
			}
		}
		if p.ClientID == "" && !p.Observe() {
			bad(key+".client_id", "is required")
		}
		if p.RotationGrace != nil && (*p.RotationGrace < 0 || *p.RotationGrace > 24*time.Hour) {
			bad(key+".rotation_grace", "must be between 0s and 24h, not %s", *p.RotationGrace)
		}
		if p.ClientSecret != "" && p.ClientSecretFile != "" {
			bad(key+".client_secret", "set client_secret or client_secret_file, not both")
		}
		// client_secret_file is read where it is needed (the daemon at start
		// and reload): under systemd it is a credential that exists only
		// while the unit runs, and the CLI must work when it does not.
		if _, ok := authStyles[p.AuthStyle]; !ok {
			bad(key+".auth_style", "must be auto, header or params, not %q", p.AuthStyle)
		}
		if p.Schedule != "" {
			if _, err := cron.ParseStandard(p.Schedule); err != nil {
				bad(key+".schedule", "not a cron spec (%v)", err)
			}
			if p.Interval != 0 {
				bad(key+".interval", "set interval or schedule, not both")
			}
		} else if p.Interval < time.Second {
			bad(key+".interval", "must be at least 1s (a Go duration such as \"24h\"), not %s", p.Interval)
		}
		if p.Concurrency < 1 {
			bad(key+".concurrency", "must be at least 1")
		}
		if p.Rate < 0 {
			bad(key+".rate", "must not be negative")
		}
		errs = append(errs, p.validateLifetimes(key)...)
	}
	if c.Forecast.WarnBefore <= 0 {
		bad("forecast.warn_before", "must be positive, not %s", c.Forecast.WarnBefore)
	}
	if err := notify.ValidateConfigs(c.Notify); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateReconnect()...)
	return append(errs, c.validateStore()...)
}

// checkURL accepts https URLs, and http only for loopback hosts (tests, the
// sandbox, a local proxy).
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("not a URL: %q", s)
	}
	if u.Scheme == "https" {
		return nil
	}
	if u.Scheme == "http" && IsLoopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("must be https (http only for loopback), not %q", s)
}

func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var authStyles = map[string]oauth2.AuthStyle{
	"auto":   oauth2.AuthStyleAutoDetect,
	"header": oauth2.AuthStyleInHeader,
	"params": oauth2.AuthStyleInParams,
}

func authStyleName(s oauth2.AuthStyle) string {
	for k, v := range authStyles {
		if v == s {
			return k
		}
	}
	return "auto"
}

// Provider returns the named provider's config.
func (c *Config) Provider(name string) (ProviderConfig, bool) {
	for _, p := range c.Providers {
		if p.Name == name {
			return p, true
		}
	}
	return ProviderConfig{}, false
}

// ProviderNames lists the configured providers, sorted.
func (c *Config) ProviderNames() []string {
	var names []string
	for _, p := range c.Providers {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return names
}

// SecretFile is a file of the config that holds a secret.
type SecretFile struct {
	Key  string // the config key naming it, "providers.google.client_secret_file"
	Path string
}

// SecretFiles lists the files of the config that hold secrets: the sealing
// key, the API token file and the providers' and receivers' *_file files.
// Each should be readable by its owner only.
func (c *Config) SecretFiles() []SecretFile {
	out := []SecretFile{{"secrets.key_file", c.Secrets.KeyFile}}
	add := func(key, path string) {
		if path != "" {
			out = append(out, SecretFile{key, path})
		}
	}
	add("daemon.api_token_file", c.Daemon.APITokenFile)
	for _, p := range c.Providers {
		add("providers."+p.Name+".client_secret_file", p.ClientSecretFile)
	}
	for _, n := range c.Notify {
		add("notify."+n.Name+".url_file", n.URLFile)
		add("notify."+n.Name+".secret_file", n.SecretFile)
		add("notify."+n.Name+".routing_key_file", n.RoutingKeyFile)
	}
	return out
}

// Endpoint builds the probe endpoint of p, reading its client secret file.
func (p ProviderConfig) Endpoint() (probes.Endpoint, error) {
	sec := p.ClientSecret
	if p.ClientSecretFile != "" {
		b, err := os.ReadFile(p.ClientSecretFile)
		if err != nil {
			return probes.Endpoint{}, fmt.Errorf("providers.%s.client_secret_file: %w", p.Name, err)
		}
		sec = strings.TrimSpace(string(b))
	}
	return probes.Endpoint{
		Preset:       p.Preset,
		TokenURL:     p.TokenURL,
		ClientID:     p.ClientID,
		ClientSecret: secret.Secret(sec),
		AuthStyle:    authStyles[p.AuthStyle],
		Scopes:       p.Scopes,
	}, nil
}

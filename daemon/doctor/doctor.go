// Package doctor diagnoses an installation: the config, the daemon's control
// socket, the database and its key, each provider's token endpoint (without
// spending a grant), the clock, the receivers and systemd. Each check is a
// small function returning Check; Doctor runs them in order.
package doctor

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/probes"
)

// Check statuses. A warn never makes Report.OK false; a fail does.
const (
	CheckOK   = "ok"
	CheckWarn = "warn"
	CheckFail = "fail"
)

// Check is one finding of Doctor. Name is stable ("config", "database",
// "provider/google/tls", ...) so that scripts can select it; Fix is one
// sentence telling the operator what to do and is set for every warn and
// fail. No field ever holds a token, a client secret or key bytes.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Report is the outcome of Doctor. Its JSON shape,
// {"ok": bool, "checks": [{"name", "status", "detail", "fix"}]}, is part of
// grantwatch's interface (grantwatch doctor --json).
type Report struct {
	// OK is false when any check failed; warnings leave it true.
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// Options tune Doctor. Zero values are the production defaults.
type Options struct {
	// Timeout bounds each network step (DNS, TCP, TLS, HTTP, NTP, the
	// control socket). Default 5s.
	Timeout time.Duration
	// NTPQuery replaces probes.QueryClock (tests).
	NTPQuery func(ctx context.Context, servers []string) probes.ClockReading
	// Now replaces the wall clock: ages, certificate lifetimes and TLS
	// verification use it (tests).
	Now func() time.Time
	// RootCAs verifies token endpoints' certificates; nil uses the system
	// pool, as the probes do (tests inject an httptest CA).
	RootCAs *x509.CertPool
	// Getenv replaces os.Getenv for the systemd check (tests).
	Getenv func(string) string
	// UnitFile is where the systemd unit is looked for. Default
	// /etc/systemd/system/grantwatch.service.
	UnitFile string
}

// DefaultTimeout is Options.Timeout's default.
const DefaultTimeout = 5 * time.Second

const (
	defaultUnitFile = "/etc/systemd/system/grantwatch.service"
	// certWarnDays is how close to expiry a token endpoint's certificate
	// gets a warning.
	certWarnDays = 14
	// keyCredential is the systemd credential holding the sealing key.
	keyCredential = "grantwatch.key"
)

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.NTPQuery == nil {
		o.NTPQuery = probes.QueryClock
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.UnitFile == "" {
		o.UnitFile = defaultUnitFile
	}
}

// Run diagnoses an installation: the config at configPath, the daemon's
// control socket, the database and its key, each provider's token endpoint
// (DNS, TCP, TLS, an HTTP answer — without presenting any refresh token, so
// no grant is spent), the clock, each receiver's configuration and the
// systemd environment. It sends no notification and writes nothing, except
// that with the daemon stopped it opens the database read/write briefly
// (which takes its lock and may add missing buckets). Checks that depend on
// a failed one are left out rather than failed twice.
func Run(ctx context.Context, configPath string, opts Options) Report {
	opts.defaults()
	dr := &doctor{opts: opts}

	cfg, err := config.Load(configPath)
	if err != nil {
		dr.add(Check{Name: "config", Status: CheckFail, Detail: err.Error(), Fix: configFix(err, configPath)})
		dr.add(dr.systemd(nil))
		return dr.report()
	}
	dr.add(Check{Name: "config", Status: CheckOK, Detail: fmt.Sprintf("%s: %d provider(s), %d receiver(s)",
		cfg.Path(), len(cfg.Providers), len(cfg.Notify))})

	// The network checks take the longest: start them first, concurrently,
	// and collect them in config order.
	provChecks := make([][]Check, len(cfg.Providers))
	var clockCheck Check
	var wg sync.WaitGroup
	for i, p := range cfg.Providers {
		wg.Go(func() { provChecks[i] = dr.provider(ctx, p) })
	}

	sock, st := dr.daemon(ctx, cfg)
	if st != nil {
		sock = runningConfig(sock, st.Config)
	}
	dr.add(sock)
	running := st != nil
	if cfg.Store.Backend == config.BackendEtcd {
		// Shared by the fleet: checked whether a daemon runs here or not.
		dr.add(dr.cluster(ctx, cfg)...)
		dr.add(dr.keyMode(cfg.Secrets.KeyFile, "").Check)
	} else if running {
		dr.add(Check{Name: "database", Status: CheckOK, Detail: fmt.Sprintf("%s is open in the running daemon: %d grant(s), %d notification(s) pending",
			cfg.Daemon.DB, st.Grants, st.Outbox.Pending)})
		key := dr.keyMode(cfg.Secrets.KeyFile, "in use by the running daemon").Check
		if st.Key != nil && key.Status == CheckOK {
			key.Detail += keyHistory(*st.Key)
		}
		dr.add(key)
	} else if sock.Status != CheckFail {
		dr.add(dr.store(ctx, cfg)...)
	}
	dr.add(disk(cfg), secretFiles(cfg))

	wg.Go(func() { clockCheck = dr.clock(ctx, cfg, st) })
	wg.Wait()
	for _, cs := range provChecks {
		dr.add(cs...)
	}
	dr.add(secretExpiry(cfg, opts.Now())...)
	dr.add(clockCheck)
	for _, n := range cfg.Notify {
		var rs *notify.ReceiverStatus
		if st != nil {
			for i := range st.Receivers {
				if st.Receivers[i].Receiver == n.Name {
					rs = &st.Receivers[i]
				}
			}
		}
		dr.add(receiverCheck(n, rs, dr.opts.Now()))
	}
	dr.add(dr.systemd(cfg))
	return dr.report()
}

// doctor collects checks in order.
type doctor struct {
	opts   Options
	checks []Check
}

func (d *doctor) add(cs ...Check) { d.checks = append(d.checks, cs...) }

func (d *doctor) report() Report {
	r := Report{OK: true, Checks: d.checks}
	if r.Checks == nil {
		r.Checks = []Check{}
	}
	for _, c := range r.Checks {
		if c.Status == CheckFail {
			r.OK = false
		}
	}
	return r
}

func configFix(err error, path string) string {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("create %s from config.example.toml, or name the config with --config or $GRANTWATCH_CONFIG", path)
	}
	if errors.Is(err, fs.ErrPermission) {
		return "run doctor as the daemon's user (or with sudo), or make the config readable to this user"
	}
	return "correct the keys named above (config.example.toml shows each key with its default) and run doctor again"
}

// fileFix is the fix for a file of the config (named by key) that could not
// be read: what to do depends on why.
func fileFix(err error, path, key string) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("create %s (or correct %s); under systemd hand it in with LoadCredential=", path, key)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("make %s readable by the daemon's user, and run doctor as that user", path)
	}
	return fmt.Sprintf("check %s and %s", key, path)
}

// daemon asks the control socket for the status. It returns the status when
// a daemon answered, nil otherwise.
func (d *doctor) daemon(ctx context.Context, cfg *config.Config) (Check, *api.Status) {
	c := Check{Name: "daemon"}
	sock := cfg.Daemon.Socket
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "unix", sock)
	switch {
	case err == nil:
		conn.Close()
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EACCES):
		c.Status, c.Detail = CheckFail, fmt.Sprintf("control socket %s: permission denied", sock)
		c.Fix = "run doctor as the daemon's user, as a member of its group, or with sudo"
		return c, nil
	case errors.Is(err, fs.ErrNotExist):
		c.Status, c.Detail = CheckWarn, fmt.Sprintf("not running (no control socket at %s)", sock)
		c.Fix = "start it (systemctl start grantwatch, or grantwatch run); if it runs, make daemon.socket the same in both configs"
		return c, nil
	default:
		c.Status, c.Detail = CheckWarn, fmt.Sprintf("not running (control socket %s does not answer: %v)", sock, unwrapOp(err))
		c.Fix = "start it (systemctl start grantwatch, or grantwatch run); the socket file is left over from an earlier run"
		return c, nil
	}
	cl := api.SocketClient(sock, 0)
	defer cl.Close()
	st, err := cl.Status(ctx)
	if err != nil {
		c.Status, c.Detail = CheckFail, fmt.Sprintf("control socket %s answers, but status failed: %v", sock, err)
		c.Fix = "read the daemon's log (journalctl -u grantwatch) and restart it if it is wedged"
		return c, nil
	}
	c.Status = CheckOK
	if st.NotReady != "" {
		c.Status, c.Detail, c.Fix = CheckFail, fmt.Sprintf("running on %s but not ready: %s", sock, st.NotReady), st.NotReadyFix
		return c, &st
	}
	if st.LastTickAt.IsZero() {
		c.Detail = fmt.Sprintf("running on %s, no tick yet", sock)
		return c, &st
	}
	age := d.opts.Now().Sub(st.LastTickAt)
	c.Detail = fmt.Sprintf("running on %s, last tick %s ago", sock, roundAge(age))
	if sched, err := cron.ParseStandard(cfg.Daemon.Tick); err == nil {
		every := sched.Next(st.LastTickAt).Sub(st.LastTickAt)
		if age > 3*every+30*time.Second {
			c.Status = CheckWarn
			c.Detail += fmt.Sprintf(" (daemon.tick is %q: the scheduler is stalled)", cfg.Daemon.Tick)
			c.Fix = "read the daemon's log (journalctl -u grantwatch) and restart it (systemctl restart grantwatch)"
		}
	}
	return c, &st
}

// runningConfig makes the daemon check warn when the daemon does not run
// what the config file says: its last reload failed, or the file (or a
// client_secret_file) changed since it was loaded.
func runningConfig(c Check, cs *api.ConfigStatus) Check {
	if cs == nil || (cs.LastReloadOK && !cs.FileChanged) {
		return c
	}
	var detail, fix string
	switch {
	case !cs.LastReloadOK:
		detail = "its last config reload failed, so the config loaded at " + cs.LoadedAt.Format(time.RFC3339) +
			" stays in force: " + strings.ReplaceAll(cs.LastReloadError, "\n", "; ")
		fix = "correct what the error names in " + cs.Path + ", then systemctl reload grantwatch"
	default:
		detail = cs.Path + " (or a client_secret_file) changed since the daemon loaded it at " + cs.LoadedAt.Format(time.RFC3339)
		fix = "systemctl reload grantwatch, so that the daemon runs what the file says"
	}
	if c.Status == CheckOK {
		c.Status = CheckWarn
	}
	c.Detail += "; " + detail
	if c.Fix != "" {
		fix = c.Fix + "; " + fix
	}
	c.Fix = fix
	return c
}

func roundAge(d time.Duration) time.Duration {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second)
}

// unwrapOp strips a net.OpError's "dial unix PATH: " prefix, which the
// detail already says.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
